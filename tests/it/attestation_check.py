#!/usr/bin/env python3
"""Checks a DSSE envelope holding an in-toto statement with code the project did not write.

usage: attestation_check.py ENVELOPE.json PUBLIC_KEY.pem

* the envelope: PyPI's securesystemslib (`securesystemslib.dsse.Envelope`) parses it and
  verifies its signature over DSSE's PAE with the public key (ECDSA P-256, SHA-256);
  in-toto's own `in_toto.models.metadata.Metadata.from_dict` must accept it as a DSSE
  envelope of in-toto's payload type;
* the statement: PyPI's in-toto-attestation (the in-toto Attestation Framework's Python
  bindings, github.com/in-toto/attestation) parses the payload into its Statement v1
  protobuf, strictly (an unknown field is an error), and runs its `validate()`;
* an SLSA provenance v1 predicate (https://slsa.dev/provenance/v1): parsed strictly into
  the framework's provenance v1 protobuf (protos/in_toto_attestation/predicates/
  provenance/v1/provenance.proto, the schema slsa.dev's v1 spec publishes with its CUE
  form): unknown fields, wrong types and timestamps that are not RFC 3339 are errors;
  plus the fields that spec marks REQUIRED (buildType, externalParameters, builder.id).

Exit 0 valid (a JSON summary on stdout), 1 invalid (the reason on stdout), 2 setup error
(a verifier is not installed: `bash scripts/setup.sh` installs them).
"""
import copy
import json
import sys

try:
    import google.protobuf.json_format as pb_json
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from in_toto.models.metadata import Envelope as InTotoEnvelope
    from in_toto.models.metadata import Metadata
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey
except ImportError as e:  # a missing verifier is a setup error, never a pass
    print(f"verifier missing ({e}): run `bash scripts/setup.sh`", file=sys.stderr)
    sys.exit(2)

SLSA_V1 = "https://slsa.dev/provenance/v1"


def fail(msg):
    print(f"INVALID: {msg}")
    sys.exit(1)


def main(env_path, key_path):
    with open(env_path, "rb") as f:
        raw = json.load(f)
    with open(key_path, "rb") as f:
        pub = load_pem_public_key(f.read())
    try:
        env = Envelope.from_dict(copy.deepcopy(raw))  # from_dict consumes its input
    except Exception as e:  # noqa: BLE001 - any parse error is a finding
        fail(f"not a DSSE envelope: {e!r}")
    if not isinstance(Metadata.from_dict(copy.deepcopy(raw)), InTotoEnvelope):
        fail("in-toto does not read it as a DSSE envelope")
    if env.payload_type != "application/vnd.in-toto+json":
        fail(f"payloadType {env.payload_type!r}")
    # securesystemslib matches signatures to keys by keyid (its issue #416); cosign writes
    # an empty keyid, so the key gets the keyid of each signature in turn.
    key = SSlibKey.from_crypto(pub)
    verified = 0
    for keyid in list(env.signatures):
        k = SSlibKey(keyid, key.keytype, key.scheme, key.keyval)
        try:
            env.verify([k], 1)
            verified += 1
        except Exception:  # noqa: BLE001 - a signature that does not verify
            pass
    if verified == 0:
        fail("no signature verifies with the public key")

    try:
        pb = pb_json.Parse(env.payload, statement_pb2.Statement())
        st = Statement.copy_from_pb(pb)
        st.validate()
    except Exception as e:  # noqa: BLE001
        fail(f"statement: {e}")
    summary = {
        "payloadType": env.payload_type,
        "signatures_verified": verified,
        "statement": st.pb.type,
        "predicateType": st.pb.predicate_type,
        "subjects": [
            {"name": s.name, "digest": dict(s.digest)} for s in st.pb.subject
        ],
    }
    if st.pb.predicate_type == SLSA_V1:
        pred = json.loads(env.payload)["predicate"]
        try:
            prov = pb_json.ParseDict(pred, provenance_pb2.Provenance())
        except Exception as e:  # noqa: BLE001
            fail(f"SLSA provenance v1: {e}")
        bd, rd = prov.build_definition, prov.run_details
        if not bd.build_type:
            fail("SLSA provenance v1: buildDefinition.buildType is required")
        if not bd.HasField("external_parameters"):
            fail("SLSA provenance v1: buildDefinition.externalParameters is required")
        if not rd.builder.id:
            fail("SLSA provenance v1: runDetails.builder.id is required")
        summary["provenance"] = {
            "buildType": bd.build_type,
            "builder": rd.builder.id,
            "startedOn": rd.metadata.started_on.ToJsonString(),
            "resolvedDependencies": len(bd.resolved_dependencies),
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
