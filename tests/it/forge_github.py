#!/usr/bin/env python3
"""Strict local stand-in for the GitHub REST API (pull requests), for runner's gitops tests.

Every request is checked against GitHub's published OpenAPI description
(`@octokit/openapi`, generated/api.github.com.json; scripts/octokit-openapi.sh fetches it):
method + path must name a documented operation (else 404), path and query parameters must
match their schemas (unknown query parameters are refused), the JSON body must validate
against the operation's request schema with `$ref`s resolved into `components` (else 422
with the validator's message), and the Authorization header must carry the expected token
(else 401). Answers use the operation's documented status codes only (checked before
sending). Pull requests live in memory; a second open PR for the same head/base gets
GitHub's 422 "A pull request already exists for owner:branch.".

Implemented: pulls/list, pulls/create, pulls/update, pulls/get, issues/add-labels,
repos/create-commit-status (stored per commit, listed by GET /_statuses). Other
documented operations answer 501. Every request is recorded (JSON lines in --record, and
GET /_recorded); GET /_pulls lists the stored PRs. An optional `/api/v3` prefix (GitHub
Enterprise) is accepted.

usage: forge_github.py --spec FILE --token TOKEN [--port 0] [--record FILE] [--git-root DIR]
Prints "PORT <n>" on stdout once listening. With --git-root, a PR's head and base branches
must exist in DIR/<owner>/<repo>.git (as on GitHub).
"""

import argparse
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import jsonschema

IMPLEMENTED = {"pulls/list", "pulls/create", "pulls/update", "pulls/get", "issues/add-labels",
               "repos/create-commit-status"}


class Spec:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        self.ops = []  # (regex, template, method, op)
        for template, item in self.doc["paths"].items():
            names = re.findall(r"\{([^}]+)\}", template)
            pattern = "^"
            rest = template
            for n in names:
                pre, rest = rest.split("{" + n + "}", 1)
                pattern += re.escape(pre) + "([^/]+)"
            pattern += re.escape(rest) + "$"
            for method, op in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    self.ops.append((re.compile(pattern), names, method.upper(), op, item))

    def resolve(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            node = self.doc
            for part in obj["$ref"].lstrip("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def match(self, method, path):
        """-> (op, path params) | ("method", None) when only the method is wrong | (None, None)"""
        path_hit = False
        for rx, names, m, op, item in self.ops:
            mt = rx.match(path)
            if not mt:
                continue
            path_hit = True
            if m == method:
                return op, dict(zip(names, mt.groups()))
        return ("method" if path_hit else None), None

    def params(self, op):
        out = {}
        for p in op.get("parameters", []):
            p = self.resolve(p)
            out[(p["in"], p["name"])] = p
        return out

    def validate(self, schema, value):
        schema = self.resolve(schema)
        wrapped = dict(schema)
        wrapped["components"] = self.doc["components"]
        validator = jsonschema.Draft4Validator(wrapped)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        return errors


def coerce(value, schema):
    """Query/path strings to the schema's type; raises ValueError."""
    t = schema.get("type")
    if t == "integer":
        return int(value)
    if t == "number":
        return float(value)
    if t == "boolean":
        if value not in ("true", "false"):
            raise ValueError("not a boolean")
        return value == "true"
    return value


class State:
    def __init__(self, token, record, git_root):
        self.token = token
        self.record_path = record
        self.git_root = git_root
        self.lock = threading.Lock()
        self.pulls = {}  # (owner, repo) -> list of PR dicts
        self.next_number = {}
        self.recorded = []
        self.statuses = {}  # "owner/repo@sha" -> list of status dicts, oldest first

    def record(self, entry):
        with self.lock:
            self.recorded.append(entry)
            if self.record_path:
                with open(self.record_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")

    def branch_exists(self, owner, repo, branch):
        if not self.git_root:
            return True
        gd = f"{self.git_root}/{owner}/{repo}.git"
        r = subprocess.run(["git", "--git-dir", gd, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                           capture_output=True, text=True)
        return r.returncode == 0


def make_handler(spec, state, base_url_holder):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def reply(self, status, body, op=None):
            if op is not None:
                documented = set(op.get("responses", {}).keys())
                if str(status) not in documented and status not in (401, 404, 400, 501):
                    body = {"message": f"stand-in bug: {status} is not a documented response of {op.get('operationId')}"}
                    status = 500
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return status

        def handle_any(self, method):
            parts = urlsplit(self.path)
            path = parts.path
            if path.startswith("/api/v3/"):
                path = path[len("/api/v3"):]
            query = parse_qsl(parts.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization") or ""
            entry = {"method": method, "path": path, "query": dict(query),
                     "auth": auth.split(" ")[0] + " ***" if auth else "",
                     "content_type": self.headers.get("Content-Type", ""),
                     "body": None}
            try:
                entry["body"] = json.loads(raw) if raw else None
            except ValueError:
                entry["body"] = raw.decode("utf-8", "replace")
            status = self.dispatch(method, path, query, raw, auth)
            entry["status"] = status
            if not path.startswith("/_"):
                state.record(entry)

        def dispatch(self, method, path, query, raw, auth):
            if path == "/_recorded" and method == "GET":
                return self.reply(200, state.recorded)
            if path == "/_pulls" and method == "GET":
                with state.lock:
                    return self.reply(200, {f"{o}/{r}": prs for (o, r), prs in state.pulls.items()})
            if path == "/_statuses" and method == "GET":
                with state.lock:
                    return self.reply(200, state.statuses)
            op, pparams = spec.match(method, path)
            if op is None or op == "method":
                return self.reply(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
            if not auth:
                return self.reply(401, {"message": "Requires authentication"})
            scheme, _, tok = auth.partition(" ")
            if scheme.lower() not in ("bearer", "token") or tok != state.token:
                return self.reply(401, {"message": "Bad credentials"})
            declared = spec.params(op)
            # Path parameters.
            values = {}
            for name, raw_v in pparams.items():
                p = declared.get(("path", name))
                if p is None:
                    return self.reply(404, {"message": f"Not Found (undocumented path parameter {name})"})
                try:
                    values[name] = coerce(raw_v, p.get("schema", {}))
                except ValueError:
                    return self.reply(404, {"message": "Not Found"})
                errs = spec.validate(p.get("schema", {}), values[name])
                if errs:
                    return self.reply(404, {"message": f"Not Found ({name}: {errs[0].message})"})
            # Query parameters: documented ones only, typed, enums respected.
            q = {}
            for name, v in query:
                p = declared.get(("query", name))
                if p is None:
                    return self.reply(422, {"message": f"Invalid request. Unknown query parameter `{name}` for {op['operationId']}."})
                try:
                    cv = coerce(v, p.get("schema", {}))
                except ValueError:
                    return self.reply(422, {"message": f"Invalid request. `{name}` is not a {p['schema'].get('type')}."})
                errs = spec.validate(p.get("schema", {}), cv)
                if errs:
                    return self.reply(422, {"message": f"Invalid request. `{name}`: {errs[0].message}"})
                q[name] = cv
            for (where, name), p in declared.items():
                if p.get("required") and where == "query" and name not in q:
                    return self.reply(422, {"message": f"Invalid request. Missing query parameter `{name}`."})
            # Body.
            body = None
            rb = spec.resolve(op.get("requestBody")) if op.get("requestBody") else None
            if rb is None and raw.strip():
                return self.reply(422, {"message": f"Invalid request. {op['operationId']} takes no body."})
            if rb is not None:
                if raw.strip():
                    ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                    if ctype != "application/json":
                        return self.reply(400, {"message": f"Problems parsing JSON (Content-Type {ctype!r}, expected application/json)"})
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        return self.reply(400, {"message": "Problems parsing JSON"})
                elif rb.get("required"):
                    return self.reply(400, {"message": "Problems parsing JSON (body required)"})
                if body is not None:
                    schema = rb["content"]["application/json"]["schema"]
                    errs = spec.validate(schema, body)
                    if errs:
                        e = errs[0]
                        where = "/".join(str(x) for x in e.path) or "(root)"
                        return self.reply(422, {"message": f"Invalid request.\n\n{e.message} at {where}",
                                                "documentation_url": "https://docs.github.com/rest"})
            opid = op["operationId"]
            if opid not in IMPLEMENTED:
                return self.reply(501, {"message": f"{opid} is documented but not implemented by the stand-in"})
            return getattr(self, "op_" + opid.replace("/", "_").replace("-", "_"))(op, values, q, body)

        # --- operations -------------------------------------------------------------

        def pr_json(self, owner, repo, pr):
            base = base_url_holder[0]
            return {
                "url": f"{base}/repos/{owner}/{repo}/pulls/{pr['number']}",
                "html_url": f"https://github.example/{owner}/{repo}/pull/{pr['number']}",
                "number": pr["number"], "state": pr["state"], "title": pr["title"], "body": pr["body"],
                "head": {"ref": pr["head"], "label": f"{owner}:{pr['head']}"},
                "base": {"ref": pr["base"], "label": f"{owner}:{pr['base']}"},
                "labels": [{"name": n} for n in pr["labels"]],
                "maintainer_can_modify": pr.get("maintainer_can_modify", False),
            }

        def op_pulls_list(self, op, v, q, body):
            owner, repo = v["owner"], v["repo"]
            state_f = q.get("state", "open")
            head = q.get("head")
            with state.lock:
                prs = list(state.pulls.get((owner, repo), []))
            out = []
            for pr in prs:
                if state_f != "all" and pr["state"] != state_f:
                    continue
                if head is not None:
                    h_owner, _, h_branch = head.partition(":")
                    if not h_branch or h_owner != owner or pr["head"] != h_branch:
                        continue
                if q.get("base") is not None and pr["base"] != q["base"]:
                    continue
                out.append(self.pr_json(owner, repo, pr))
            return self.reply(200, out, op)

        def op_pulls_get(self, op, v, q, body):
            with state.lock:
                prs = state.pulls.get((v["owner"], v["repo"]), [])
                pr = next((p for p in prs if p["number"] == v["pull_number"]), None)
            if pr is None:
                return self.reply(404, {"message": "Not Found"})
            return self.reply(200, self.pr_json(v["owner"], v["repo"], pr), op)

        def op_pulls_create(self, op, v, q, body):
            owner, repo = v["owner"], v["repo"]
            head = body.get("head", "")
            if ":" in head:
                h_owner, _, head = head.partition(":")
                if h_owner != owner:
                    return self.reply(422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}, op)
            if "title" not in body and "issue" not in body:
                return self.reply(422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "title", "code": "missing_field"}]}, op)
            for field, br in (("head", head), ("base", body["base"])):
                if not state.branch_exists(owner, repo, br):
                    return self.reply(422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": field, "code": "invalid"}]}, op)
            with state.lock:
                prs = state.pulls.setdefault((owner, repo), [])
                if any(p["state"] == "open" and p["head"] == head and p["base"] == body["base"] for p in prs):
                    dup = True
                else:
                    dup = False
                    n = state.next_number.get((owner, repo), 0) + 1
                    state.next_number[(owner, repo)] = n
                    pr = {"number": n, "state": "open", "title": body.get("title", ""), "body": body.get("body") or "",
                          "head": head, "base": body["base"], "labels": [],
                          "maintainer_can_modify": body.get("maintainer_can_modify", False)}
                    prs.append(pr)
            if dup:
                return self.reply(422, {"message": "Validation Failed", "errors": [
                    {"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for {owner}:{head}."}],
                    "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"}, op)
            return self.reply(201, self.pr_json(owner, repo, pr), op)

        def op_pulls_update(self, op, v, q, body):
            with state.lock:
                prs = state.pulls.get((v["owner"], v["repo"]), [])
                pr = next((p for p in prs if p["number"] == v["pull_number"]), None)
                if pr is not None and body:
                    for k in ("title", "body", "state", "base"):
                        if k in body:
                            pr[k] = body[k]
            if pr is None:
                return self.reply(404, {"message": "Not Found"})
            return self.reply(200, self.pr_json(v["owner"], v["repo"], pr), op)

        def op_issues_add_labels(self, op, v, q, body):
            names = []
            items = body.get("labels", []) if isinstance(body, dict) else (body or [])
            for it in items:
                names.append(it if isinstance(it, str) else it.get("name"))
            with state.lock:
                prs = state.pulls.get((v["owner"], v["repo"]), [])
                pr = next((p for p in prs if p["number"] == v["issue_number"]), None)
                if pr is not None:
                    for n in names:
                        if n not in pr["labels"]:
                            pr["labels"].append(n)
            if pr is None:
                return self.reply(404, {"message": "Not Found"}, op)
            return self.reply(200, [{"id": i + 1, "name": n, "color": "ededed", "default": False} for i, n in enumerate(pr["labels"])], op)

        def op_repos_create_commit_status(self, op, v, q, body):
            sha = v["sha"]
            if not re.fullmatch(r"[0-9a-f]{40}", sha):
                return self.reply(422, {"message": "No commit found for SHA: " + sha}, op)
            with state.lock:
                lst = state.statuses.setdefault(f"{v['owner']}/{v['repo']}@{sha}", [])
                st = {"id": len(lst) + 1, "state": body["state"], "context": body.get("context", "default"),
                      "target_url": body.get("target_url"), "description": body.get("description")}
                lst.append(st)
            base = base_url_holder[0]
            return self.reply(201, {
                "url": f"{base}/repos/{v['owner']}/{v['repo']}/statuses/{sha}",
                "avatar_url": None, "id": st["id"], "node_id": f"SC_{st['id']}",
                "state": st["state"], "description": st["description"], "target_url": st["target_url"],
                "context": st["context"], "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z", "creator": None}, op)

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_PATCH(self):
            self.handle_any("PATCH")

        def do_PUT(self):
            self.handle_any("PUT")

        def do_DELETE(self):
            self.handle_any("DELETE")

    return H


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--record")
    ap.add_argument("--git-root")
    a = ap.parse_args()
    spec = Spec(a.spec)
    state = State(a.token, a.record, a.git_root)
    holder = [""]
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(spec, state, holder))
    srv.daemon_threads = True
    holder[0] = f"http://127.0.0.1:{srv.server_address[1]}"
    print(f"PORT {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
