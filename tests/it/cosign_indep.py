#!/usr/bin/env python3
"""An independent implementation of cosign's published signature format, for tests.

requirements: Python >= 3.8, cryptography (ECDSA P-256, PEM/DER), PyNaCl (nacl/secretbox)
    python3 -m pip install cryptography PyNaCl
Everything else is the standard library (hashlib.scrypt, urllib for the registry API).

Written from cosign's specs (specs/SIGNATURE_SPEC.md, ATTESTATION_SPEC.md) and the
behaviour of cosign's key code, not from its source; it is meant to cross-check another
implementation (the runner's Rust signer), so it is deliberately strict and explicit.

Formats, as cosign writes them:
  * private key: PEM type "ENCRYPTED SIGSTORE PRIVATE KEY" (cosign >= 2.0; older cosign
    wrote "ENCRYPTED COSIGN PRIVATE KEY" -- both are read). PEM body = compact JSON
      {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<b64 32 bytes>"},
       "cipher":{"name":"nacl/secretbox","nonce":"<b64 24 bytes>"},
       "ciphertext":"<b64 secretbox(16-byte Poly1305 tag || ciphertext)>"}
    key = scrypt(password, salt, N, r, p, 32 bytes); plaintext = PKCS#8 DER private key.
    go-securesystemslib's `encrypted` package (cosign >= 2.x) writes N=65536 ("standard");
    go-tuf's older copy wrote N=32768 ("legacy"); readers accept exactly
    N in {32768, 65536, 131072} with r=8, p=1. Empty password is allowed.
  * public key: PEM "PUBLIC KEY" (SubjectPublicKeyInfo DER).
  * signature: ECDSA P-256 over SHA-256 of the payload, ASN.1 DER, standard base64.
  * simple-signing payload (Go json.Marshal, compact, struct field order):
      {"critical":{"identity":{"docker-reference":"127.0.0.1:5000/runner/busybox"},
       "image":{"docker-manifest-digest":"sha256:<hex>"},
       "type":"cosign container image signature"},"optional":null}
    docker-reference = registry + "/" + repository (no tag, no digest); optional is null
    unless annotations (-a k=v) were given, then a JSON object with sorted keys.
  * signature image: tag "sha256-<hex>.sig" in the same repository, an OCI image manifest
    whose config is an OCI image config and whose layers are the payloads
    (mediaType application/vnd.dev.cosign.simplesigning.v1+json) with the annotation
    "dev.cosignproject.cosign/signature": <b64 signature>. New signatures are appended.
  * attestations: tag "sha256-<hex>.att", layers of mediaType
    application/vnd.dsse.envelope.v1+json, each blob a DSSE envelope
    {"payloadType":"application/vnd.in-toto+json","payload":<b64 statement>,
     "signatures":[{"keyid":"","sig":<b64>}]}, the signature over
    PAE = "DSSEv1 <len(type)> <type> <len(payload)> <payload>" (payload = decoded bytes);
    layer annotations {"dev.cosignproject.cosign/signature":"","predicateType":<uri>}.

CLI (exit 0 ok, 1 verification failure with the reason on stderr, 2 usage/IO error):
  cosign_indep.py generate-key-pair --output-dir DIR        (password: $COSIGN_PASSWORD)
  cosign_indep.py public-key --key cosign.key               (prints the public key PEM)
  cosign_indep.py sign --key cosign.key [--registry-user U --registry-password P] IMAGE
  cosign_indep.py verify --key cosign.pub [--registry-user U --registry-password P] IMAGE
  cosign_indep.py attest --key cosign.key --predicate FILE [--type T] IMAGE
  cosign_indep.py verify-attestation --key cosign.pub [--type T] IMAGE
Python: import cosign_indep; cosign_indep.sign(image, "cosign.key", "pw"),
cosign_indep.verify(image, "cosign.pub") -> dict (raises VerificationError / CosignError);
keys may be paths or PEM bytes, the password None means $COSIGN_PASSWORD.
IMAGE is host[:port]/repo:tag or host[:port]/repo@sha256:<hex>. Registries on localhost /
127.0.0.0/8 / ::1 are spoken to over plain HTTP, others over HTTPS ($COSIGN_INDEP_INSECURE=1
forces HTTP). Registry credentials may also come from $REGISTRY_USER / $REGISTRY_PASSWORD.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request

__all__ = [
    "CosignError",
    "VerificationError",
    "UsageError",
    "generate_key_pair",
    "encrypt_private_key",
    "load_private_key",
    "load_public_key",
    "simple_signing_payload",
    "pae",
    "sign",
    "verify",
    "attest",
    "verify_attestation",
    "Registry",
    "parse_ref",
]

# ---------------------------------------------------------------------------
# constants

SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
PUBLIC_PEM_TYPE = "PUBLIC KEY"
SCRYPT_ALLOWED = {(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)}
SCRYPT_DEFAULT_N = 65536  # what current cosign (go-securesystemslib "Standard") writes
SALT_SIZE = 32
NONCE_SIZE = 24

SIMPLESIGNING_MT = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_MT = "application/vnd.dsse.envelope.v1+json"
OCI_MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX_MT = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG_MT = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST_MT = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_MT = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG_MT = "application/vnd.docker.container.image.v1+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST_MT, OCI_INDEX_MT, DOCKER_MANIFEST_MT, DOCKER_LIST_MT])
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIG_TYPE = "cosign container image signature"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
INTOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"

# cosign's --type short names (cmd/cosign/cli/options/predicate.go)
PREDICATE_TYPES = {
    "custom": "https://cosign.sigstore.dev/attestation/v1",
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "link": "https://in-toto.io/Link/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
}


class CosignError(Exception):
    """Usage or I/O problem (exit 2)."""

    exit_code = 2


class UsageError(CosignError):
    pass


class VerificationError(CosignError):
    """The thing checked is not validly signed (exit 1)."""

    exit_code = 1


def _crypto():
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.exceptions import InvalidSignature
    except ImportError as e:  # pragma: no cover
        raise CosignError("python package 'cryptography' missing: pip install cryptography") from e
    return hashes, serialization, ec, InvalidSignature


def _secretbox():
    try:
        import nacl.secret
        import nacl.exceptions
    except ImportError as e:  # pragma: no cover
        raise CosignError("python package 'PyNaCl' missing: pip install PyNaCl") from e
    return nacl.secret, nacl.exceptions


# ---------------------------------------------------------------------------
# Go-compatible JSON and PEM


def go_json(obj) -> bytes:
    """Compact JSON as Go's encoding/json.Marshal writes it: dict order kept (callers
    build struct-ordered dicts; Go maps are emitted with sorted keys -- use sort_map),
    UTF-8 output, and <, >, & escaped as \\u003c, \\u003e, \\u0026 (plus U+2028/9)."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s.encode("utf-8")


def sort_map(d):
    return None if d is None else {k: d[k] for k in sorted(d)}


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def unb64(s, what: str) -> bytes:
    if not isinstance(s, str):
        raise VerificationError(f"{what}: expected a base64 string, got {type(s).__name__}")
    try:
        return base64.b64decode(s, validate=True)
    except ValueError as e:
        raise VerificationError(f"{what}: invalid base64: {e}") from e


def pem_encode(pem_type: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN %s-----\n%s\n-----END %s-----\n" % (pem_type, "\n".join(lines), pem_type)).encode("ascii")


_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


def pem_decode(data: bytes):
    """First PEM block -> (type, der). Headers (Key: value) are not supported."""
    m = _PEM_RE.search(data)
    if not m:
        raise UsageError("no PEM block found")
    try:
        der = base64.b64decode(b"".join(m.group(2).split()), validate=True)
    except ValueError as e:
        raise UsageError(f"PEM body is not base64: {e}") from e
    return m.group(1).decode("ascii"), der


# ---------------------------------------------------------------------------
# keys


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    # 128*r*N bytes of memory: 128 MiB for N=2^17; hashlib's default cap is 32 MiB.
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * 1024 * 1024)


def encrypt_private_key(pkcs8_der: bytes, password: bytes, n: int = SCRYPT_DEFAULT_N,
                        pem_type: str = SIGSTORE_PEM_TYPE) -> bytes:
    """PKCS#8 DER -> cosign encrypted PEM."""
    if (n, 8, 1) not in SCRYPT_ALLOWED:
        raise UsageError(f"scrypt N={n} is not one cosign accepts ({sorted(x[0] for x in SCRYPT_ALLOWED)})")
    sbox, _ = _secretbox()
    salt = secrets.token_bytes(SALT_SIZE)
    nonce = secrets.token_bytes(NONCE_SIZE)
    key = _scrypt(password, salt, n, 8, 1)
    sealed = sbox.SecretBox(key).encrypt(pkcs8_der, nonce).ciphertext  # tag || ciphertext
    doc = {
        "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }
    return pem_encode(pem_type, go_json(doc))


def decrypt_private_key_der(pem_bytes: bytes, password: bytes) -> bytes:
    """cosign encrypted PEM -> decrypted plaintext (PKCS#8 DER for cosign keys)."""
    pem_type, body = pem_decode(pem_bytes)
    if pem_type not in (SIGSTORE_PEM_TYPE, COSIGN_PEM_TYPE):
        raise UsageError(f"unsupported private key PEM type {pem_type!r} "
                         f"(want {SIGSTORE_PEM_TYPE!r} or {COSIGN_PEM_TYPE!r})")
    try:
        doc = json.loads(body)
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        ct = base64.b64decode(doc["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"malformed encrypted key body: {e!r}") from e
    if kdf.get("name") != "scrypt":
        raise UsageError(f"unknown kdf {kdf.get('name')!r}")
    if cipher.get("name") != "nacl/secretbox":
        raise UsageError(f"unknown cipher {cipher.get('name')!r}")
    if (n, r, p) not in SCRYPT_ALLOWED:
        raise UsageError(f"unsupported scrypt parameters N={n} r={r} p={p}")
    if len(nonce) != NONCE_SIZE:
        raise UsageError(f"nonce is {len(nonce)} bytes, want {NONCE_SIZE}")
    sbox, nexc = _secretbox()
    key = _scrypt(password, salt, n, r, p)
    try:
        return sbox.SecretBox(key).decrypt(ct, nonce)
    except nexc.CryptoError as e:
        raise UsageError("decryption failed (wrong password?)") from e


def _looks_pkcs8(der: bytes) -> bool:
    """PrivateKeyInfo ::= SEQUENCE { version INTEGER (0|1), AlgorithmIdentifier SEQUENCE, ... }"""
    if len(der) < 8 or der[0] != 0x30:
        return False
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    return der[i : i + 3] in (b"\x02\x01\x00", b"\x02\x01\x01") and der[i + 3 : i + 4] == b"\x30"


def load_private_key(pem_bytes: bytes, password: bytes):
    """cosign encrypted PEM -> cryptography EC private key (P-256 only)."""
    _, serialization, ec, _ = _crypto()
    der = decrypt_private_key_der(pem_bytes, password)
    # cosign parses the plaintext with x509.ParsePKCS8PrivateKey only: a SEC1 "EC PRIVATE
    # KEY" body (SEQUENCE { INTEGER 1, OCTET STRING ... }) is refused, so refuse it too.
    if not _looks_pkcs8(der):
        raise UsageError("decrypted key is not PKCS#8 (SEC1/other DER is refused, as cosign does)")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError as e:
        raise UsageError(f"decrypted key is not PKCS#8 DER: {e}") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise UsageError(f"only ECDSA P-256 keys are supported here, got {type(key).__name__}")
    return key


def load_public_key(pem_bytes: bytes):
    _, serialization, ec, _ = _crypto()
    pem_type, _ = pem_decode(pem_bytes)
    if pem_type != PUBLIC_PEM_TYPE:
        raise UsageError(f"public key PEM type is {pem_type!r}, want {PUBLIC_PEM_TYPE!r}")
    key = serialization.load_pem_public_key(pem_bytes)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise UsageError("only ECDSA P-256 public keys are supported here")
    return key


def public_key_pem(key) -> bytes:
    _, serialization, _, _ = _crypto()
    if hasattr(key, "public_key"):
        key = key.public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem_encode(PUBLIC_PEM_TYPE, der)


def generate_key_pair(password: bytes, n: int = SCRYPT_DEFAULT_N, pem_type: str = SIGSTORE_PEM_TYPE):
    """-> (encrypted private key PEM, public key PEM), as `cosign generate-key-pair`."""
    _, serialization, ec, _ = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return encrypt_private_key(der, password, n, pem_type), public_key_pem(key)


def sign_bytes(key, data: bytes) -> bytes:
    hashes, _, ec, _ = _crypto()
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_bytes(pub, data: bytes, sig: bytes) -> bool:
    hashes, _, ec, InvalidSignature = _crypto()
    try:
        pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


# ---------------------------------------------------------------------------
# payloads


def simple_signing_payload(docker_reference: str, digest: str, optional: dict | None = None) -> bytes:
    """The exact bytes cosign signs for `cosign sign IMAGE`."""
    return go_json({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_SIG_TYPE,
        },
        "optional": sort_map(optional),
    })


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def predicate_uri(t: str | None) -> str | None:
    if t is None:
        return None
    if t in PREDICATE_TYPES:
        return PREDICATE_TYPES[t]
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t):
        return t
    raise UsageError(f"invalid predicate type {t!r} (short names: {', '.join(sorted(PREDICATE_TYPES))}, or a URI)")


# ---------------------------------------------------------------------------
# references


class Ref:
    def __init__(self, registry: str, repo: str, tag: str | None, digest: str | None):
        self.registry, self.repo, self.tag, self.digest = registry, repo, tag, digest

    @property
    def repository(self) -> str:
        """registry/repo -- go-containerregistry's Repository.Name(), used as docker-reference."""
        return f"{self.registry}/{self.repo}"

    def __str__(self):
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


def parse_ref(s: str) -> Ref:
    """host[:port]/repo[:tag][@sha256:hex]; a first component without '.', ':' and not
    'localhost' means Docker Hub (index.docker.io, library/ for one-component names)."""
    rest, digest = s, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise UsageError(f"bad digest in {s!r}: want sha256:<64 lowercase hex>")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise UsageError(f"bad tag {tag!r} in {s!r}")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repo = first, remainder
    else:
        registry, repo = "index.docker.io", rest
        if "/" not in repo:
            repo = "library/" + repo
    if registry == "docker.io":
        registry = "index.docker.io"
    if not _REPO_RE.match(repo):
        raise UsageError(f"bad repository name {repo!r} in {s!r}")
    if tag is None and digest is None:
        tag = "latest"
    return Ref(registry, repo, tag, digest)


def sig_tag(digest: str, suffix: str = "sig") -> str:
    algo, _, hexd = digest.partition(":")
    return f"{algo}-{hexd}.{suffix}"


def sha256_digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------
# registry client (OCI distribution spec, plain urllib)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):  # handled by hand so auth headers are not leaked
        return None


class HTTPStatusError(CosignError):
    def __init__(self, method, url, status, body):
        super().__init__(f"{method} {url}: HTTP {status}: {body[:300]!r}")
        self.status = status


class Registry:
    def __init__(self, host: str, user: str | None = None, password: str | None = None,
                 insecure: bool | None = None, timeout: float = 30):
        self.host = host
        if insecure is None:
            hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            insecure = (hostname in ("localhost", "[::1]") or hostname.startswith("127.")
                        or os.environ.get("COSIGN_INDEP_INSECURE") == "1")
        self.base = ("http" if insecure else "https") + "://" + host
        self.user, self.password = user, password
        self.timeout = timeout
        self._auth: str | None = None  # Authorization header value once known
        self._opener = urllib.request.build_opener(_NoRedirect)

    # -- low level
    def _open(self, method, url, headers, data):
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            resp = self._opener.open(req, timeout=self.timeout)
            return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()
        except (urllib.error.URLError, OSError) as e:
            raise CosignError(f"{method} {url}: {e}") from e

    def _challenge(self, header: str, scope: str | None):
        scheme, _, params = header.partition(" ")
        kv = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if scheme.lower() == "basic":
            if self.user is None:
                raise CosignError(f"{self.host} wants basic auth; pass --registry-user/--registry-password")
            self._auth = "Basic " + b64(f"{self.user}:{self.password or ''}".encode())
            return
        if scheme.lower() == "bearer":
            q = {}
            if kv.get("service"):
                q["service"] = kv["service"]
            if scope or kv.get("scope"):
                q["scope"] = scope or kv["scope"]
            url = kv["realm"] + ("?" + urllib.parse.urlencode(q) if q else "")
            headers = {}
            if self.user is not None:
                headers["Authorization"] = "Basic " + b64(f"{self.user}:{self.password or ''}".encode())
            st, _, body = self._open("GET", url, headers, None)
            if st != 200:
                raise CosignError(f"token endpoint {url}: HTTP {st}: {body[:200]!r}")
            tok = json.loads(body)
            token = tok.get("token") or tok.get("access_token")
            if not token:
                raise CosignError(f"token endpoint {url} returned no token")
            self._auth = "Bearer " + token
            return
        raise CosignError(f"unsupported auth challenge {header!r}")

    def request(self, method, path, headers=None, data=None, scope=None, ok=(200,), allow=()):
        url = path if path.startswith("http") else self.base + path
        for attempt in range(3):
            h = dict(headers or {})
            if self._auth:
                h["Authorization"] = self._auth
            st, rh, body = self._open(method, url, h, data)
            if st == 401 and attempt < 2:
                www = next((v for k, v in rh.items() if k.lower() == "www-authenticate"), None)
                if not www:
                    break
                prev = self._auth
                self._challenge(www, scope)
                if self._auth == prev and attempt > 0:
                    break
                continue
            if st in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                loc = urllib.parse.urljoin(url, rh.get("Location") or rh.get("location"))
                # a redirect to blob storage must not carry the registry token
                st, rh, body = self._open(method, loc, {}, None)
            if st in ok or st in allow:
                return st, {k.lower(): v for k, v in rh.items()}, body
            break
        raise HTTPStatusError(method, url, st, body)

    # -- API
    def get_manifest(self, repo, ref):
        """-> (bytes, media_type, digest) or None on 404."""
        st, h, body = self.request("GET", f"/v2/{repo}/manifests/{ref}", {"Accept": MANIFEST_ACCEPT},
                                   scope=f"repository:{repo}:pull", allow=(404,))
        if st == 404:
            return None
        digest = sha256_digest(body)
        if ref.startswith("sha256:") and digest != ref:
            raise VerificationError(f"registry returned a manifest for {ref} whose sha256 is {digest}")
        hd = h.get("docker-content-digest")
        if hd and hd.startswith("sha256:") and hd != digest:
            raise CosignError(f"Docker-Content-Digest {hd} != sha256 of the manifest bytes {digest}")
        mt = h.get("content-type", "").split(";")[0].strip()
        try:
            mt = json.loads(body).get("mediaType") or mt
        except ValueError:
            pass
        return body, mt, digest

    def get_blob(self, repo, digest, max_size=64 * 1024 * 1024):
        _, _, body = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull")
        if len(body) > max_size:
            raise VerificationError(f"blob {digest} too large ({len(body)} bytes)")
        got = sha256_digest(body)
        if got != digest:
            raise VerificationError(f"blob {digest}: content hashes to {got}")
        return body

    def blob_exists(self, repo, digest):
        st, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull,push",
                                allow=(404,))
        return st == 200

    def put_blob(self, repo, data: bytes) -> str:
        digest = sha256_digest(data)
        scope = f"repository:{repo}:pull,push"
        if self.blob_exists(repo, digest):
            return digest
        _, h, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/", {"Content-Length": "0"}, b"",
                               scope=scope, ok=(202,))
        loc = h.get("location")
        if not loc:
            raise CosignError("blob upload: no Location header")
        loc = urllib.parse.urljoin(self.base + "/", loc)
        loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(digest)
        self.request("PUT", loc, {"Content-Type": "application/octet-stream",
                                  "Content-Length": str(len(data))}, data, scope=scope, ok=(201,))
        return digest

    def put_manifest(self, repo, ref, body: bytes, media_type: str) -> str:
        self.request("PUT", f"/v2/{repo}/manifests/{ref}", {"Content-Type": media_type}, body,
                     scope=f"repository:{repo}:pull,push", ok=(201,))
        return sha256_digest(body)

    def resolve(self, ref: Ref) -> str:
        """Manifest digest (sha256 of the exact manifest bytes) of a tag or digest ref."""
        got = self.get_manifest(ref.repo, ref.digest or ref.tag)
        if got is None:
            raise CosignError(f"{ref}: manifest not found")
        if ref.digest and got[2] != ref.digest:
            raise VerificationError(f"{ref}: manifest digest is {got[2]}")
        return got[2]


def _registry_for(ref: Ref, user=None, password=None) -> Registry:
    user = user if user is not None else os.environ.get("REGISTRY_USER")
    password = password if password is not None else os.environ.get("REGISTRY_PASSWORD")
    return Registry(ref.registry, user, password)


# ---------------------------------------------------------------------------
# signature / attestation images


def _empty_sig_config(layer_digests):
    # go-containerregistry's empty image after mutate.Append of the layers (cosign's shape)
    return go_json({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layer_digests],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": list(layer_digests)},
        "config": {},
    })


def _append_layer(reg: Registry, repo: str, tag: str, payload: bytes, media_type: str,
                  annotations: dict, is_dupe=None) -> dict:
    """Upload payload as a layer and PUT the sig/att manifest at tag, keeping existing layers."""
    existing = reg.get_manifest(repo, tag)
    layers = []
    if existing is not None:
        m = json.loads(existing[0])
        layers = list(m.get("layers") or [])
        if is_dupe:
            for l in layers:
                if is_dupe(l):
                    return {"manifest_digest": existing[2], "tag": tag, "appended": False, "layers": len(layers)}
    layer_digest = reg.put_blob(repo, payload)
    layers.append({"mediaType": media_type, "size": len(payload), "digest": layer_digest,
                   "annotations": sort_map(annotations)})
    config = _empty_sig_config([l["digest"] for l in layers])
    config_digest = reg.put_blob(repo, config)
    manifest = go_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MT,
        "config": {"mediaType": OCI_CONFIG_MT, "size": len(config), "digest": config_digest},
        "layers": layers,
    })
    md = reg.put_manifest(repo, tag, manifest, OCI_MANIFEST_MT)
    return {"manifest_digest": md, "tag": tag, "appended": True, "layers": len(layers)}


def _key_bytes(k) -> bytes:
    """PEM bytes, a PEM string, or a path (str / os.PathLike) to a PEM file."""
    if isinstance(k, (bytes, bytearray)):
        return bytes(k)
    if isinstance(k, str) and k.lstrip().startswith("-----BEGIN"):
        return k.encode("ascii")
    return _read(k)


def _pw(password) -> bytes:
    """None -> $COSIGN_PASSWORD (empty if unset); str is UTF-8 encoded."""
    if password is None:
        return os.environ.get("COSIGN_PASSWORD", "").encode("utf-8")
    return password.encode("utf-8") if isinstance(password, str) else bytes(password)


def sign(image_ref: str, key_pem, password=None, registry_user=None, registry_password=None,
         annotations: dict | None = None, claimed_digest: str | None = None,
         docker_reference: str | None = None) -> dict:
    """Sign IMAGE like `cosign sign --key` (legacy .sig tag layout) and push the signature.
    claimed_digest / docker_reference override what the payload claims (tests of refusal)."""
    key = load_private_key(_key_bytes(key_pem), _pw(password))
    ref = parse_ref(image_ref)
    reg = _registry_for(ref, registry_user, registry_password)
    digest = reg.resolve(ref)
    payload = simple_signing_payload(docker_reference or ref.repository, claimed_digest or digest, annotations)
    sig = sign_bytes(key, payload)
    pub = key.public_key()
    payload_digest = sha256_digest(payload)

    def dupe(layer):  # cosign's dupe detector: same payload, signature verifies with our key
        if layer.get("digest") != payload_digest:
            return False
        try:
            s = base64.b64decode((layer.get("annotations") or {}).get(SIG_ANNOTATION, ""))
        except ValueError:
            return False
        return bool(s) and verify_bytes(pub, payload, s)

    res = _append_layer(reg, ref.repo, sig_tag(digest, "sig"), payload, SIMPLESIGNING_MT,
                        {SIG_ANNOTATION: b64(sig)}, dupe)
    res.update({"image": f"{ref.repository}@{digest}", "digest": digest,
                "payload": payload.decode(), "signature": b64(sig)})
    return res


def verify(image_ref: str, pub_pem, registry_user=None, registry_password=None,
           identity: str | None = None) -> dict:
    """Verify IMAGE's .sig signatures like `cosign verify --key` (no tlog). Raises
    VerificationError unless at least one simple-signing layer verifies. With identity,
    the payload's docker-reference must also equal it."""
    pub = load_public_key(_key_bytes(pub_pem))
    ref = parse_ref(image_ref)
    reg = _registry_for(ref, registry_user, registry_password)
    digest = reg.resolve(ref)
    tag = sig_tag(digest, "sig")
    got = reg.get_manifest(ref.repo, tag)
    if got is None:
        raise VerificationError(f"no signatures found: {ref.repository}:{tag} does not exist")
    manifest = json.loads(got[0])
    ok, reasons = [], []
    layers = manifest.get("layers") or []
    for i, layer in enumerate(layers):
        where = f"layer {i} ({layer.get('digest')})"
        if layer.get("mediaType") != SIMPLESIGNING_MT:
            reasons.append(f"{where}: media type {layer.get('mediaType')!r} is not {SIMPLESIGNING_MT}")
            continue
        try:
            blob = reg.get_blob(ref.repo, layer["digest"])
            if "size" in layer and layer["size"] != len(blob):
                raise VerificationError(f"size {len(blob)} != descriptor size {layer['size']}")
            ann = layer.get("annotations") or {}
            if SIG_ANNOTATION not in ann:
                raise VerificationError(f"no {SIG_ANNOTATION} annotation")
            sig = unb64(ann[SIG_ANNOTATION], "signature annotation")
            if not verify_bytes(pub, blob, sig):
                raise VerificationError("signature does not verify with the given public key")
            try:
                p = json.loads(blob)
                crit = p["critical"]
                claimed = crit["image"]["docker-manifest-digest"]
                docker_ref = crit["identity"]["docker-reference"]
                typ = crit["type"]
            except (ValueError, KeyError, TypeError) as e:
                raise VerificationError(f"payload is not a simple-signing document: {e!r}") from e
            if typ != COSIGN_SIG_TYPE:
                raise VerificationError(f"payload critical.type is {typ!r}, want {COSIGN_SIG_TYPE!r}")
            if claimed != digest:
                raise VerificationError(f"payload is for {claimed}, not the image digest {digest}")
            if identity is not None and docker_ref != identity:
                raise VerificationError(f"payload docker-reference {docker_ref!r} != {identity!r}")
            ok.append({"layer": i, "docker-reference": docker_ref, "docker-manifest-digest": claimed,
                       "optional": p.get("optional"), "payload": blob.decode("utf-8", "replace")})
        except VerificationError as e:
            reasons.append(f"{where}: {e}")
    if not ok:
        raise VerificationError("no valid signature for %s@%s: %s" % (
            ref.repository, digest, "; ".join(reasons) or "signature manifest has no layers"))
    return {"image": f"{ref.repository}@{digest}", "digest": digest, "signature_tag": tag,
            "verified": ok, "rejected": reasons}


def _statement(ref: Ref, digest: str, predicate_type: str, predicate) -> bytes:
    # in-toto-golang's Statement v0.1 field order, as cosign attest writes it
    return go_json({
        "_type": INTOTO_STATEMENT_V01,
        "predicateType": predicate_type,
        "subject": [{"name": ref.repository, "digest": {"sha256": digest.split(":", 1)[1]}}],
        "predicate": predicate,
    })


def attest(image_ref: str, key_pem, password, predicate, predicate_type: str = "custom",
           registry_user=None, registry_password=None) -> dict:
    """Like `cosign attest --key --new-bundle-format=false --tlog-upload=false`."""
    key = load_private_key(_key_bytes(key_pem), _pw(password))
    uri = predicate_uri(predicate_type)
    ref = parse_ref(image_ref)
    reg = _registry_for(ref, registry_user, registry_password)
    digest = reg.resolve(ref)
    stmt = _statement(ref, digest, uri, predicate)
    sig = sign_bytes(key, pae(INTOTO_PAYLOAD_TYPE, stmt))
    env = go_json({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": b64(stmt),
                   "signatures": [{"keyid": "", "sig": b64(sig)}]})
    res = _append_layer(reg, ref.repo, sig_tag(digest, "att"), env, DSSE_MT,
                        {SIG_ANNOTATION: "", "predicateType": uri})
    res.update({"image": f"{ref.repository}@{digest}", "digest": digest, "predicateType": uri})
    return res


def verify_attestation(image_ref: str, pub_pem, predicate_type: str | None = None,
                       registry_user=None, registry_password=None) -> dict:
    """Verify IMAGE's .att DSSE attestations. Success if at least one layer verifies and
    (if predicate_type is given) has that predicate type."""
    pub = load_public_key(_key_bytes(pub_pem))
    want = predicate_uri(predicate_type)
    ref = parse_ref(image_ref)
    reg = _registry_for(ref, registry_user, registry_password)
    digest = reg.resolve(ref)
    tag = sig_tag(digest, "att")
    got = reg.get_manifest(ref.repo, tag)
    if got is None:
        raise VerificationError(f"no attestations found: {ref.repository}:{tag} does not exist")
    hexd = digest.split(":", 1)[1]
    ok, reasons, other_types = [], [], []
    for i, layer in enumerate(json.loads(got[0]).get("layers") or []):
        where = f"layer {i} ({layer.get('digest')})"
        if layer.get("mediaType") != DSSE_MT:
            reasons.append(f"{where}: media type {layer.get('mediaType')!r} is not {DSSE_MT}")
            continue
        try:
            blob = reg.get_blob(ref.repo, layer["digest"])
            try:
                env = json.loads(blob)
                ptype, payload_b64, sigs = env["payloadType"], env["payload"], env["signatures"]
            except (ValueError, KeyError, TypeError) as e:
                raise VerificationError(f"not a DSSE envelope: {e!r}") from e
            if ptype != INTOTO_PAYLOAD_TYPE:
                raise VerificationError(f"payloadType {ptype!r}, want {INTOTO_PAYLOAD_TYPE}")
            payload = unb64(payload_b64, "DSSE payload")
            msg = pae(ptype, payload)
            if not any(verify_bytes(pub, msg, unb64(s.get("sig"), "DSSE sig")) for s in sigs or []):
                raise VerificationError("no DSSE signature verifies with the given public key")
            try:
                st = json.loads(payload)
                stype, ptype_uri, subjects = st["_type"], st["predicateType"], st["subject"]
            except (ValueError, KeyError, TypeError) as e:
                raise VerificationError(f"payload is not an in-toto statement: {e!r}") from e
            if stype not in (INTOTO_STATEMENT_V01, INTOTO_STATEMENT_V1):
                raise VerificationError(f"statement _type {stype!r} unknown")
            if not any((s.get("digest") or {}).get("sha256") == hexd for s in subjects or []):
                raise VerificationError(f"no subject has digest sha256:{hexd}")
            if want is not None and ptype_uri != want:
                other_types.append(ptype_uri)
                raise VerificationError(f"predicateType {ptype_uri!r} is not {want!r}")
            ok.append({"layer": i, "predicateType": ptype_uri, "subject": subjects})
        except VerificationError as e:
            reasons.append(f"{where}: {e}")
    if not ok:
        raise VerificationError("no valid attestation%s for %s@%s: %s" % (
            f" of type {want}" if want else "", ref.repository, digest,
            "; ".join(reasons) or "attestation manifest has no layers"))
    return {"image": f"{ref.repository}@{digest}", "digest": digest, "attestation_tag": tag,
            "predicateTypes": sorted({o["predicateType"] for o in ok}), "verified": ok, "rejected": reasons}


# ---------------------------------------------------------------------------
# CLI


def _read(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CosignError(f"cannot read {path}: {e}") from e


def _password() -> bytes:
    return os.environ.get("COSIGN_PASSWORD", "").encode("utf-8")


def _kv(items):
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise UsageError(f"annotation {it!r} is not key=value")
        out[k] = v
    return out or None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="cosign_indep.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate-key-pair", help="write cosign.key (encrypted) and cosign.pub")
    g.add_argument("--output-dir", default=".")
    g.add_argument("--scrypt-n", type=int, default=SCRYPT_DEFAULT_N, help="32768 (old cosign) or 65536 (current)")
    g.add_argument("--pem-type", choices=["sigstore", "cosign"], default="sigstore")

    pk = sub.add_parser("public-key", help="decrypt cosign.key and print its public key PEM")
    pk.add_argument("--key", required=True)

    def reg_args(p):
        p.add_argument("--registry-user")
        p.add_argument("--registry-password")

    s = sub.add_parser("sign", help="sign IMAGE and push sha256-<hex>.sig")
    s.add_argument("--key", required=True)
    reg_args(s)
    s.add_argument("-a", "--annotation", action="append", help="key=value into the payload's optional")
    s.add_argument("--claimed-digest", help=argparse.SUPPRESS)  # test-only: lie in the payload
    s.add_argument("--docker-reference", help=argparse.SUPPRESS)
    s.add_argument("image")

    v = sub.add_parser("verify", help="verify IMAGE's sha256-<hex>.sig signatures")
    v.add_argument("--key", required=True)
    reg_args(v)
    v.add_argument("--identity", help="also require this docker-reference in the payload")
    v.add_argument("image")

    a = sub.add_parser("attest", help="push a DSSE in-toto attestation at sha256-<hex>.att")
    a.add_argument("--key", required=True)
    reg_args(a)
    a.add_argument("--predicate", required=True, help="JSON file (the predicate)")
    a.add_argument("--type", default="custom")
    a.add_argument("image")

    va = sub.add_parser("verify-attestation", help="verify IMAGE's sha256-<hex>.att attestations")
    va.add_argument("--key", required=True)
    reg_args(va)
    va.add_argument("--type", help="slsaprovenance|slsaprovenance1|cyclonedx|spdxjson|... or a URI")
    va.add_argument("image")

    args = ap.parse_args(argv)
    try:
        if args.cmd == "generate-key-pair":
            priv, pub = generate_key_pair(_password(), args.scrypt_n,
                                          SIGSTORE_PEM_TYPE if args.pem_type == "sigstore" else COSIGN_PEM_TYPE)
            os.makedirs(args.output_dir, exist_ok=True)
            kp = os.path.join(args.output_dir, "cosign.key")
            pp = os.path.join(args.output_dir, "cosign.pub")
            try:
                fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(priv)
                with open(pp, "wb") as f:
                    f.write(pub)
            except OSError as e:
                raise CosignError(f"writing keys: {e}") from e
            print(json.dumps({"private_key": kp, "public_key": pp}))
        elif args.cmd == "public-key":
            sys.stdout.write(public_key_pem(load_private_key(_read(args.key), _password())).decode())
        elif args.cmd == "sign":
            res = sign(args.image, _read(args.key), _password(), args.registry_user, args.registry_password,
                       _kv(args.annotation), args.claimed_digest, args.docker_reference)
            print(json.dumps(res, indent=2))
        elif args.cmd == "verify":
            res = verify(args.image, _read(args.key), args.registry_user, args.registry_password, args.identity)
            print(json.dumps(res, indent=2))
        elif args.cmd == "attest":
            try:
                predicate = json.loads(_read(args.predicate))
            except ValueError as e:
                raise UsageError(f"{args.predicate}: not JSON: {e}") from e
            res = attest(args.image, _read(args.key), _password(), predicate, args.type,
                         args.registry_user, args.registry_password)
            print(json.dumps(res, indent=2))
        elif args.cmd == "verify-attestation":
            res = verify_attestation(args.image, _read(args.key), args.type, args.registry_user,
                                     args.registry_password)
            print(json.dumps(res, indent=2))
    except CosignError as e:
        kind = "verification failed" if isinstance(e, VerificationError) else "error"
        print(f"cosign_indep: {kind}: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
