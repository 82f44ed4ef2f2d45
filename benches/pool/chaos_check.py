#!/usr/bin/env python3
"""Checks a chaos run through the pool's API (see chaos.sh) and prints a summary.

Exit status 0 only when no job is lost, none completed twice and every log is complete.
"""
import argparse
import json
import re
import sys
import urllib.request
from collections import Counter


def get(url, token, path):
    req = urllib.request.Request(
        url + path,
        headers={"runner-protocol": "1", "authorization": "Bearer " + token},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def log_events(url, token, job, attempt):
    events, after = [], 0
    while True:
        page = get(url, token, f"/v1/jobs/{job}/log?attempt={attempt}&after={after}")
        for chunk in page["chunks"]:
            for line in chunk["data"].splitlines():
                if line.strip():
                    events.append(json.loads(line))
        if not page["chunks"] or page["next"] == after:
            return events, page["complete"], page["truncated"]
        after = page["next"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--agent-logs", nargs="+", default=[])
    ap.add_argument("--lines", type=int, default=5)
    ap.add_argument("--kills", type=int, default=0)
    ap.add_argument("--wall", type=float, default=0.0)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--lease", default="")
    ap.add_argument("--kill-every", default="")
    a = ap.parse_args()

    ids = [l.strip() for l in open(a.jobs) if l.strip()]
    want = [f"chaos line {i}" for i in range(1, a.lines + 1)]
    finished = Counter()
    pat = re.compile(r"finished job (\S+) attempt \d+: succeeded")
    for path in a.agent_logs:
        for line in open(path, errors="replace"):
            m = pat.search(line)
            if m:
                finished[m.group(1)] += 1

    states = Counter()
    lost, twice, incomplete, agent_twice, agent_never = [], [], [], [], []
    reruns = outcomes = 0
    outcome_counts = Counter()
    for job in ids:
        v = get(a.url, a.token, f"/v1/jobs/{job}")
        states[v["state"]] += 1
        atts = v.get("attempts", [])
        for at in atts:
            outcome_counts[at.get("outcome") or "none"] += 1
        reruns += max(0, len([t for t in atts if t.get("outcome") != "released"]) - 1)
        if v["state"] in ("queued", "running"):
            lost.append(job)
            continue
        ok = [t for t in atts if t.get("outcome") == "succeeded"]
        if len(ok) != 1 or v["state"] != "succeeded":
            twice.append((job, v["state"], [t.get("outcome") for t in atts]))
            continue
        if finished[job] > 1:
            agent_twice.append(job)
        elif finished[job] == 0 and a.agent_logs:
            agent_never.append(job)
        events, complete, truncated = log_events(a.url, a.token, job, ok[0]["attempt"])
        lines = [e.get("line") for e in events if e.get("event") == "log"]
        ends = [e for e in events if e.get("event") == "build_ended"]
        if lines != want or len(ends) != 1 or not complete or truncated:
            incomplete.append((job, lines, len(ends), complete, truncated))

    n = len(ids)
    rate = n / a.wall if a.wall else 0.0
    print(f"chaos: {n} jobs, {a.agents} agents (capacity 1) on 2 replicas, one PostgreSQL")
    print(f"  lease {a.lease}s, an agent kill -9'd every {a.kill_every}s: {a.kills} kills")
    print(f"  final states: {dict(states)}")
    print(f"  attempts by outcome: {dict(outcome_counts)}")
    print(f"  re-runs (attempts after a lost one): {reruns}")
    print(f"  lost (not final): {len(lost)}")
    print(f"  not exactly one succeeded attempt: {len(twice)}")
    print(f"  agents reporting the same job finished twice: {len(agent_twice)}")
    print(f"  succeeded jobs no agent reported finishing: {len(agent_never)}")
    print(f"  logs incomplete (want {a.lines} numbered lines, one build end): {len(incomplete)}")
    print(f"  wall {a.wall:.1f} s, {rate:.2f} jobs/s")
    for what, items in (("lost", lost), ("twice", twice), ("incomplete", incomplete),
                        ("agent-twice", agent_twice), ("agent-never", agent_never)):
        for item in items[:5]:
            print(f"  {what}: {item}", file=sys.stderr)
    bad = lost or twice or incomplete or agent_twice
    print("  RESULT: " + ("FAIL" if bad else "PASS"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
