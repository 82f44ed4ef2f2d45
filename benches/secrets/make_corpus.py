#!/usr/bin/env python3
"""Generates a labelled corpus for secret-scanner accuracy.

    make_corpus.py OUT_DIR [--files N] [--seed S]

Writes realistic files (.env, YAML, JSON, Python/JS/Go/Java/shell source, Terraform,
docker config.json, PEM files, .npmrc/.pypirc, READMEs with documentation examples,
lockfiles, checksum lists) with every kind of secret planted next to look-alikes
(documentation examples, placeholders, hashes, digests, UUIDs, lockfile integrity
fields, base64 images, ids). Every run uses fresh random tokens unless --seed is given.
Labels of the true secrets go to OUT_DIR/../<name>.labels.jsonl (path, line, kind) so
that scanning OUT_DIR does not see them.
"""
import argparse
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakes import Fakes  # noqa: E402


class Doc:
    def __init__(self):
        self.lines = []
        self.labels = []  # (line, kind)

    def add(self, line, kind=None):
        self.lines.append(line)
        if kind:
            self.labels.append((len(self.lines), kind))

    def block(self, lines, kind=None):
        start = len(self.lines) + 1
        self.lines.extend(lines)
        if kind:
            self.labels.append((start, kind))


class Corpus:
    def __init__(self, seed):
        self.f = Fakes(seed)
        self.r = self.f.r

    # ---- secret snippets: (kind, value, suggested key name) --------------------------
    def secret(self):
        f, r = self.f, self.r
        kinds = [
            ("aws-access-key-id", f.aws_access_key_id, "AWS_ACCESS_KEY_ID"),
            ("aws-secret-access-key", f.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY"),
            ("github", f.github, "GITHUB_TOKEN"),
            ("github-fine-grained", f.github_fine_grained, "GH_PAT"),
            ("gitlab", f.gitlab, "GITLAB_TOKEN"),
            ("slack-token", f.slack_token, "SLACK_BOT_TOKEN"),
            ("slack-webhook", f.slack_webhook, "SLACK_WEBHOOK_URL"),
            ("stripe", f.stripe, "STRIPE_SECRET_KEY"),
            ("stripe-test", f.stripe_test, "STRIPE_TEST_KEY"),
            ("google-api-key", f.google_api_key, "GOOGLE_MAPS_KEY"),
            ("jwt", f.jwt, "SERVICE_JWT"),
            ("npm", f.npm, "NPM_TOKEN"),
            ("pypi", f.pypi, "PYPI_TOKEN"),
            ("sendgrid", f.sendgrid, "SENDGRID_API_KEY"),
            ("twilio-api-key", f.twilio_api_key, "TWILIO_API_KEY"),
            ("twilio-account-sid", f.twilio_account_sid, "TWILIO_ACCOUNT_SID"),
            ("openai", f.openai, "OPENAI_API_KEY"),
            ("shopify", f.shopify, "SHOPIFY_ACCESS_TOKEN"),
            ("vault", f.vault, "VAULT_TOKEN"),
            ("databricks", f.databricks, "DATABRICKS_TOKEN"),
            ("mailchimp", f.mailchimp, "MAILCHIMP_KEY"),
            ("telegram", f.telegram, "TELEGRAM_BOT_TOKEN"),
            ("generic-password", f.password, r.choice(["DB_PASSWORD", "ADMIN_PASSWORD", "SMTP_PASSWORD", "REDIS_PASS"[:0] + "REDIS_PASSWORD"])),
            ("generic-weak-password", lambda: r.choice(["Summer", "Winter", "Spring", "Autumn"]) + str(r.randrange(2015, 2027)) + r.choice("!#?"), r.choice(["DB_PASSWORD", "ADMIN_PASSWORD"])),
            ("generic-secret", lambda: f.password(r.randrange(24, 48)), r.choice(["API_SECRET", "CLIENT_SECRET", "JWT_SECRET", "SESSION_SECRET", "APP_API_KEY", "AUTH_TOKEN"])),
        ]
        return r.choice(kinds)

    def azure_conn(self):
        return ("azure-storage-key", "DefaultEndpointsProtocol=https;AccountName=st{};AccountKey={};EndpointSuffix=core.windows.net".format(
            self.f.s("abcdefghijklmnopqrstuvwxyz0123456789", 10), self.f.azure_storage_key()))

    def url_cred(self):
        f, r = self.f, self.r
        scheme, host = r.choice([("postgres", "db.internal:5432/app"), ("mysql", "mysql.prod:3306/shop"),
                                 ("https", "git.corp.internal/org/repo.git"), ("amqp", "mq.internal:5672/"),
                                 ("mongodb+srv", "cluster0.ab1cd.mongodb.net/app"), ("redis", "cache.internal:6379/0")])
        user = r.choice(["app", "svc_deploy", "ci-bot", "admin_ro", "worker"])
        return ("url-credentials", f"{scheme}://{user}:{f.url_password()}@{host}")

    # ---- look-alikes ------------------------------------------------------------------
    def decoy_kv(self):
        """(key, value) pairs that are not secrets."""
        f, r = self.f, self.r
        return r.choice([
            ("DB_PASSWORD", "${DB_PASSWORD}"), ("API_TOKEN", "$API_TOKEN"), ("SECRET_KEY", "{{ secret_key }}"),
            ("GITHUB_TOKEN", "<your-token>"), ("ADMIN_PASSWORD", "changeme"), ("API_KEY", "your_api_key_here"),
            ("STRIPE_KEY", "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"), ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), ("PASSWORD_HASH", f.sha256()),
            ("TOKEN_SHA1", f.sha1()), ("BUILD_SHA", f.sha1()), ("ETAG", f.md5()), ("REQUEST_ID", f.uuid()),
            ("TENANT_ID", f.uuid()), ("CLIENT_ID", f.uuid()), ("IMAGE_DIGEST", "sha256:" + f.sha256()),
            ("PORT", str(r.randrange(1024, 65535))), ("LOG_LEVEL", "debug"), ("SECRET_NAME", "prod/db/password"),
            ("PASSWORD_FILE", "/run/secrets/db_password"), ("TOKEN_URL", "https://auth.example.com/oauth/token"),
            ("MAX_TOKENS", "4096"), ("SECRET_KEY", "xxxxxxxxxxxxxxxxxxxxxxxx"), ("API_KEY", "dummy-key-for-tests"),
            ("DATABASE_URL", "postgres://user:password@localhost:5432/dev"), ("REDIS_URL", "redis://localhost:6379/0"),
            ("SESSION_SECRET", "${SESSION_SECRET:-}"), ("PASSWORD_MIN_LENGTH", "12"), ("AUTH_PROVIDER", "oidc"),
            ("CHECKSUM", f.sha256()), ("COMMIT", f.sha1()), ("TOKEN", "${{ secrets.GITHUB_TOKEN }}"),
            ("PUBLIC_KEY", f.base64_blob(32)), ("NONCE", f.base64_blob(12)), ("SESSION_ID", f.md5()),
            ("CSRF_TOKEN", "{{ csrf_token() }}"), ("TOKEN_TYPE", "Bearer"), ("SECRET_VERSION", "3"),
            ("CACHE_KEY", f.sha1()), ("API_KEY_HEADER", "X-API-Key"), ("TRACE_ID", f.s("0123456789abcdef", 32)),
        ])

    def filler(self):
        r = self.r
        return r.choice([
            ("APP_NAME", "billing-service"), ("REGION", "eu-west-1"), ("TIMEOUT_SECONDS", "30"),
            ("FEATURE_FLAGS", "search,checkout"), ("BUCKET", "artifacts-prod"), ("WORKERS", "8"),
        ])

    # ---- file writers -------------------------------------------------------------------
    def env_file(self):
        d = Doc()
        d.add("# service configuration")
        for _ in range(self.r.randrange(8, 20)):
            roll = self.r.random()
            if roll < 0.3:
                kind, gen, key = self.secret()
                d.add(f"{key}={gen()}", kind)
            elif roll < 0.38:
                kind, v = self.url_cred()
                d.add(f"DATABASE_URL={v}", kind)
            elif roll < 0.75:
                k, v = self.decoy_kv()
                d.add(f"{k}={v}")
            else:
                k, v = self.filler()
                d.add(f"{k}={v}")
        return d

    def yaml_file(self):
        d = Doc()
        d.add("apiVersion: v1")
        d.add("kind: ConfigMap")
        d.add("metadata:")
        d.add(f"  name: app-{self.f.s('abcdefghijklmnopqrstuvwxyz', 6)}")
        d.add("  annotations:")
        d.add(f"    checksum/config: {self.f.sha256()}")
        d.add("data:")
        for _ in range(self.r.randrange(6, 16)):
            roll = self.r.random()
            if roll < 0.3:
                kind, gen, key = self.secret()
                q = self.r.choice(["", '"', "'"])
                d.add(f"  {key.lower()}: {q}{gen()}{q}", kind)
            elif roll < 0.36:
                kind, v = self.azure_conn()
                d.add(f'  storage_connection: "{v}"', kind)
            elif roll < 0.75:
                k, v = self.decoy_kv()
                d.add(f'  {k.lower()}: "{v}"')
            else:
                k, v = self.filler()
                d.add(f"  {k.lower()}: {v}")
        d.add(f"  image: registry.internal/app@sha256:{self.f.sha256()}")
        return d

    def json_file(self):
        d = Doc()
        d.add("{")
        entries = []
        for _ in range(self.r.randrange(6, 14)):
            roll = self.r.random()
            if roll < 0.3:
                kind, gen, key = self.secret()
                camel = "".join(w.capitalize() for w in key.lower().split("_"))
                entries.append((f'"{camel[0].lower() + camel[1:]}": "{gen()}"', kind))
            elif roll < 0.4:
                entries.append((f'"avatar": "data:image/png;base64,{self.f.base64_blob(self.r.randrange(60, 400))}"', None))
            elif roll < 0.5:
                entries.append((f'"integrity": "{self.f.sha512_integrity()}"', None))
            elif roll < 0.8:
                k, v = self.decoy_kv()
                entries.append((f'"{k.lower()}": "{v}"', None))
            else:
                entries.append((f'"id": "{self.f.uuid()}"', None))
        for i, (line, kind) in enumerate(entries):
            d.add("  " + line + ("," if i + 1 < len(entries) else ""), kind)
        d.add("}")
        return d

    def python_file(self):
        d = Doc()
        d.add("import os")
        d.add("import requests")
        d.add("")
        for _ in range(self.r.randrange(6, 14)):
            roll = self.r.random()
            if roll < 0.3:
                kind, gen, key = self.secret()
                d.add(f'{key} = "{gen()}"', kind)
            elif roll < 0.4:
                kind, gen, _ = self.secret()
                d.add(f'client = Client(api_key="{gen()}", timeout=30)', kind if kind not in ("slack-webhook",) else kind)
            elif roll < 0.6:
                d.add(self.r.choice([
                    'DB_PASSWORD = os.environ["DB_PASSWORD"]', "password = settings.DATABASES['default']['PASSWORD']",
                    'token = request.headers.get("Authorization")', "api_key = get_api_key(profile)",
                    'SECRET_KEY = os.getenv("SECRET_KEY", "")', "self.token = token",
                    f'FILE_SHA256 = "{self.f.sha256()}"', f'DEFAULT_ID = "{self.f.uuid()}"',
                    'PLACEHOLDER_TOKEN = "<your-token>"', 'TEST_PASSWORD = "test-password-123"',
                ]))
            elif roll < 0.8:
                k, v = self.decoy_kv()
                d.add(f'{k} = "{v}"')
            else:
                d.add("def handler(event, context):")
                d.add('    return {"statusCode": 200}')
        return d

    def js_file(self):
        d = Doc()
        d.add("'use strict';")
        for _ in range(self.r.randrange(6, 14)):
            roll = self.r.random()
            if roll < 0.3:
                kind, gen, key = self.secret()
                camel = "".join(w.capitalize() for w in key.lower().split("_"))
                d.add(f"const {camel[0].lower() + camel[1:]} = '{gen()}';", kind)
            elif roll < 0.4:
                jwt = self.f.jwt()
                d.add(f"const headers = {{ Authorization: 'Bearer {jwt}' }};", "jwt")
            elif roll < 0.6:
                d.add(self.r.choice([
                    "const apiKey = process.env.API_KEY;", "const token = await getToken();",
                    f"const sri = 'sha384-{self.f.base64_blob(48)}';", f"const sessionId = '{self.f.uuid()}';",
                    "const password = config.get('db.password');", f"const etag = '{self.f.md5()}';",
                    "const example = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';",
                ]))
            else:
                k, v = self.decoy_kv()
                d.add(f"const {k} = '{v}';")
        d.add("module.exports = {};")
        return d

    def go_file(self):
        d = Doc()
        d.add("package config")
        d.add("")
        d.add('import "os"')
        d.add("")
        for _ in range(self.r.randrange(5, 12)):
            roll = self.r.random()
            if roll < 0.3:
                kind, gen, key = self.secret()
                camel = "".join(w.capitalize() for w in key.lower().split("_"))
                d.add(f'const {camel[0].lower() + camel[1:]} = "{gen()}"', kind)
            elif roll < 0.4:
                kind, v = self.url_cred()
                d.add(f'var dsn = "{v}"', kind)
            elif roll < 0.7:
                d.add(self.r.choice([
                    'var token = os.Getenv("TOKEN")', "password := cfg.Password", f'const buildID = "{self.f.uuid()}"',
                    f'const goSum = "h1:{self.f.base64_blob(32)}"', 'const tokenHeader = "X-Auth-Token"',
                    f'const schemaHash = "{self.f.sha256()}"',
                ]))
            else:
                k, v = self.decoy_kv()
                d.add(f'const {k} = "{v}"')
        return d

    def java_properties(self):
        d = Doc()
        d.add("spring.application.name=orders")
        for _ in range(self.r.randrange(5, 12)):
            roll = self.r.random()
            if roll < 0.3:
                d.add(f"spring.datasource.password={self.f.password()}", "generic-password")
            elif roll < 0.4:
                kind, v = self.url_cred()
                d.add(f"spring.datasource.url=jdbc:{v}", kind)
            elif roll < 0.7:
                d.add(self.r.choice(["spring.datasource.password=${DB_PASSWORD}", "jwt.secret=${JWT_SECRET}",
                                     "server.ssl.key-store-password=changeit", f"app.instance-id={self.f.uuid()}",
                                     "security.oauth2.client.client-secret=<client-secret>"]))
            else:
                d.add(f"server.port={self.r.randrange(8000, 9000)}")
        return d

    def shell_file(self):
        d = Doc()
        d.add("#!/bin/sh")
        d.add("set -eu")
        for _ in range(self.r.randrange(5, 10)):
            roll = self.r.random()
            if roll < 0.3:
                kind, gen, key = self.secret()
                d.add(f'export {key}="{gen()}"', kind)
            elif roll < 0.4:
                kind, v = self.url_cred()
                d.add(f"git clone {v}" if v.startswith("https") else f'psql "{v}"', kind)
            elif roll < 0.7:
                d.add(self.r.choice([
                    'curl -H "Authorization: Bearer $TOKEN" https://api.internal/v1/items',
                    f"echo '{self.f.sha256()}  dist/app.tar.gz' | sha256sum -c -",
                    'export GITHUB_TOKEN="${GITHUB_TOKEN:?missing}"', 'docker login -u "$USER" --password-stdin',
                ]))
            else:
                d.add("make build")
        return d

    def terraform(self):
        d = Doc()
        d.add('provider "aws" {')
        d.add('  region     = "us-east-1"')
        if self.r.random() < 0.6:
            d.add(f'  access_key = "{self.f.aws_access_key_id()}"', "aws-access-key-id")
            d.add(f'  secret_key = "{self.f.aws_secret_access_key()}"', "aws-secret-access-key")
        else:
            d.add("  access_key = var.access_key")
            d.add("  secret_key = var.secret_key")
        d.add("}")
        d.add('resource "aws_db_instance" "db" {')
        if self.r.random() < 0.5:
            d.add(f'  password = "{self.f.password()}"', "generic-password")
        else:
            d.add("  password = random_password.db.result")
        d.add(f'  snapshot_identifier = "{self.f.uuid()}"')
        d.add("}")
        return d

    def docker_config(self):
        d = Doc()
        d.add("{")
        d.add('  "auths": {')
        n = self.r.randrange(1, 4)
        for i in range(n):
            host = self.r.choice(["ghcr.io", "registry.gitlab.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com", "docker.io", "quay.io"])
            comma = "," if i + 1 < n else ""
            if self.r.random() < 0.75:
                d.add(f'    "{host}": {{ "auth": "{self.f.docker_auth()}" }}{comma}', "docker-auth")
            else:
                d.add(f'    "{host}": {{}}{comma}')
        d.add("  },")
        d.add('  "credsStore": "desktop"')
        d.add("}")
        return d

    def pem_file(self):
        d = Doc()
        if self.r.random() < 0.7:
            d.block(self.f.private_key(), "private-key")
        else:
            kind = self.r.choice(["PUBLIC KEY", "CERTIFICATE"])
            d.block([f"-----BEGIN {kind}-----"] + [self.f.s("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 64) for _ in range(6)] + [f"-----END {kind}-----"])
        return d

    def rc_file(self):
        d = Doc()
        if self.r.random() < 0.5:
            d.add("registry=https://registry.npmjs.org/")
            d.add(f"//registry.npmjs.org/:_authToken={self.f.npm()}", "npm")
            d.add("//npm.pkg.github.com/:_authToken=${NODE_AUTH_TOKEN}")
        else:
            d.add("[pypi]")
            d.add("username = __token__")
            d.add(f"password = {self.f.pypi()}", "pypi")
        return d

    def readme(self):
        d = Doc()
        d.add("# Setup")
        d.add("")
        for line in self.r.sample([
            "Set `AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE` and `AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`.",
            "export GITHUB_TOKEN=<your-token>",
            "export GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "Example JWT: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "DATABASE_URL=postgres://user:password@localhost:5432/app",
            "stripe.api_key = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'",
            "Webhook: https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "api_key: YOUR_API_KEY",
            "password: ********",
            "token: {{ vault_token }}",
            f"Verify the download: sha256 `{self.f.sha256()}`",
            f"Request id `{self.f.uuid()}` identifies the call.",
            "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        ], 6):
            for l in line.split("\n"):
                d.add(l)
            d.add("")
        return d

    def lockfile(self):
        d = Doc()
        which = self.r.choice(["package-lock.json", "yarn.lock", "Cargo.lock", "poetry.lock", "go.sum"])
        names = ["js-tokens", "jsonwebtoken", "secret-handshake", "passport-oauth2", "auth0-js", "keytar", "bcrypt"]
        if which == "package-lock.json":
            d.add('{ "lockfileVersion": 3, "packages": {')
            for n in names:
                d.add(f'  "node_modules/{n}": {{ "version": "1.{self.r.randrange(9)}.0", "resolved": "https://registry.npmjs.org/{n}/-/{n}-1.0.0.tgz", "integrity": "{self.f.sha512_integrity()}" }},')
            d.add("} }")
        elif which == "yarn.lock":
            for n in names:
                d.add(f"{n}@^1.0.0:")
                d.add('  version "1.0.0"')
                d.add(f'  resolved "https://registry.yarnpkg.com/{n}/-/{n}-1.0.0.tgz#{self.f.sha1()}"')
                d.add(f"  integrity {self.f.sha512_integrity()}")
        elif which == "Cargo.lock":
            for n in ["secrecy", "jsonwebtoken", "oauth2", "keyring"]:
                d.add("[[package]]")
                d.add(f'name = "{n}"')
                d.add('version = "0.10.0"')
                d.add(f'checksum = "{self.f.sha256()}"')
        elif which == "poetry.lock":
            for n in ["python-jose", "passlib", "oauthlib"]:
                d.add("[[package]]")
                d.add(f'name = "{n}"')
                d.add(f'files = [{{file = "{n}-1.0.tar.gz", hash = "sha256:{self.f.sha256()}"}}]')
        else:
            for n in ["golang.org/x/oauth2", "github.com/golang-jwt/jwt/v5", "github.com/hashicorp/vault/api"]:
                d.add(f"{n} v0.21.0 h1:{self.f.base64_blob(32)}")
                d.add(f"{n} v0.21.0/go.mod h1:{self.f.base64_blob(32)}")
        return which, d

    def checksums(self):
        d = Doc()
        for _ in range(self.r.randrange(4, 10)):
            d.add(f"{self.r.choice([self.f.sha256(), self.f.sha1(), self.f.md5()])}  dist/{self.f.s('abcdefghij', 6)}.tar.gz")
        return d


WRITERS = [
    ("env", ".env", 3), ("yaml", ".yaml", 3), ("json", ".json", 3), ("py", ".py", 3), ("js", ".js", 3),
    ("go", ".go", 2), ("properties", ".properties", 1), ("sh", ".sh", 2), ("tf", ".tf", 1),
    ("docker", "config.json", 1), ("pem", ".pem", 1), ("rc", "rc", 1), ("readme", "README.md", 2),
    ("lock", None, 2), ("sums", "SHA256SUMS", 1),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    c = Corpus(args.seed)
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    labels = []
    table = [w for w in WRITERS for _ in range(w[2])]
    for i in range(args.files):
        name, ext, _ = c.r.choice(table)
        sub = os.path.join(out, f"svc{i % 25:02d}", f"d{i:04d}")
        os.makedirs(sub, exist_ok=True)
        if name == "lock":
            fname, doc = c.lockfile()
        else:
            doc = {
                "env": c.env_file, "yaml": c.yaml_file, "json": c.json_file, "py": c.python_file, "js": c.js_file,
                "go": c.go_file, "properties": c.java_properties, "sh": c.shell_file, "tf": c.terraform,
                "docker": c.docker_config, "pem": c.pem_file, "rc": c.rc_file, "readme": c.readme, "sums": c.checksums,
            }[name]()
            fname = {"env": ".env", "docker": "config.json", "rc": ".npmrc", "readme": "README.md", "sums": "SHA256SUMS"}.get(name, f"file{ext}")
            if name == "rc" and doc.lines[0] == "[pypi]":
                fname = ".pypirc"
        path = os.path.join(sub, fname)
        with open(path, "w") as fh:
            fh.write("\n".join(doc.lines) + "\n")
        rel = os.path.relpath(path, out)
        for line, kind in doc.labels:
            labels.append({"path": rel, "line": line, "kind": kind})
    label_path = out.rstrip("/") + ".labels.jsonl"
    with open(label_path, "w") as fh:
        for l in labels:
            fh.write(json.dumps(l) + "\n")
    print(f"{args.files} files, {len(labels)} labelled secrets -> {out} (labels: {label_path})", file=sys.stderr)


if __name__ == "__main__":
    main()
