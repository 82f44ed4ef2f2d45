#!/usr/bin/env bash
# Agent-pool server benchmark: pickup latency, throughput and the idle-agent scale model,
# on SQLite and on PostgreSQL side by side in one run (see benches/pool_load.rs).
#
# Starts a throwaway PostgreSQL cluster (initdb + pg_ctl on a free loopback port in a
# temporary directory; as the `postgres` user when run as root), one `runner server` on a
# SQLite file and one on that cluster, creates an admin token in each, then runs the load
# driver against both. Everything is removed on exit.
#
#   benches/pool/run.sh [-- LOAD DRIVER ARGS]     e.g. -- --idle 1000 --only pickup
#
#   RUNNER=path/to/runner   server binary (default target/release/runner, brought up to
#                           date with `cargo build --release --bin runner`)
#   LOAD=path/to/pool_load  load driver binary (default: `cargo bench --bench pool_load`)
#   PG_OPTS="-c ..."        extra PostgreSQL settings (default: its defaults, durable commits)
#   BASELINE=path/to/runner another server binary (e.g. built from main) measured side by
#                           side in the same run: targets sqlite-base and postgres-base (on
#                           its own SQLite file and its own database in the same cluster)
#                           beside sqlite and postgres, each measurement on all four in turn
set -euo pipefail

log() { printf 'pool-bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
[[ ${1:-} == -- ]] && shift

# 10,000 idle clients need as many sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open files limit: $(ulimit -n)"

if [[ -z ${RUNNER:-} ]]; then
  cargo build --release --bin runner >&2
  RUNNER=$root/target/release/runner
fi
[[ -x $RUNNER ]] || die "no runner binary at $RUNNER"

pg_bin=""
for d in /usr/local/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tac); do
  if [[ -x $d/initdb && -x $d/pg_ctl ]]; then pg_bin=$d; break; fi
done
[[ -n $pg_bin ]] || die "PostgreSQL is not installed: run scripts/setup.sh (Debian package postgresql)"

work=$(mktemp -d /tmp/pool-bench.XXXXXX)
chmod 755 "$work"
as_pg=()
if [[ $(id -u) == 0 ]]; then
  as_pg=(runuser -u postgres --)
  mkdir "$work/pg" && chown postgres: "$work/pg"
else
  mkdir "$work/pg"
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -f $work/pg/data/postmaster.pid ]]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" stop -m fast >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port=$(free_port)
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; die "initdb failed"; }
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$work/pg -c max_connections=200 ${PG_OPTS:-}" \
  start >/dev/null || { cat "$work/pg/log" >&2; die "pg_ctl start failed"; }
pg_url="postgres://postgres@127.0.0.1:$port/postgres"
sqlite_db=$work/jobs.db
log "PostgreSQL $("$pg_bin/postgres" --version | grep -o '[0-9][0-9.]*' | head -n1) on 127.0.0.1:$port (${PG_OPTS:-defaults})"

start_server() { # name database [binary] → sets url_<name>, pid_<name>
  local name=$1 db=$2 bin=${3:-$RUNNER}
  mkdir -p "$work/$name"
  "$bin" --data-dir "$work/$name" server --listen 127.0.0.1:0 --database "$db" \
    --blobs "$work/$name/blobs" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$work/$name.out" 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.err" >&2; die "$name server exited"; }
    sleep 0.1
  done
  local url
  url=$(sed -n 's/^listening on //p' "$work/$name.out")
  [[ -n $url ]] || die "$name server did not start"
  printf -v "url_$name" '%s' "$url"
  printf -v "pid_$name" '%s' "$pid"
}

token_sqlite=$("$RUNNER" --data-dir "$work/sqlite" server token create --role admin --database "$sqlite_db" | tail -n1)
token_pg=$("$RUNNER" --data-dir "$work/postgres" server token create --role admin --database "$pg_url" | tail -n1)
start_server sqlite "$sqlite_db"
start_server postgres "$pg_url"
targets=()
if [[ -n ${BASELINE:-} ]]; then
  [[ -x $BASELINE ]] || die "no baseline runner binary at $BASELINE"
  createdb=$pg_bin/createdb
  [[ -x $createdb ]] || createdb=$(dirname "$(readlink -f "$pg_bin/initdb")")/createdb
  "${as_pg[@]}" "$createdb" -h 127.0.0.1 -p "$port" -U postgres base
  base_pg_url="postgres://postgres@127.0.0.1:$port/base"
  mkdir -p "$work/sqlite-base" "$work/postgres-base"
  token_sqlite_base=$("$BASELINE" --data-dir "$work/sqlite-base" server token create --role admin --database "$work/base.db" | tail -n1)
  token_pg_base=$("$BASELINE" --data-dir "$work/postgres-base" server token create --role admin --database "$base_pg_url" | tail -n1)
  start_server sqlite_base "$work/base.db" "$BASELINE"
  start_server postgres_base "$base_pg_url" "$BASELINE"
  log "baseline $BASELINE: sqlite-base $url_sqlite_base (pid $pid_sqlite_base), postgres-base $url_postgres_base (pid $pid_postgres_base)"
  targets=(--target sqlite-base "$url_sqlite_base" "$pid_sqlite_base" "$token_sqlite_base"
    --target sqlite "$url_sqlite" "$pid_sqlite" "$token_sqlite"
    --target postgres-base "$url_postgres_base" "$pid_postgres_base" "$token_pg_base"
    --target postgres "$url_postgres" "$pid_postgres" "$token_pg")
else
  targets=(--target sqlite "$url_sqlite" "$pid_sqlite" "$token_sqlite"
    --target postgres "$url_postgres" "$pid_postgres" "$token_pg")
fi

log "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
log "sqlite server $url_sqlite (pid $pid_sqlite), postgres server $url_postgres (pid $pid_postgres)"

load=(cargo bench --bench pool_load --)
[[ -n ${LOAD:-} ]] && load=("$LOAD")
"${load[@]}" --clk-tck "$(getconf CLK_TCK)" "${targets[@]}" "$@"
