#!/usr/bin/env bash
# Image scanner speed: `docker save` of an image, then `scan-image` on the saved
# tarball (release build; inventory + OS detection + JSON out), several runs each.
# Reports the median, min and max wall time of each step separately (target for
# the scan: < 2 s on the debootstrap image), plus one --walk-files run (every
# regular file read, as the secret scanner's feed). The scanner's user+sys CPU
# time is reported too: wall times are noisy on a busy machine.
#
#   benches/image/bench.sh [IMAGE] [-n RUNS] [--keep]
#
#   IMAGE    default runner/debian:bookworm (scripts/setup.sh --debian)
#   -n RUNS  runs per step (default 7)
#   --keep   keep the saved tarball and say where
#
#   SCAN_IMAGE=path/to/scan-image   scanner binary (default target/release/scan-image,
#                                   built with `cargo build --release --bin scan-image`)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
log() { printf 'image-bench: %s\n' "$*" >&2; }
die() {
	printf 'image-bench: error: %s\n' "$*" >&2
	exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
image=runner/debian:bookworm
runs=7
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	-n) runs=${2:?-n needs a number}; shift ;;
	--keep) keep=1 ;;
	-*) die "unknown option $1" ;;
	*) image=$1 ;;
	esac
	shift
done

docker image inspect "$image" >/dev/null 2>&1 || die "no image $image (scripts/setup.sh --debian)"
SCAN=${SCAN_IMAGE:-$ROOT/target/release/scan-image}
if [ -z "${SCAN_IMAGE:-}" ]; then
	log "cargo build --release --bin scan-image"
	(cd "$ROOT" && cargo build --release --quiet --bin scan-image) || die "build failed"
fi
[ -x "$SCAN" ] || die "scanner $SCAN not found (set SCAN_IMAGE)"

work=$(mktemp -d "${TMPDIR:-/tmp}/image-bench.XXXXXX")
cleanup() { if [ "$keep" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

now() { date +%s.%N; }
# stats FILE: "median min max" of the numbers in FILE, in seconds, 3 decimals.
stats() { sort -n "$1" | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.3f %.3f %.3f\n", m, a[1], a[NR] }'; }

: >"$work/save.txt"
: >"$work/scan.txt"
: >"$work/cpu.txt"
for i in $(seq "$runs"); do
	rm -f "$work/image.tar"
	t0=$(now)
	docker save "$image" -o "$work/image.tar"
	t1=$(now)
	if [ -x /usr/bin/time ]; then
		/usr/bin/time -f '%U + %S' -o "$work/cpu1.txt" "$SCAN" "$work/image.tar" >"$work/inventory.json"
		bc <"$work/cpu1.txt" >>"$work/cpu.txt"
	else
		"$SCAN" "$work/image.tar" >"$work/inventory.json"
	fi
	t2=$(now)
	echo "$t1 - $t0" | bc >>"$work/save.txt"
	echo "$t2 - $t1" | bc >>"$work/scan.txt"
	log "run $i/$runs: save $(tail -n1 "$work/save.txt")s scan $(tail -n1 "$work/scan.txt")s"
done
read -r save_med save_min save_max < <(stats "$work/save.txt")
read -r scan_med scan_min scan_max < <(stats "$work/scan.txt")
cpu_med=n/a
if [ -s "$work/cpu.txt" ]; then read -r cpu_med _ < <(stats "$work/cpu.txt"); cpu_med=${cpu_med}s; fi
walk=$("$SCAN" "$work/image.tar" --walk-files 2>&1 >/dev/null | sed 's/^scan-image: //')
size=$(du -m "$work/image.tar" | cut -f1)
pkgs=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["packages"]))' "$work/inventory.json")

echo "image:        $image (${size} MiB saved, $pkgs packages)"
echo "runs:         $runs"
echo "docker save:  median ${save_med}s (min ${save_min}, max ${save_max})"
echo "scan-image:   median ${scan_med}s (min ${scan_min}, max ${scan_max})  target < 2s"
echo "scan CPU:     median $cpu_med user+sys"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
echo "walk files:   $walk"
