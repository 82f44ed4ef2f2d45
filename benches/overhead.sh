#!/usr/bin/env bash
# Overhead of `runner build` versus a bare `docker run` of the same command.
#
# Both sides run `echo hello` in the same image with the source dir mounted;
# runs are interleaved (runner, docker, runner, docker, ...) so drift in host
# load hits both equally. Reports each side's median wall time and the ratio.
#
#   benches/overhead.sh [-n ITERATIONS] [-w WARMUP] [--image IMAGE] [--json]
#
#   RUNNER=path/to/runner   binary to benchmark (default target/release/runner,
#                           built with `cargo build --release` if missing)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
log() { printf 'overhead: %s\n' "$*" >&2; }
die() {
	printf 'overhead: error: %s\n' "$*" >&2
	exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
iterations=15
warmup=2
image=runner/busybox:latest
json=0

while [ $# -gt 0 ]; do
	case $1 in
	-n | --iterations)
		[ $# -ge 2 ] || die "$1 needs a value"
		iterations=$2
		shift
		;;
	-w | --warmup)
		[ $# -ge 2 ] || die "$1 needs a value"
		warmup=$2
		shift
		;;
	--image)
		[ $# -ge 2 ] || die "$1 needs a value"
		image=$2
		shift
		;;
	--json) json=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done
case $iterations in '' | *[!0-9]* | 0) die "-n wants a positive integer" ;; esac
case $warmup in '' | *[!0-9]*) die "-w wants a non-negative integer" ;; esac

# --- prerequisites ----------------------------------------------------------

if [ -n "${RUNNER:-}" ]; then
	runner=$RUNNER
	[ -x "$runner" ] || command -v "$runner" >/dev/null 2>&1 || die "RUNNER=$runner is not executable"
else
	runner=$ROOT/target/release/runner
	if [ ! -x "$runner" ]; then
		log "building $runner (cargo build --release)"
		(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
		[ -x "$runner" ] || die "cargo build did not produce $runner"
	fi
fi

docker info >/dev/null 2>&1 || die "docker daemon not reachable (run scripts/setup.sh)"
docker image inspect "$image" >/dev/null 2>&1 || die "image $image not found (run scripts/images.sh)"

dir=$(mktemp -d "${TMPDIR:-/tmp}/runner-overhead.XXXXXX")
trap 'rm -rf "$dir"' EXIT
printf 'version: 0.2\nphases:\n  build:\n    commands:\n      - echo hello\n' >"$dir/buildspec.yml"

run_runner() {
	"$runner" build --buildspec "$dir/buildspec.yml" --source "$dir" --image "$image"
}
run_docker() {
	docker run --rm -v "$dir:/src" -w /src "$image" sh -c 'echo hello'
}

# time_ms SIDE: run one side quietly, print its wall time in ms (3 decimals).
# On failure, re-run it with output visible so the error is readable.
time_ms() {
	local side=$1 t0 t1
	t0=$(date +%s%N)
	if ! "run_$side" >/dev/null 2>&1; then
		log "$side run failed; re-running with output:"
		"run_$side" >&2 || true
		die "$side run failed"
	fi
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e6 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s %s\n", lo, hi }'; }

# --- measure ----------------------------------------------------------------

log "$iterations iterations (+$warmup warmup) each, interleaved; image $image; runner $runner"
for ((i = 0; i < warmup; i++)); do
	time_ms runner >/dev/null
	time_ms docker >/dev/null
done

runner_ms=()
docker_ms=()
for ((i = 1; i <= iterations; i++)); do
	runner_ms+=("$(time_ms runner)")
	docker_ms+=("$(time_ms docker)")
	if [ -t 2 ]; then printf '\roverhead: %d/%d' "$i" "$iterations" >&2; fi
done
if [ -t 2 ]; then printf '\n' >&2; fi

runner_med=$(printf '%s\n' "${runner_ms[@]}" | median)
docker_med=$(printf '%s\n' "${docker_ms[@]}" | median)
read -r runner_min runner_max < <(printf '%s\n' "${runner_ms[@]}" | minmax)
read -r docker_min docker_max < <(printf '%s\n' "${docker_ms[@]}" | minmax)
ratio=$(awk -v r="$runner_med" -v d="$docker_med" 'BEGIN { printf "%.2f", r / d }')

if [ "$json" = 1 ]; then
	join() {
		local IFS=,
		printf '%s' "$*"
	}
	printf '{"iterations":%d,"warmup":%d,"image":"%s","runner_median_ms":%s,"docker_median_ms":%s,"ratio":%s,"runner_min_ms":%s,"runner_max_ms":%s,"docker_min_ms":%s,"docker_max_ms":%s,"runner_ms":[%s],"docker_ms":[%s]}\n' \
		"$iterations" "$warmup" "$image" "$runner_med" "$docker_med" "$ratio" \
		"$runner_min" "$runner_max" "$docker_min" "$docker_max" \
		"$(join "${runner_ms[@]}")" "$(join "${docker_ms[@]}")"
else
	printf 'runner build: median %8.1f ms  (min %.1f, max %.1f)\n' "$runner_med" "$runner_min" "$runner_max"
	printf 'docker run:   median %8.1f ms  (min %.1f, max %.1f)\n' "$docker_med" "$docker_min" "$docker_max"
	printf 'overhead ratio (median runner / median docker run): %sx\n' "$ratio"
fi
