"""Format-valid but fake credentials and look-alikes, from a seeded RNG.

Shared by make_corpus.py (benchmark corpus) and the fixture generator. Every token is
built from pseudo-random characters, so it is high-entropy like a real one but was
never issued by any provider.
"""
import base64
import hashlib
import json
import random
import string
import uuid

ALNUM = string.ascii_letters + string.digits
UPPER_B32 = string.ascii_uppercase + "234567"
HEX = "0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"
B64URL = string.ascii_letters + string.digits + "-_"


class Fakes:
    def __init__(self, seed=None):
        self.r = random.Random(seed)

    def s(self, alphabet, n):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    # ---- true secrets, one generator per kind ---------------------------------
    def aws_access_key_id(self):
        return self.r.choice(["AKIA", "ASIA"]) + self.s(UPPER_B32, 16)

    def aws_secret_access_key(self):
        return self.s(B64, 40)

    def github(self):
        p = self.r.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"])
        return p + self.s(ALNUM, 36)

    def github_fine_grained(self):
        return "github_pat_" + self.s(ALNUM, 22) + "_" + self.s(ALNUM, 59)

    def gitlab(self):
        return self.r.choice(
            [
                "glpat-" + self.s(ALNUM + "_-", 20),
                "glptt-" + self.s(HEX, 40),
                "gldt-" + self.s(ALNUM, 20),
                "glrt-" + self.s(ALNUM, 20),
            ]
        )

    def slack_token(self):
        d = lambda n: self.s(string.digits, n)
        return self.r.choice(
            [
                f"xoxb-{d(12)}-{d(13)}-{self.s(ALNUM, 24)}",
                f"xoxp-{d(12)}-{d(12)}-{d(13)}-{self.s(HEX, 32)}",
                f"xoxe.xoxp-1-{self.s(ALNUM.upper(), 150)}",
                f"xoxa-2-{d(12)}-{d(12)}-{self.s(ALNUM, 30)}",
            ]
        )

    def slack_webhook(self):
        return "https://hooks.slack.com/services/T{}/B{}/{}".format(
            self.s(UPPER_B32, 10), self.s(UPPER_B32, 10), self.s(ALNUM, 24)
        )

    def stripe(self):
        return self.r.choice(["sk_live_", "rk_live_"]) + self.s(ALNUM, 24 + self.r.randrange(0, 76))

    def stripe_test(self):
        return "sk_test_" + self.s(ALNUM, 24 + self.r.randrange(0, 76))

    def google_api_key(self):
        return "AIza" + self.s(ALNUM + "_-", 35)

    def jwt(self):
        header = {"alg": self.r.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
        payload = {
            "sub": str(uuid.UUID(int=self.r.getrandbits(128))),
            "iat": self.r.randrange(1_600_000_000, 1_800_000_000),
            "scope": self.r.choice(["read", "admin", "deploy"]),
        }
        b = lambda o: base64.urlsafe_b64encode(json.dumps(o, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{b(header)}.{b(payload)}.{self.s(B64URL, 43)}"

    def npm(self):
        return "npm_" + self.s(ALNUM, 36)

    def pypi(self):
        return "pypi-AgEIcHlwaS5vcmc" + self.s(B64URL, 70 + self.r.randrange(0, 80))

    def sendgrid(self):
        return "SG." + self.s(B64URL, 22) + "." + self.s(B64URL, 43)

    def twilio_api_key(self):
        return "SK" + self.s(HEX, 32)

    def twilio_account_sid(self):
        return "AC" + self.s(HEX, 32)

    def openai(self):
        if self.r.random() < 0.5:
            return "sk-" + self.s(ALNUM, 20) + "T3BlbkFJ" + self.s(ALNUM, 20)
        return "sk-proj-" + self.s(B64URL, 74) + "T3BlbkFJ" + self.s(B64URL, 74)

    def shopify(self):
        return self.r.choice(["shpat_", "shpss_", "shpca_", "shppa_"]) + self.s(HEX, 32)

    def vault(self):
        if self.r.random() < 0.5:
            return "hvs." + self.s(ALNUM + "_-", 90 + self.r.randrange(0, 20))
        return "hvs." + self.s(ALNUM, 24)

    def vault_legacy(self):
        return "s." + self.s(ALNUM, 24)

    def databricks(self):
        return "dapi" + self.s(HEX, 32)

    def mailchimp(self):
        return self.s(HEX, 32) + "-us" + str(self.r.randrange(1, 21))

    def telegram(self):
        return str(self.r.randrange(10**8, 10**10)) + ":AA" + self.s(ALNUM + "_-", 33)

    def azure_storage_key(self):
        return self.s(B64, 86) + "=="

    def password(self, n=None):
        n = n or self.r.randrange(16, 33)
        pw = self.s(ALNUM + "!#%^*_+-.~", n - 2) + self.s(string.digits, 1) + self.s(string.ascii_letters, 1)
        return pw

    def url_password(self):
        return self.s(ALNUM + "_-.~", self.r.randrange(14, 30)) + self.s(string.digits, 1)

    def docker_auth(self):
        user = self.r.choice(["ci-bot", "deploy", "jenkins", "gitlab-ci-token", "AWS"])
        return base64.b64encode(f"{user}:{self.password()}".encode()).decode()

    def private_key(self, kind=None):
        kind = kind or self.r.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"])
        nlines = {"EC PRIVATE KEY": 3, "OPENSSH PRIVATE KEY": 7}.get(kind, 12)
        body = [self.s(B64, 64) for _ in range(nlines)] + [self.s(B64, self.r.randrange(8, 60)) + "=="]
        lines = [f"-----BEGIN {kind}-----"]
        if kind == "RSA PRIVATE KEY" and self.r.random() < 0.3:
            lines += ["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-128-CBC," + self.s(HEX.upper(), 32), ""]
        lines += body + [f"-----END {kind}-----"]
        return lines

    # ---- look-alikes (must not be reported) -------------------------------------
    def md5(self):
        return hashlib.md5(self.s(ALNUM, 20).encode()).hexdigest()

    def sha1(self):
        return hashlib.sha1(self.s(ALNUM, 20).encode()).hexdigest()

    def sha256(self):
        return hashlib.sha256(self.s(ALNUM, 20).encode()).hexdigest()

    def sha512_integrity(self):
        return "sha512-" + base64.b64encode(hashlib.sha512(self.s(ALNUM, 20).encode()).digest()).decode()

    def uuid(self):
        return str(uuid.UUID(int=self.r.getrandbits(128)))

    def base64_blob(self, n=300):
        return base64.b64encode(bytes(self.r.getrandbits(8) for _ in range(n))).decode()
