#!/usr/bin/env python3
"""Scores CVSS vectors with PyPI's `cvss` (Red Hat's implementation, validated by its
authors against FIRST's calculators), for tests/it/cvss_reference.rs.

usage: cvss_reference.py [ADVISORY_ZIP ...]

Prints `VECTOR<TAB>SCORE` lines: every CVSS:3.0 and CVSS:3.1 base vector (2592 each),
every CVSS:4.0 base vector (104,976), and every CVSS v3/v4 vector in the OSV
records of the given all.zip files. Exit 2 when `cvss` is not installed.
"""
import itertools
import json
import sys
import zipfile

try:
    from cvss import CVSS3, CVSS4
except ImportError as e:
    print(f"{e}: pip install cvss (bash scripts/setup.sh)", file=sys.stderr)
    sys.exit(2)

V3 = {"AV": "NALP", "AC": "LH", "PR": "NLH", "UI": "NR", "S": "UC", "C": "HLN", "I": "HLN", "A": "HLN"}
V4 = {"AV": "NALP", "AC": "LH", "AT": "NP", "PR": "NLH", "UI": "NPA",
      "VC": "HLN", "VI": "HLN", "VA": "HLN", "SC": "HLN", "SI": "HLN", "SA": "HLN"}


def space(prefix, metrics):
    for combo in itertools.product(*metrics.values()):
        yield prefix + "/" + "/".join(f"{k}:{v}" for k, v in zip(metrics, combo))


def advisory_vectors(paths):
    for p in paths:
        with zipfile.ZipFile(p) as z:
            for name in z.namelist():
                rec = json.loads(z.read(name))
                scores = list(rec.get("severity") or [])
                for a in rec.get("affected") or []:
                    scores += a.get("severity") or []
                for s in scores:
                    if s.get("type") in ("CVSS_V3", "CVSS_V4"):
                        yield s["score"]


def score(v):
    if v.startswith("CVSS:4."):
        return CVSS4(v).base_score
    return CVSS3(v).base_score


def main(paths):
    out = sys.stdout
    for v in itertools.chain(space("CVSS:3.0", V3), space("CVSS:3.1", V3), space("CVSS:4.0", V4),
                             advisory_vectors(paths)):
        out.write(f"{v}\t{float(score(v))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
