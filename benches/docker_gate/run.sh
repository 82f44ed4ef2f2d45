#!/usr/bin/env bash
# `docker build` of fixtures/sample-app inside a build through runner's Docker gate
# versus the same `docker build` on the host, cold (--no-cache) and warm (layer cache),
# reported as ratios (gate / host) of the median wall times.
#
# Each round runs one `runner build --privileged` whose buildspec times N cold and N
# warm builds with the build's docker client (the gate), then the same N + N on the
# host with the host's client; rounds alternate sides so drift hits both. Only the
# `docker build` command is timed, never runner's own start-up.
#
#   benches/docker_gate/run.sh [-r ROUNDS] [-n BUILDS_PER_ROUND]
#
#   RUNNER=path/to/runner   (default target/debug/runner; a debug build's proxy is
#                            slower than a release one, so its ratios are an upper bound)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rounds=3
per=3
while [ $# -gt 0 ]; do
	case $1 in
	-r) rounds=$2; shift ;;
	-n) per=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "docker_gate: unknown argument $1" >&2; exit 1 ;;
	esac
	shift
done
runner=${RUNNER:-$ROOT/target/debug/runner}
[ -x "$runner" ] || { echo "docker_gate: build runner first (cargo build)" >&2; exit 1; }
image=runner-test/docker-cli:1
if ! docker image inspect "$image" >/dev/null 2>&1; then
	ctx=$(mktemp -d)
	cp "$(command -v docker)" "$ctx/docker"
	printf 'FROM runner/debian:bookworm\nCOPY docker /usr/local/bin/docker\n' >"$ctx/Dockerfile"
	DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >/dev/null
	rm -rf "$ctx"
fi
docker image inspect runner/python:bookworm >/dev/null 2>&1 ||
	{ echo "docker_gate: runner/python:bookworm missing (bash scripts/images.sh --python)" >&2; exit 1; }

work=$(mktemp -d)
data=$(mktemp -d)
trap 'rm -rf "$work" "$data"; docker rmi -f gate-bench:cold gate-bench:warm >/dev/null 2>&1 || true' EXIT
cp -r "$ROOT/fixtures/sample-app/app" "$ROOT/fixtures/sample-app/Dockerfile" "$work/"
# One timing script for both sides: prints `cold MS` and `warm MS` lines.
cat >"$work/time.sh" <<'SH'
#!/bin/sh
ms() { date +%s%3N; }
i=0
while [ "$i" -lt "$1" ]; do
  t=$(ms); docker build -q --no-cache -t gate-bench:cold . >/dev/null; echo "cold $(( $(ms) - t ))"
  t=$(ms); docker build -q -t gate-bench:warm . >/dev/null; echo "warm $(( $(ms) - t ))"
  i=$((i+1))
done
SH
chmod +x "$work/time.sh"
printf 'version: 0.2\nphases:\n  build:\n    commands:\n      - sh ./time.sh %s\n' "$per" >"$work/buildspec.yml"
# Warm the engine's cache of the base image for both sides.
(cd "$work" && DOCKER_BUILDKIT=0 docker build -q -t gate-bench:warm . >/dev/null)

gate=$work/gate.txt host=$work/host.txt
: >"$gate"; : >"$host"
for r in $(seq "$rounds"); do
	RUNNER_DATA_DIR=$data NO_COLOR=1 "$runner" build --json --privileged --no-cache \
		--image "$image" --source "$work" |
		sed -n 's/.*"line":"\(cold\|warm\) \([0-9]*\)".*/\1 \2/p' >>"$gate"
	(cd "$work" && DOCKER_BUILDKIT=0 sh ./time.sh "$per") >>"$host"
	echo "docker_gate: round $r/$rounds done" >&2
done

median() { grep "^$1 " "$2" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
for kind in cold warm; do
	g=$(median "$kind" "$gate")
	h=$(median "$kind" "$host")
	n=$(grep -c "^$kind " "$gate" || true)
	awk -v k="$kind" -v g="$g" -v h="$h" -v n="$n" \
		'BEGIN {printf "%s: gate %s ms, host %s ms (median of %d each), ratio %.2fx\n", k, g, h, n, g/h}'
done
