#!/usr/bin/env python3
"""An independent producer and checker of cosign's bundle-format image signatures, for tests.

requirements: sigstore-models (PyPI: the Sigstore bundle's protobuf-specs JSON model,
strict: camelCase names, unknown fields refused), cryptography; the registry client and
the key handling come from cosign_indep.py beside this file (also independent of runner).
    python3 -m pip install sigstore-models cryptography PyNaCl

Written from the Sigstore bundle's published model and the OCI 1.1 specifications, not
from runner's code. The format, as `cosign sign --new-bundle-format --key` (cosign 3's
default) writes it:
  * bundle (application/vnd.dev.sigstore.bundle.v0.3+json): verificationMaterial with a
    publicKey hint (and tlogEntries, empty when nothing was uploaded to Rekor), and a
    dsseEnvelope whose payload is an in-toto Statement v1 with the image's manifest digest
    as its subject and predicateType https://sigstore.dev/cosign/sign/v1; the signature is
    ECDSA P-256/SHA-256 over PAE(payloadType, payload).
  * attachment: an OCI image manifest with artifactType = the bundle media type, config
    the empty descriptor (application/vnd.oci.empty.v1+json, blob "{}"), one layer (the
    bundle) and subject = the image's manifest descriptor, pushed by digest; found through
    GET /v2/<name>/referrers/<digest>, or, on a registry without that API, through the
    referrers tag schema: tag sha256-<hex> holding an image index of the referrers.

CLI (exit 0 ok, 1 verification failure with the reason on stderr, 2 usage/IO error):
  sigstore_bundle_indep.py sign --key cosign.key IMAGE [--tamper signature|payload-digest|other-digest]
  sigstore_bundle_indep.py verify --key cosign.pub IMAGE
Registry credentials come from $REGISTRY_USER / $REGISTRY_PASSWORD, the key's password
from $COSIGN_PASSWORD.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cosign_indep as ci  # noqa: E402

from sigstore_models.bundle.v1 import Bundle  # noqa: E402

BUNDLE_MT = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _statement(digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    return json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {algo: hexd}}],
        "predicateType": SIGN_PREDICATE,
        "predicate": {},
    }, separators=(",", ":")).encode()


def _flip(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 0x01])


def sign(image: str, key_pem: bytes, password: bytes, tamper: str | None = None) -> dict:
    ref = ci.parse_ref(image)
    reg = ci._registry_for(ref)
    got = reg.get_manifest(ref.repo, ref.digest or ref.tag)
    if got is None:
        raise ci.CosignError(f"{image}: manifest not found")
    body, media_type, digest = got
    key = ci.load_private_key(key_pem, password)
    about = digest
    if tamper == "other-digest":  # a valid signature, but about another image
        about = "sha256:" + "0" * 64
    payload = _statement(about)
    sig = ci.sign_bytes(key, ci.pae(IN_TOTO, payload))
    if tamper == "signature":
        sig = _flip(sig)
    if tamper == "payload-digest":  # the statement edited after signing
        payload = _statement("sha256:" + "f" * 64)
    # Built and serialised through the bundle's model (strict: a wrong name or shape fails).
    bundle = Bundle.from_dict({
        "mediaType": BUNDLE_MT,
        "verificationMaterial": {"publicKey": {"hint": "indep"}, "tlogEntries": []},
        "dsseEnvelope": {"payload": _b64(payload), "payloadType": IN_TOTO,
                         "signatures": [{"sig": _b64(sig)}]},
    })
    bundle_bytes = bundle.to_json().encode()
    bundle_digest = reg.put_blob(ref.repo, bundle_bytes)
    config_digest = reg.put_blob(ref.repo, b"{}")
    annotations = {"dev.sigstore.bundle.content": "dsse-envelope",
                   "dev.sigstore.bundle.predicateType": SIGN_PREDICATE}
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MT,
        "config": {"mediaType": OCI_EMPTY, "digest": config_digest, "size": 2},
        "layers": [{"mediaType": BUNDLE_MT, "digest": bundle_digest, "size": len(bundle_bytes)}],
        "subject": {"mediaType": media_type, "digest": digest, "size": len(body)},
        "annotations": annotations,
    }).encode()
    mdigest = ci.sha256_digest(manifest)
    reg.put_manifest(ref.repo, mdigest, manifest, OCI_MANIFEST)
    # The referrers tag schema (the registry here has no referrers API).
    tag = digest.replace(":", "-", 1)
    existing = reg.get_manifest(ref.repo, tag)
    manifests = json.loads(existing[0]).get("manifests", []) if existing else []
    manifests.append({"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(manifest),
                      "artifactType": BUNDLE_MT, "annotations": annotations})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    reg.put_manifest(ref.repo, tag, index, OCI_INDEX)
    return {"image": f"{ref.registry}/{ref.repo}@{digest}", "referrer": mdigest, "tag": tag}


def _referrers(reg, repo: str, digest: str) -> list:
    st, h, body = reg.request("GET", f"/v2/{repo}/referrers/{digest}", {"Accept": OCI_INDEX},
                              scope=f"repository:{repo}:pull", allow=(404,))
    if st == 200 and h.get("content-type", "").startswith(OCI_INDEX):
        return json.loads(body).get("manifests", [])
    got = reg.get_manifest(repo, digest.replace(":", "-", 1))
    return json.loads(got[0]).get("manifests", []) if got else []


def verify(image: str, pub_pem: bytes) -> dict:
    ref = ci.parse_ref(image)
    reg = ci._registry_for(ref)
    digest = reg.resolve(ref)
    pub = ci.load_public_key(pub_pem)
    algo, _, hexd = digest.partition(":")
    valid, reasons = 0, []
    for d in _referrers(reg, ref.repo, digest):
        if d.get("artifactType") and not d["artifactType"].startswith("application/vnd.dev.sigstore.bundle"):
            continue
        got = reg.get_manifest(ref.repo, d["digest"])
        if got is None:
            reasons.append(f"{d['digest']}: missing")
            continue
        m = json.loads(got[0])
        if (m.get("subject") or {}).get("digest") != digest:
            reasons.append(f"{d['digest']}: subject is not {digest}")
            continue
        layers = [l for l in m.get("layers", []) if l.get("mediaType", "").startswith(
            "application/vnd.dev.sigstore.bundle")]
        if not layers:
            continue
        raw = reg.get_blob(ref.repo, layers[0]["digest"], 1 << 20)
        try:
            bundle = Bundle.from_json(raw)
        except ValueError as e:
            reasons.append(f"{d['digest']}: not a valid bundle: {e}")
            continue
        env = bundle.dsse_envelope
        if env is None or env.payload_type != IN_TOTO:
            reasons.append(f"{d['digest']}: no in-toto DSSE envelope")
            continue
        if not any(ci.verify_bytes(pub, ci.pae(env.payload_type, env.payload), s.sig)
                   for s in env.signatures):
            reasons.append(f"{d['digest']}: signature does not verify with this key")
            continue
        st = json.loads(env.payload)
        if not any((s.get("digest") or {}).get(algo) == hexd for s in st.get("subject", [])):
            reasons.append(f"{d['digest']}: statement is not about {digest}")
            continue
        if st.get("predicateType") != SIGN_PREDICATE:
            reasons.append(f"{d['digest']}: predicate type {st.get('predicateType')!r}")
            continue
        valid += 1
    if not valid:
        raise ci.VerificationError("no valid bundle signature: " + ("; ".join(reasons) or "no referrers"))
    return {"image": f"{ref.registry}/{ref.repo}@{digest}", "valid": valid}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="sigstore_bundle_indep.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--key", required=True)
    s.add_argument("--tamper", choices=["signature", "payload-digest", "other-digest"])
    s.add_argument("image")
    v = sub.add_parser("verify")
    v.add_argument("--key", required=True)
    v.add_argument("image")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "sign":
            out = sign(args.image, ci._read(args.key), ci._password(), args.tamper)
        else:
            out = verify(args.image, ci._read(args.key))
        print(json.dumps(out))
    except ci.CosignError as e:
        kind = "verification failed" if isinstance(e, ci.VerificationError) else "error"
        print(f"sigstore_bundle_indep: {kind}: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
