#!/usr/bin/env python3
"""Validate SBOMs written by the image scanner against the official JSON schemas.

usage: validate_sbom.py FILE...   (CycloneDX 1.5 or SPDX 2.3 JSON, detected per file)

Schemas are read from fixtures/scan/schemas/ (no network): CycloneDX
bom-1.5.schema.json with the spdx.schema.json and jsf-0.82.schema.json it
references, from github.com/CycloneDX/specification (schema/), and SPDX 2.3
spdx-2.3.schema.json from github.com/spdx/spdx-spec (schemas/spdx-schema.json).
Needs `pip install jsonschema` (>= 4.18, for `referencing`). Exit 0 when all valid,
1 when one is not, 2 on a usage or setup error (the validator is missing).
Called by tests/it/formats_external.rs.
"""
import json
import pathlib
import sys

try:
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7
except ImportError as e:  # a missing validator is a setup error (exit 2), never a pass
    print(f"{e}: pip install 'jsonschema>=4.18' (bash scripts/setup.sh)", file=sys.stderr)
    sys.exit(2)

SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "scan" / "schemas"


def load(name):
    return json.loads((SCHEMAS / name).read_text())


def cyclonedx_validator():
    bom = load("bom-1.5.schema.json")
    registry = Registry()
    for name in ("spdx.schema.json", "jsf-0.82.schema.json"):
        schema = load(name)
        res = Resource.from_contents(schema, default_specification=DRAFT7)
        registry = registry.with_resource(schema["$id"], res)
    return jsonschema.Draft7Validator(
        bom, registry=registry, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def spdx_validator():
    schema = load("spdx-2.3.schema.json")
    return jsonschema.Draft201909Validator(
        schema, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER
    )


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = 0
    for p in paths:
        doc = json.loads(pathlib.Path(p).read_text())
        if doc.get("bomFormat") == "CycloneDX":
            kind, v = "CycloneDX " + str(doc.get("specVersion")), cyclonedx_validator()
        elif str(doc.get("spdxVersion", "")).startswith("SPDX-2"):
            kind, v = doc["spdxVersion"], spdx_validator()
        else:
            print(f"{p}: neither CycloneDX nor SPDX 2.x JSON")
            failed += 1
            continue
        errors = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
        n = len(doc.get("components", doc.get("packages", [])))
        if errors:
            failed += 1
            print(f"{p}: INVALID {kind} ({len(errors)} errors)")
            for e in errors[:20]:
                print(f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
        else:
            print(f"{p}: valid {kind} ({n} components/packages)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
