#!/usr/bin/env python3
"""Validates SARIF logs against the official SARIF 2.1.0 JSON schema, plus the extra
rules GitHub code scanning applies.

    validate_sarif.py FILE.sarif [FILE2.sarif ...] [--schema PATH]

The schema defaults to fixtures/scan/sarif-schema-2.1.0.json (OASIS errata01). Needs
`pip install jsonschema`. Exit status: 0 valid, 1 invalid, 2 usage/setup error.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.normpath(os.path.join(HERE, "..", "..", "fixtures", "scan", "sarif-schema-2.1.0.json"))


def github_checks(log):
    """GitHub code scanning requirements the schema does not express."""
    errors = []
    for ri, run in enumerate(log.get("runs", [])):
        driver = run["tool"]["driver"]
        rules = driver.get("rules", [])
        ids = [r["id"] for r in rules]
        if len(ids) != len(set(ids)):
            errors.append(f"runs[{ri}]: duplicate rule ids")
        for r in rules:
            sev = r.get("properties", {}).get("security-severity")
            if sev is not None:
                try:
                    if not 0.0 <= float(sev) <= 10.0:
                        errors.append(f"rule {r['id']}: security-severity {sev} outside 0..10")
                except ValueError:
                    errors.append(f"rule {r['id']}: security-severity {sev!r} is not numeric")
            if not r.get("shortDescription", {}).get("text"):
                errors.append(f"rule {r['id']}: missing shortDescription.text")
        for i, res in enumerate(run.get("results", [])):
            where = f"runs[{ri}].results[{i}]"
            if res.get("ruleId") not in ids:
                errors.append(f"{where}: ruleId {res.get('ruleId')!r} not in tool.driver.rules")
            idx = res.get("ruleIndex")
            if idx is not None and (idx >= len(ids) or ids[idx] != res.get("ruleId")):
                errors.append(f"{where}: ruleIndex {idx} does not point at {res.get('ruleId')}")
            if not res.get("partialFingerprints"):
                errors.append(f"{where}: no partialFingerprints")
            locs = res.get("locations") or []
            if not locs:
                errors.append(f"{where}: no locations")
            for loc in locs:
                phys = loc.get("physicalLocation", {})
                uri = phys.get("artifactLocation", {}).get("uri", "")
                if not uri or uri.startswith("/") or "://" in uri:
                    errors.append(f"{where}: artifactLocation.uri {uri!r} must be a relative path")
                if phys.get("region", {}).get("startLine", 0) < 1:
                    errors.append(f"{where}: region.startLine must be >= 1")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA)
    args = ap.parse_args()
    try:
        import jsonschema
    except ImportError:
        print("jsonschema is not installed: pip install jsonschema", file=sys.stderr)
        return 2
    with open(args.schema) as fh:
        schema = json.load(fh)
    validator = jsonschema.Draft4Validator(schema)
    bad = 0
    for path in args.files:
        with open(path) as fh:
            log = json.load(fh)
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(log)]
        errors += github_checks(log)
        results = sum(len(r.get("results", [])) for r in log.get("runs", []))
        if errors:
            bad += 1
            print(f"{path}: INVALID ({len(errors)} problems)")
            for e in errors[:50]:
                print("  " + e)
        else:
            print(f"{path}: valid SARIF 2.1.0 ({results} results)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
