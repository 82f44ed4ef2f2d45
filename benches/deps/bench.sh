#!/usr/bin/env bash
# Dependency-scan benchmark: time to scan 2,000-package lockfiles INCLUDING opening and
# indexing the advisory dumps (one fresh process per run), plus each dump's index-build
# ("cold load") time and record count.
#
#   benches/deps/bench.sh            # uses $SCAN_DEPS, default: target/release/runner scan deps
#   SCAN_DEPS="/path/to/scan-deps" RUNS=15 benches/deps/bench.sh
#
# SCAN_DEPS is a command taking `PATH --advisories DIR --format json [--stats]`;
# `--stats` must print "loaded <eco>: N records (...) in X ms" lines to stderr.
# Needs python3; uses hyperfine when installed (apt-get install hyperfine).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
adv="${ADVISORIES:-$repo/../shared/advisories}"
runs="${RUNS:-10}"
n="${PACKAGES:-2000}"
read -r -a cmd <<<"${SCAN_DEPS:-$repo/target/release/runner scan deps}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 "$here/make_lockfile.py" "$adv" "$work" "$n"

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo
echo "== sanity: findings and records loaded"
"${cmd[@]}" "$work" --advisories "$adv" --format json --stats 2>&1 >/dev/null | sed 's/^/  /'

echo
echo "== index build per dump (in-process, first use), median of $runs fresh processes"
for target in cargo python; do
  for i in $(seq "$runs"); do
    "${cmd[@]}" "$work/$target" --advisories "$adv" --format json --stats 2>&1 >/dev/null | grep '^loaded'
  done
done | awk '{gsub(":", "", $2); print $2, $(NF-1)}' | sort -k1,1 | awk '
  { k=$1; v[k]=v[k] " " $2 } END { for (k in v) print k, v[k] }' | while read -r eco rest; do
  printf '  %-10s median %s ms\n' "$eco" "$(tr ' ' '\n' <<<"$rest" | grep . | median)"
done

echo
echo "== end-to-end wall time (process start to JSON written), $runs runs"
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 2 --runs "$runs" --style basic --export-json "$work/h.json" \
    -n "Cargo.lock ($n crates)" "${cmd[*]} $work/cargo --advisories $adv --format json" \
    -n "requirements.txt ($n pins)" "${cmd[*]} $work/python --advisories $adv --format json" \
    -n "both (2 lockfiles, 2 dumps)" "${cmd[*]} $work --advisories $adv --format json" >/dev/null
  python3 - "$work/h.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"  {r['command']:<30} median {r['median']*1000:7.1f} ms  "
          f"(min {r['min']*1000:.1f}, max {r['max']*1000:.1f}, user {r['user']*1000:.1f}, sys {r['system']*1000:.1f})")
PY
else
  for target in cargo python .; do
    for i in $(seq "$runs"); do
      s=$(date +%s.%N)
      "${cmd[@]}" "$work/$target" --advisories "$adv" --format json >/dev/null
      e=$(date +%s.%N)
      echo "$s $e" | awk '{printf "%.1f\n", ($2-$1)*1000}'
    done | median | xargs printf "  %-30s median %s ms\n" "$target"
  done
fi
