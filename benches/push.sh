#!/usr/bin/env bash
# `runner push` against `docker push` of the same image to the same kind of empty
# registry (Debian's docker-registry on loopback), interleaved, alternating which goes
# first; prints each time and the median ratio runner/docker (target <= 1.0).
#
#   bash benches/push.sh [-n ROUNDS] [IMAGE]      (default: 5 rounds, runner/python:bookworm)
#
# Each push goes to a fresh registry (new storage, new port), so neither tool finds a
# blob already there; runner's layer map is in a fresh data dir each time, so it exports
# and compresses everything, as docker does.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=5
while getopts n: o; do case $o in n) ROUNDS=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
IMAGE=${1:-runner/python:bookworm}
RUNNER=${RUNNER:-$ROOT/target/release/runner}
(cd "$ROOT" && cargo build --release --quiet)
docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "no image $IMAGE (bash scripts/images.sh --python)" >&2; exit 2; }
WORK=$(mktemp -d)
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

start_registry() { # -> sets PORT, REG_PID
	PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	local dir=$WORK/reg-$PORT
	mkdir -p "$dir"
	printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: "127.0.0.1:%s"}\n' "$dir/data" "$PORT" >"$dir/config.yml"
	/usr/bin/docker-registry serve "$dir/config.yml" >/dev/null 2>&1 &
	REG_PID=$!
	for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && return; sleep 0.1; done
	echo "registry did not start" >&2; exit 1
}
stop_registry() { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true; REG_PID=; }

now() { date +%s.%N; }
push_docker() {
	docker tag "$IMAGE" "127.0.0.1:$PORT/bench:1"
	local t0; t0=$(now)
	docker push -q "127.0.0.1:$PORT/bench:1" >/dev/null
	echo "$(now) - $t0" | bc
	docker rmi "127.0.0.1:$PORT/bench:1" >/dev/null
}
push_runner() {
	local data=$WORK/data-$PORT t0
	t0=$(now)
	RUNNER_DATA_DIR=$data "$RUNNER" push "$IMAGE" "127.0.0.1:$PORT/bench:1" >/dev/null 2>"$WORK/err" ||
		{ cat "$WORK/err" >&2; exit 1; }
	echo "$(now) - $t0" | bc
}

echo "image: $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes), $ROUNDS rounds, load $(cut -d' ' -f1 /proc/loadavg)"
ratios=()
for i in $(seq "$ROUNDS"); do
	if [ $((i % 2)) = 1 ]; then order="docker runner"; else order="runner docker"; fi
	for tool in $order; do
		start_registry
		t=$(push_$tool)
		stop_registry
		eval "t_$tool=$t"
	done
	r=$(echo "scale=3; $t_runner / $t_docker" | bc)
	ratios+=("$r")
	printf 'round %d: docker push %.2fs  runner push %.2fs  ratio %s\n' "$i" "$t_docker" "$t_runner" "$r"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
echo "median ratio runner/docker: $median (target <= 1.0)"
