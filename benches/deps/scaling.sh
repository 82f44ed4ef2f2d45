#!/usr/bin/env bash
# Scaling of `scan deps` with lockfile size, before vs after, side by side in one run:
# 20k / 40k / 80k-package package-lock.json, yarn.lock, requirements.txt, pnpm-lock.yaml
# and Cargo.lock (benches/deps/make_big.py), wall time and peak RSS of each binary on
# each; then peak RSS of `validate` on a large YAML file (the positioned YAML tree).
#
#   OLD=/path/to/old/runner NEW=target/release/runner benches/deps/scaling.sh
#   SIZES="20000 40000" KINDS="npm yarn" benches/deps/scaling.sh
#
# No advisory data is given (an empty directory): this measures reading the lockfiles.
# Needs python3 and GNU time (/usr/bin/time).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
new="${NEW:-$repo/target/release/runner}"
old="${OLD:-}"
sizes="${SIZES:-20000 40000 80000}"
kinds="${KINDS:-npm yarn python pnpm cargo}"
yaml_lines="${YAML_LINES:-1000000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/empty-advisories"

# seconds and peak KiB of one run: "S KB"
measure() {
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>&1 || true
  tail -1 "$work/t"
}

bins=(new)
[ -n "$old" ] && bins=(old new)
printf '%-8s %7s %9s' kind packages MiB
for b in "${bins[@]}"; do printf ' %10s %9s' "$b s" "$b MiB"; done
[ -n "$old" ] && printf ' %8s' "old/new"
echo
for n in $sizes; do
  python3 "$here/make_big.py" "$work/$n" "$n"
  for k in $kinds; do
    size=$(du -sm "$work/$n/$k" | cut -f1)
    printf '%-8s %7s %9s' "$k" "$n" "$size"
    declare -A secs=()
    for b in "${bins[@]}"; do
      bin=$new; [ "$b" = old ] && bin=$old
      read -r s kb < <(measure "$bin" scan deps "$work/$n/$k" --advisories "$work/empty-advisories" --format json)
      secs[$b]=$s
      printf ' %10s %9s' "$s" "$((kb / 1024))"
    done
    [ -n "$old" ] && awk -v o="${secs[old]}" -v n="${secs[new]}" 'BEGIN { printf " %8.1fx", (n > 0 ? o / n : 0) }'
    echo
  done
  rm -rf "${work:?}/$n"
done

echo
echo "== validate on a large YAML (flow sequences in a block sequence), peak RSS"
python3 - "$work/big.yml" "$yaml_lines" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("version: 0.2\nx:\n")
    for i in range(int(sys.argv[2])):
        f.write(f"  - [a{i}, b, {{c: d}}]\n")
PY
mib=$(du -m "$work/big.yml" | cut -f1)
for b in "${bins[@]}"; do
  bin=$new; [ "$b" = old ] && bin=$old
  read -r s kb < <(measure "$bin" validate "$work/big.yml")
  echo "  $b: ${mib} MiB of YAML: $s s, peak $((kb / 1024)) MiB ($((kb / 1024 / (mib > 0 ? mib : 1)))x the file)"
done
