#!/usr/bin/env python3
"""Precision/recall of our secret scanner vs detect-secrets on a generated corpus.

    accuracy.py --scanner-cmd "scan-secrets {path} --format json" [--files N] [--seed S]
                [--keep DIR] [--no-detect-secrets]

Generates a labelled corpus with make_corpus.py (fresh random tokens unless --seed),
runs OUR scanner (its JSON output: {"secrets" or "findings": [{"location": {"path", "line"}}]}) and
`detect-secrets scan --all-files` on it, and prints precision and recall for both,
matching findings to labels by (path, line). `{path}` in the command is replaced by the
corpus directory (appended when absent). Exit status 1 when ours is below --min (0.95).
"""
import argparse
import collections
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def ours(cmd, corpus):
    parts = shlex.split(cmd)
    parts = [p.replace("{path}", corpus) for p in parts] if any("{path}" in p for p in parts) else parts + [corpus]
    t = time.monotonic()
    proc = subprocess.run(parts, capture_output=True, text=True)
    elapsed = time.monotonic() - t
    if proc.returncode not in (0, 1):
        sys.exit(f"scanner failed ({proc.returncode}): {proc.stderr.strip()}")
    doc = json.loads(proc.stdout)
    found = set()
    # `runner scan secrets --format json` puts them under "secrets"; the raw scanner under "findings".
    for f in doc.get("secrets", doc.get("findings", [])):
        loc = f["location"]
        found.add((loc["path"], loc.get("line") or 1))
    return found, elapsed


def detect_secrets(corpus):
    exe = shutil.which("detect-secrets")
    if not exe:
        return None, 0.0
    t = time.monotonic()
    proc = subprocess.run([exe, "scan", "--all-files", "."], cwd=corpus, capture_output=True, text=True)
    elapsed = time.monotonic() - t
    if proc.returncode != 0:
        sys.exit(f"detect-secrets failed: {proc.stderr.strip()}")
    doc = json.loads(proc.stdout)
    found = set()
    for fname, results in doc["results"].items():
        rel = os.path.normpath(fname)
        for r in results:
            found.add((rel, r["line_number"]))
    return found, elapsed


def score(found, labels):
    tp = found & labels
    precision = len(tp) / len(found) if found else 1.0
    recall = len(tp) / len(labels) if labels else 1.0
    return precision, recall, len(tp), len(found - labels), len(labels - found)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scanner-cmd", required=True)
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", help="write the corpus here and keep it")
    ap.add_argument("--no-detect-secrets", action="store_true")
    ap.add_argument("--min", type=float, default=0.95)
    ap.add_argument("--show", type=int, default=15, help="list this many misses of ours")
    args = ap.parse_args()

    tmp = None
    if args.keep:
        corpus = os.path.abspath(args.keep)
    else:
        tmp = tempfile.mkdtemp(prefix="secrets-corpus-")
        corpus = os.path.join(tmp, "corpus")
    gen = [sys.executable, os.path.join(HERE, "make_corpus.py"), corpus, "--files", str(args.files)]
    if args.seed is not None:
        gen += ["--seed", str(args.seed)]
    subprocess.run(gen, check=True)
    labelled = [json.loads(l) for l in open(corpus.rstrip("/") + ".labels.jsonl")]
    labels = {(l["path"], l["line"]) for l in labelled}
    kinds = {(l["path"], l["line"]): l["kind"] for l in labelled}

    rows = []
    found, secs = ours(args.scanner_cmd, corpus)
    ours_score = score(found, labels)
    rows.append(("ours", *ours_score, secs))
    if not args.no_detect_secrets:
        ds, ds_secs = detect_secrets(corpus)
        if ds is None:
            print("detect-secrets not installed (pip install detect-secrets); skipping it", file=sys.stderr)
        else:
            rows.append(("detect-secrets", *score(ds, labels), ds_secs))

    print(f"corpus: {args.files} files, {len(labels)} labelled secrets (seed {args.seed})")
    print(f"{'scanner':<16}{'precision':>10}{'recall':>9}{'TP':>7}{'FP':>7}{'FN':>7}{'seconds':>9}")
    for name, p, r, tp, fp, fn, secs in rows:
        print(f"{name:<16}{p:>10.3f}{r:>9.3f}{tp:>7}{fp:>7}{fn:>7}{secs:>9.2f}")

    missed = collections.Counter(kinds[k] for k in labels - found)
    if missed:
        print("ours missed by kind:", dict(missed.most_common()))
    for k in sorted(found - labels)[: args.show]:
        print("  ours FP:", k)
    for k in sorted(labels - found)[: args.show]:
        print("  ours FN:", k, kinds[k])
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    p, r = ours_score[0], ours_score[1]
    sys.exit(0 if p >= args.min and r >= args.min else 1)


if __name__ == "__main__":
    main()
