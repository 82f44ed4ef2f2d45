#!/usr/bin/env bash
# Agent-pool chaos benchmark: N busybox jobs over 8 agents on 2 `runner server` replicas
# sharing one PostgreSQL, with a random agent `kill -9`'d every few seconds and started
# again. At the end every job is checked through the API (benches/pool/chaos_check.py):
#   - 0 lost: every job is final (none queued or running);
#   - 0 completed twice: each job has exactly one attempt with outcome `succeeded` and
#     the agents' own output says "finished job ID" exactly once per job;
#   - every job's log complete: the succeeded attempt's log has `chaos line 1..LINES`
#     once each, in order, and one end of build.
#
#   benches/pool/chaos.sh [N]            N jobs (default 1000; 200 for a quicker run)
#
#   RUNNER=path/to/runner   binary (default target/debug/runner, built if missing)
#   AGENTS=8 LEASE=10 KILL_MIN=2 KILL_MAX=5 LINES=5 MAX_ATTEMPTS=10 TIMEOUT=<secs>
#   CHECK_LINES=6           check for a line count the build does not print (the check
#                           must then FAIL: a self-test of the checker)
#   PG_OPTS="-c ..."        extra PostgreSQL settings
set -euo pipefail

# Progress goes to fd 3 (the caller's stderr); once the agents run, the shell's own stderr
# goes to a file, so bash's notices about the agents it reaps after a kill -9 stay there.
exec 3>&2
log() { printf 'chaos: %s\n' "$*" >&3; }
die() { log "error: $*"; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
N=${1:-1000}
AGENTS=${AGENTS:-8}
LEASE=${LEASE:-10}
KILL_MIN=${KILL_MIN:-2}
KILL_MAX=${KILL_MAX:-5}
LINES=${LINES:-5}
MAX_ATTEMPTS=${MAX_ATTEMPTS:-10}
TIMEOUT=${TIMEOUT:-$((600 + N * 3))}
IMAGE=runner/busybox:latest

if [[ -z ${RUNNER:-} ]]; then
  RUNNER=$root/target/debug/runner
  [[ -x $RUNNER ]] || CARGO_INCREMENTAL=0 cargo build --bin runner >&2
fi
[[ -x $RUNNER ]] || die "no runner binary at $RUNNER"
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no $IMAGE: run scripts/setup.sh"

pg_bin=""
for d in /usr/local/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tac); do
  if [[ -x $d/initdb && -x $d/pg_ctl ]]; then pg_bin=$d; break; fi
done
[[ -n $pg_bin ]] || die "PostgreSQL is not installed: run scripts/setup.sh (Debian package postgresql)"

work=$(mktemp -d /tmp/pool-chaos.XXXXXX)
chmod 755 "$work"
as_pg=()
mkdir "$work/pg"
if [[ $(id -u) == 0 ]]; then
  as_pg=(runuser -u postgres --)
  chown postgres: "$work/pg"
fi
project=chaos-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
server_pids=()
declare -a agent_pid
killer_pid=""
cleanup() {
  [[ -n $killer_pid ]] && kill "$killer_pid" 2>/dev/null || true
  for p in "${agent_pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${agent_pid[@]}" "${server_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ids=$(docker ps -aq --filter "label=io.runner.project=$project")
  [[ -n $ids ]] && docker rm -f $ids >/dev/null 2>&1 || true
  if [[ -f $work/pg/data/postmaster.pid ]]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" stop -m fast >/dev/null 2>&1 || true
  fi
  if [[ -n ${KEEP:-} ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port=$(free_port)
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; die "initdb failed"; }
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$work/pg -c max_connections=200 ${PG_OPTS:-}" \
  start >/dev/null || { cat "$work/pg/log" >&2; die "pg_ctl start failed"; }
db="postgres://postgres@127.0.0.1:$port/postgres"

token() { "$RUNNER" --data-dir "$work/s1" server token create --role "$1" --database "$db" | tail -n1; }
"$RUNNER" --data-dir "$work/s1" server token create --role admin --database "$db" >/dev/null # migrations
agent_token=$(token agent)
submit_token=$(token submit)

urls=()
for s in 1 2; do
  "$RUNNER" --data-dir "$work/s$s" server --listen 127.0.0.1:0 --database "$db" \
    --blobs "$work/blobs" --lease-secs "$LEASE" >"$work/s$s.out" 2>"$work/s$s.err" &
  server_pids+=($!)
  for _ in $(seq 200); do
    grep -q '^listening on ' "$work/s$s.out" 2>/dev/null && break
    sleep 0.1
  done
  url=$(sed -n 's/^listening on //p' "$work/s$s.out")
  [[ -n $url ]] || { cat "$work/s$s.err" >&2; die "server $s did not start"; }
  urls+=("$url")
done
log "PostgreSQL on 127.0.0.1:$port, replicas ${urls[*]}, lease ${LEASE}s, project $project"

start_agent() { # i
  local i=$1
  RUNNER_TOKEN=$agent_token "$RUNNER" --data-dir "$work/agent-$i" agent \
    --server "${urls[$((i % 2))]}" --name "agent-$i" --capacity 1 \
    --image "$IMAGE" --no-cache --no-cache-volumes >/dev/null 2>>"$work/agent-$i.log" &
  agent_pid[$i]=$!
}
exec 2>>"$work/shell.err"
for i in $(seq 0 $((AGENTS - 1))); do start_agent "$i"; done

mkdir "$work/src"
cat >"$work/src/buildspec.yml" <<YML
version: 0.2
phases:
  build:
    commands:
      - for i in \$(seq 1 $LINES); do echo "chaos line \$i"; sleep 0.2; done
YML

start=$(date +%s.%N)
# Submit through both replicas, 4 at a time, while the agents work and get killed.
submit_all() {
  seq 1 "$N" | xargs -P 4 -I{} sh -c '
    n={}; url=$1; [ $((n % 2)) = 0 ] && url=$2
    RUNNER_SERVER=$url RUNNER_TOKEN=$3 "$4" submit --source "$5" --project "$6" --max-attempts "$7"
  ' _ "${urls[0]}" "${urls[1]}" "$submit_token" "$RUNNER" "$work/src" "$project" "$MAX_ATTEMPTS" \
    >"$work/jobs.txt" 2>"$work/submit.err"
}

# The killer: a random agent kill -9'd every KILL_MIN..KILL_MAX seconds, started again.
(
  trap 'exit 0' TERM
  kills=0
  while :; do
    sleep "$(( KILL_MIN + RANDOM % (KILL_MAX - KILL_MIN + 1) ))"
    i=$(( RANDOM % AGENTS ))
    pid=$(cat "$work/agent-$i.pid")
    kill -9 "$pid" 2>/dev/null || true
    kills=$((kills + 1))
    echo "$kills" >"$work/kills"
    echo "$(date +%s.%N) killed agent-$i ($pid)" >>"$work/kills.log"
    echo restart >"$work/agent-$i.restart"
  done
) &
killer_pid=$!

# Restarts are done here (the killer runs in a subshell and cannot own the agents).
for i in $(seq 0 $((AGENTS - 1))); do echo "${agent_pid[$i]}" >"$work/agent-$i.pid"; done
restart_killed() {
  for i in $(seq 0 $((AGENTS - 1))); do
    if [[ -f $work/agent-$i.restart ]]; then
      rm -f "$work/agent-$i.restart"
      wait "${agent_pid[$i]}" 2>/dev/null || true
      start_agent "$i"
      echo "${agent_pid[$i]}" >"$work/agent-$i.pid"
    fi
  done
}

submit_all &
submit_pid=$!
api() { # path
  curl -fsS -H "runner-protocol: 1" -H "authorization: Bearer $submit_token" "${urls[0]}$1"
}
pending() { # queued + running
  local q r
  q=$(api '/v1/jobs?state=queued&limit=1000' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
  r=$(api '/v1/jobs?state=running&limit=1000' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
  echo $((q + r))
}
submitted=0
deadline=$(( $(date +%s) + TIMEOUT ))
last_report=0
while :; do
  sleep 0.5
  restart_killed
  if [[ -n $submit_pid ]] && ! kill -0 "$submit_pid" 2>/dev/null; then
    wait "$submit_pid" || { cat "$work/submit.err" >&3; die "a submit failed"; }
    submit_pid=""
    submitted=$(wc -l <"$work/jobs.txt")
    log "all $submitted jobs submitted after $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
  fi
  now=$(date +%s)
  if (( now - last_report >= 30 )); then
    last_report=$now
    log "$(wc -l <"$work/jobs.txt") submitted, $(pending) queued or running, $(cat "$work/kills" 2>/dev/null || echo 0) kills"
  fi
  if [[ -z $submit_pid ]] && [[ $(pending) == 0 ]]; then break; fi
  if (( now > deadline )); then log "timed out after ${TIMEOUT}s with jobs still pending"; break; fi
done
end=$(date +%s.%N)
kill "$killer_pid" 2>/dev/null || true
wait "$killer_pid" 2>/dev/null || true
killer_pid=""
kills=$(cat "$work/kills" 2>/dev/null || echo 0)
# Stop the agents cleanly (they are idle now) so their output is complete.
for p in "${agent_pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${agent_pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${agent_pid[@]}"; do wait "$p" 2>/dev/null || true; done
agent_pid=()

python3 "$root/benches/pool/chaos_check.py" \
  --url "${urls[1]}" --token "$submit_token" --jobs "$work/jobs.txt" \
  --agent-logs "$work"/agent-*.log --lines "${CHECK_LINES:-$LINES}" --kills "$kills" \
  --wall "$(python3 -c "print($end - $start)")" --agents "$AGENTS" --lease "$LEASE" \
  --kill-every "$KILL_MIN-$KILL_MAX" 2>&3
