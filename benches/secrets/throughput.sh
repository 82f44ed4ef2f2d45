#!/usr/bin/env bash
# Secret-scanner throughput, ours vs detect-secrets, in one run.
#
#   benches/secrets/throughput.sh [--scanner-cmd "CMD"] [--tree DIR] [--subset-mib N]
#
# 1. ours on the whole TREE (default: ~/.cargo/registry/src, hundreds of MiB),
# 2. ours and detect-secrets on the same SUBSET of it (whole crate directories copied
#    until N MiB, default 8; detect-secrets manages well under 1 MiB/s).
# MiB/s = bytes our scanner read (text files it scanned, from its JSON) / wall seconds;
# CPU MiB/s uses user+sys seconds, which is what to compare on a busy machine.
# CMD must print our JSON report; "{path}" is replaced by the directory (appended if absent).
# Default CMD: the scratch/main crate's release `scan-secrets` binary, built if needed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
TREE="${HOME}/.cargo/registry/src"
SUBSET_MIB=8
CMD=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scanner-cmd) CMD="$2"; shift 2 ;;
    --tree) TREE="$2"; shift 2 ;;
    --subset-mib) SUBSET_MIB="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$CMD" ]; then
  CRATE="$(cd "$HERE/../.." && pwd)"
  (cd "$CRATE" && cargo build --release --quiet --bin scan-secrets >&2)
  CMD="$CRATE/target/release/scan-secrets {path} --format json"
fi
[ -d "$TREE" ] || { echo "tree $TREE not found; pass --tree DIR" >&2; exit 2; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# run_timed NAME OUTFILE CMD... -> prints "wall cpu" seconds
run_timed() {
  local out="$1"; shift
  local t="$WORK/time.txt"
  /usr/bin/time -f "%e %U %S" -o "$t" "$@" >"$out" 2>"$WORK/stderr.txt" || true
  tail -n 1 "$t" | awk '{printf "%s %.2f\n", $1, $2 + $3}'
}

ours() {  # ours DIR OUT -> "wall cpu"
  local dir="$1" out="$2" cmd="${CMD//\{path\}/$1}"
  [ "$cmd" = "$CMD" ] && cmd="$CMD $dir"
  # shellcheck disable=SC2086
  run_timed "$out" $cmd
}

bytes_of() {  # bytes our scanner read, from its JSON
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_scanned"])' "$1"
}

rate() { python3 -c 'import sys; b,s=float(sys.argv[1]),float(sys.argv[2]); print(f"{b/1048576/s:8.2f}" if s > 0 else "     inf")' "$1" "$2"; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# Warm the page cache so both tools read from memory.
find "$TREE" -type f -size -10M -print0 | xargs -0 cat >/dev/null 2>&1 || true

read -r W C < <(ours "$TREE" "$WORK/full.json")
B=$(bytes_of "$WORK/full.json")
echo
echo "full tree: $TREE ($(python3 -c "print(round($B/1048576,1))") MiB of text scanned)"
printf "%-16s %10s %10s %10s %10s\n" scanner wall_s cpu_s MiB/s CPU_MiB/s
printf "%-16s %10s %10s %10s %10s\n" ours "$W" "$C" "$(rate "$B" "$W")" "$(rate "$B" "$C")"

# Subset: whole crate directories until SUBSET_MIB.
SUB="$WORK/subset"; mkdir -p "$SUB"
limit=$((SUBSET_MIB * 1048576)); total=0
for d in $(find "$TREE" -mindepth 2 -maxdepth 2 -type d | sort); do
  size=$(du -sb "$d" | cut -f1)
  [ "$size" -gt $((limit / 2)) ] && continue
  cp -r "$d" "$SUB/"
  total=$((total + size))
  [ "$total" -ge "$limit" ] && break
done
read -r W C < <(ours "$SUB" "$WORK/sub.json")
B=$(bytes_of "$WORK/sub.json")
echo
echo "same subset for both: $(find "$SUB" -type f | wc -l) files, $(python3 -c "print(round($B/1048576,2))") MiB of text"
printf "%-16s %10s %10s %10s %10s\n" scanner wall_s cpu_s MiB/s CPU_MiB/s
printf "%-16s %10s %10s %10s %10s\n" ours "$W" "$C" "$(rate "$B" "$W")" "$(rate "$B" "$C")"
if command -v detect-secrets >/dev/null; then
  read -r DW DC < <(cd "$SUB" && run_timed "$WORK/ds.json" detect-secrets scan --all-files .)
  printf "%-16s %10s %10s %10s %10s\n" detect-secrets "$DW" "$DC" "$(rate "$B" "$DW")" "$(rate "$B" "$DC")"
else
  echo "detect-secrets not installed (pip install detect-secrets): skipped"
fi
