#!/usr/bin/env bash
# Build cache benchmark: a cold versus a warm build of fixtures/cache-app.
#
# Part 1, runner's `cache:`: each round gets a fresh, empty RUNNER_DATA_DIR (so its
# cache is empty), then runs `runner build --json --source fixtures/cache-app` three
# times: COLD (cache miss: a new venv, ~20 MB of wheels from PyPI), WARM (the default:
# the local cache volumes hold the key, nothing is extracted) and ARCHIVE (the same
# warm build with --no-cache-volumes: the entry is extracted from the store, as on a
# machine that has only the store, e.g. S3). Reports the median wall times, the ratios
# cold/warm (target >= 5x) and cold/archive, each phase's median, and the archive
# restore throughput from runner's `cache` JSON events.
#
# Part 3, a cold agent: the same Dockerfile built by `runner build` (runner.yml `image:`)
# and pushed to a local registry (Debian's docker-registry, scripts/registry.sh). Each
# round builds on an engine without the project's layers, first with nothing in the
# registry (COLD), then, after removing the image from the engine again, with
# `cache-from: [<registry>/…:latest]` (CACHE-FROM: runner pulls the layers the engine
# lacks and the classic builder reuses them). Reports the image stage's time (pull +
# build) and the whole build's, and their ratio.
#
# Part 2, Docker's layer cache for the same dependencies as an image
# (fixtures/cache-app/Dockerfile, temp context with the host CA bundle as ca.crt):
# `docker build --no-cache` versus a rebuild after editing only app.py, interleaved.
#
#   benches/cache.sh [-n PAIRS] [--json] [--skip-runner] [--skip-docker] [--skip-cache-from] [--keep]
#
#   -n PAIRS       cold/warm pairs per part (default 3)
#   --json         one JSON object on standard output instead of the text summary
#   --skip-runner  only the Docker layer-cache part
#   --skip-docker  leave out part 2 (Docker's local layer cache)
#   --skip-cache-from  leave out part 3 (cold agent, cache-from a registry)
#   --keep         keep the work directory (JSON event logs, build logs) and say where
#
#   RUNNER=path/to/runner   binary to benchmark (default target/release/runner, brought
#                           up to date with `cargo build --release`)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
log() { printf 'cache-bench: %s\n' "$*" >&2; }
die() {
	printf 'cache-bench: error: %s\n' "$*" >&2
	exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FIXTURE=$ROOT/fixtures/cache-app
IMAGE=runner/python:bookworm
BENCH_TAG="runner-bench/cache-app:latest"
# The project name the builds run under: the cache volumes are named after it.
PROJECT=runner-bench-cache-app
HOST_CA=/etc/ssl/certs/ca-certificates.crt

pairs=3
json=0
do_runner=1
do_docker=1
do_cache_from=1
REGISTRY_PORT=${RUNNER_BENCH_REGISTRY_PORT:-5077}
keep=0

while [ $# -gt 0 ]; do
	case $1 in
	-n | --pairs)
		[ $# -ge 2 ] || die "$1 needs a value"
		pairs=$2
		shift
		;;
	--json) json=1 ;;
	--skip-runner) do_runner=0 ;;
	--skip-docker) do_docker=0 ;;
	--skip-cache-from) do_cache_from=0 ;;
	--keep) keep=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done
case $pairs in '' | *[!0-9]* | 0) die "-n wants a positive integer" ;; esac
[ "$do_runner" = 1 ] || [ "$do_docker" = 1 ] || [ "$do_cache_from" = 1 ] || die "every part is skipped: nothing to do"

# --- prerequisites ----------------------------------------------------------

command -v python3 >/dev/null 2>&1 || die "python3 is needed to read runner's JSON events"
command -v docker >/dev/null 2>&1 || die "docker CLI not found (run scripts/setup.sh)"
docker info >/dev/null 2>&1 || die "docker daemon not reachable (run scripts/setup.sh)"
for f in buildspec.yml runner.yml requirements.txt app.py Dockerfile; do
	[ -f "$FIXTURE/$f" ] || die "missing $FIXTURE/$f"
done

runner=
if [ "$do_runner" = 1 ] || [ "$do_cache_from" = 1 ]; then
	if [ -n "${RUNNER:-}" ]; then
		runner=$RUNNER
		[ -x "$runner" ] || command -v "$runner" >/dev/null 2>&1 || die "RUNNER=$runner is not executable"
	else
		runner=$ROOT/target/release/runner
		# Always ask cargo: a binary from before the cache landed would measure nothing.
		log "cargo build --release (a no-op when up to date)"
		(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
		[ -x "$runner" ] || die "cargo build did not produce $runner"
	fi
fi

log "making sure $IMAGE exists (scripts/images.sh --debian --python)"
bash "$ROOT/scripts/images.sh" --debian --python || die "scripts/images.sh --debian --python failed"

work=$(mktemp -d "${TMPDIR:-/tmp}/runner-cache-bench.XXXXXX")
manifest=$work/manifest.tsv
: >"$manifest"
image_ids=()
remove_volumes() {
	local names
	names=$(docker volume ls -q --filter "name=runner-cache-$PROJECT-" 2>/dev/null | grep "^runner-cache-$PROJECT-" || true)
	[ -z "$names" ] || echo "$names" | xargs docker volume rm -f >/dev/null 2>&1 || true
}
registry_started=0
cleanup() {
	local id
	remove_volumes
	[ "$registry_started" = 0 ] || bash "$ROOT/scripts/registry.sh" stop --port "$REGISTRY_PORT" >/dev/null 2>&1 || true
	if [ "${#image_ids[@]}" -gt 0 ]; then
		docker rmi "$BENCH_TAG" >/dev/null 2>&1 || true
		for id in "${image_ids[@]}"; do
			docker rmi "$id" >/dev/null 2>&1 || true
		done
	fi
	if [ "$keep" = 1 ]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

now_ns() { date +%s%N; }
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }'; }

# record PART KIND PAIR MS LOG: one line of the manifest the summary is computed from.
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$manifest"; }
# The 1-minute load average, so numbers taken on a busy host say so.
record_load() { record load "$1" 0 "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)" -; }

# show_failure LOG: the end of a failed run's output (JSON log events decoded).
show_failure() {
	python3 - "$1" <<'PY' >&2 || tail -n 40 "$1" >&2
import json, sys
lines = []
for raw in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        e = json.loads(raw)
    except ValueError:
        lines.append(raw.rstrip("\n"))
        continue
    if not isinstance(e, dict):
        continue
    ev = e.get("event")
    if ev == "log":
        lines.append(str(e.get("line", "")))
    elif ev in ("phase_ended", "command_ended", "cache", "notice", "build_ended"):
        lines.append(json.dumps({k: v for k, v in e.items() if k not in ("phases", "time")})[:400])
for line in lines[-40:]:
    print("  | " + line)
PY
}

# --- part 1: runner's cache -------------------------------------------------

run_runner() { # KIND PAIR DATA_DIR [EXTRA_ARGS...]
	local kind=$1 pair=$2 data=$3 out t0 t1 rc=0
	shift 3
	out=$work/runner-$kind-$pair.jsonl
	t0=$(now_ns)
	RUNNER_DATA_DIR=$data "$runner" build --json --project "$PROJECT" --source "$FIXTURE" "$@" >"$out" 2>"$out.stderr" || rc=$?
	t1=$(now_ns)
	if [ "$rc" != 0 ]; then
		log "runner $kind build (pair $pair) failed with exit code $rc:"
		cat "$out.stderr" >&2
		show_failure "$out"
		die "runner $kind build failed"
	fi
	record runner "$kind" "$pair" "$(elapsed_ms "$t0" "$t1")" "$out"
}

record_load start
if [ "$do_runner" = 1 ]; then
	log "runner: $pairs rounds of cold / warm / warm --no-cache-volumes builds of fixtures/cache-app on $IMAGE, a fresh data dir per round"
	ms_of() { awk -F'\t' -v k="$1" -v p="$2" '$1 == "runner" && $2 == k && $3 == p { print $4 }' "$manifest"; }
	for ((i = 1; i <= pairs; i++)); do
		data=$work/data-$i
		mkdir "$data"
		run_runner cold "$i" "$data"
		run_runner warm "$i" "$data"
		run_runner archive "$i" "$data" --no-cache-volumes
		log "runner round $i/$pairs: cold $(ms_of cold "$i") ms, warm $(ms_of warm "$i") ms, archive $(ms_of archive "$i") ms"
		# The cache itself is not needed any more; the JSON logs are.
		[ "$keep" = 1 ] || rm -rf "$data"
		remove_volumes
	done
fi

# --- part 2: Docker's layer cache -------------------------------------------

build_image() { # KIND PAIR CONTEXT
	local kind=$1 pair=$2 ctx=$3 out t0 t1 rc=0 id args=(--force-rm)
	out=$work/docker-$kind-$pair.log
	[ "$kind" = warm ] || args+=(--no-cache)
	rm -f "$work/iid"
	t0=$(now_ns)
	DOCKER_BUILDKIT=0 docker build "${args[@]}" --iidfile "$work/iid" -t "$BENCH_TAG" "$ctx" >"$out" 2>&1 || rc=$?
	t1=$(now_ns)
	if [ -s "$work/iid" ]; then
		id=$(cat "$work/iid")
		image_ids+=("$id")
	fi
	if [ "$rc" != 0 ]; then
		tail -n 40 "$out" | sed 's/^/  | /' >&2
		die "docker build ($kind, pair $pair) failed with exit code $rc"
	fi
	record docker "$kind" "$pair" "$(elapsed_ms "$t0" "$t1")" "$out"
}

if [ "$do_docker" = 1 ]; then
	[ -s "$HOST_CA" ] || die "$HOST_CA is missing: docker build needs it to reach PyPI over HTTPS"
	ctx=$work/context
	mkdir "$ctx"
	cp "$FIXTURE/Dockerfile" "$FIXTURE/requirements.txt" "$FIXTURE/app.py" "$ctx/"
	cp "$HOST_CA" "$ctx/ca.crt"
	log "docker: $pairs pairs of 'docker build --no-cache' then a rebuild after editing app.py (classic builder)"
	for ((i = 1; i <= pairs; i++)); do
		build_image cold "$i" "$ctx"
		# A code change: only the last layer (COPY app.py) is invalidated.
		printf '# bench edit %d\n' "$i" >>"$ctx/app.py"
		build_image warm "$i" "$ctx"
		log "docker pair $i/$pairs: no-cache $(awk -F'\t' -v p="$i" '$1 == "docker" && $2 == "cold" && $3 == p { print $4 }' "$manifest") ms, cached $(awk -F'\t' -v p="$i" '$1 == "docker" && $2 == "warm" && $3 == p { print $4 }' "$manifest") ms"
	done
	image_size=$(docker image inspect --format '{{.Size}}' "$BENCH_TAG" 2>/dev/null || echo 0)
	record docker-image size 0 "$image_size" -
	# Part 3 needs an engine without these layers.
	docker rmi "$BENCH_TAG" >/dev/null 2>&1 || true
	for id in "${image_ids[@]}"; do
		docker rmi "$id" >/dev/null 2>&1 || true
	done
	image_ids=()
fi

# --- part 3: a cold agent, cache-from the registry ---------------------------

# cf_build KIND PAIR APP DATA: one `runner build` of the image app; records its wall time
# and prints the image ID it built.
cf_build() {
	local kind=$1 pair=$2 app=$3 data=$4 out t0 t1 rc=0
	out=$work/cachefrom-$kind-$pair.jsonl
	t0=$(now_ns)
	RUNNER_DATA_DIR=$data "$runner" build --json --source "$app" >"$out" 2>"$out.stderr" || rc=$?
	t1=$(now_ns)
	if [ "$rc" != 0 ]; then
		cat "$out.stderr" >&2
		show_failure "$out"
		die "runner build ($kind, round $pair) failed with exit code $rc"
	fi
	record cachefrom "$kind" "$pair" "$(elapsed_ms "$t0" "$t1")" "$out"
	python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("event") == "stage" and e.get("stage") == "image": print(e["detail"]["id"])' "$out"
}

if [ "$do_cache_from" = 1 ]; then
	[ -s "$HOST_CA" ] || die "$HOST_CA is missing: docker build needs it to reach PyPI over HTTPS"
	bash "$ROOT/scripts/registry.sh" start --port "$REGISTRY_PORT" --dir "$work/registry" >/dev/null ||
		die "scripts/registry.sh start --port $REGISTRY_PORT failed"
	registry_started=1
	repo=127.0.0.1:$REGISTRY_PORT/runner-bench-cache-app
	log "cache-from: $pairs rounds of a cold engine without, then with, cache-from $repo:latest"
	for ((i = 1; i <= pairs; i++)); do
		app=$work/cf-app-$i
		mkdir -p "$app" "$work/cf-data-$i"
		cp "$FIXTURE/Dockerfile" "$FIXTURE/requirements.txt" "$FIXTURE/app.py" "$app/"
		cp "$HOST_CA" "$app/ca.crt"
		printf '# bench round %d\n' "$i" >>"$app/app.py"
		printf 'version: 0.2\nphases:\n  build:\n    commands:\n      - echo ok\n' >"$app/buildspec.yml"
		# A repository per round, so that COLD finds nothing to pull.
		printf 'name: runner-bench-cache-from\nbuild:\n  image: runner/busybox:latest\nimage:\n  repository: %s-%d\n  tags: [latest]\n  cache-from: ["%s-%d:latest"]\n' \
			"$repo" "$i" "$repo" "$i" >"$app/runner.yml"
		id=$(cf_build cold "$i" "$app" "$work/cf-data-$i")
		# A fresh agent: the image and its layers leave the engine (the base image stays).
		docker rmi -f "$id" >/dev/null 2>&1 || die "could not remove $id from the engine"
		id=$(cf_build cachefrom "$i" "$app" "$work/cf-data-$i")
		image_ids+=("$id")
		log "cache-from round $i/$pairs: cold $(awk -F'\t' -v p="$i" '$1 == "cachefrom" && $2 == "cold" && $3 == p { print $4 }' "$manifest") ms, cache-from $(awk -F'\t' -v p="$i" '$1 == "cachefrom" && $2 == "cachefrom" && $3 == p { print $4 }' "$manifest") ms"
		docker rmi -f "$id" >/dev/null 2>&1 || true
	done
fi

record_load end

# --- summary ----------------------------------------------------------------

python3 - "$manifest" "$json" "$IMAGE" <<'PY'
import json
import os
import re
import statistics
import sys

manifest, as_json, image = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
MIB = 1024 * 1024
PHASES = ["PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD", "BUILD", "POST_BUILD",
          "UPLOAD_ARTIFACTS", "FINALIZING"]


def num(v):
    """A number from a JSON value, or None (fields are read defensively)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 1) if xs else None


def read_events(path):
    events = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            if isinstance(e, dict):
                events.append(e)
    return events


def cache_records(events):
    """`cache` events (or events named cache_*); else build_ended's `cache` list."""
    found = []
    for e in events:
        name = str(e.get("event", ""))
        if name == "cache" or name.startswith("cache_"):
            r = {k: v for k, v in e.items() if k != "time"}
            if "action" not in r and name.startswith("cache_"):
                r["action"] = name[len("cache_"):]
            found.append(r)
    if not found:
        for e in events:
            if e.get("event") == "build_ended" and isinstance(e.get("cache"), list):
                found = [dict(r) for r in e["cache"] if isinstance(r, dict)]
    return found


def is_restore(r):
    return "restore" in str(r.get("action", "")).lower()


def is_save(r):
    return "save" in str(r.get("action", "")).lower()


def analyse_run(path):
    events = read_events(path)
    phases = {}
    commands = {}
    status = None
    for e in events:
        ev = e.get("event")
        if ev == "phase_ended" and e.get("phase"):
            phases[e["phase"]] = num(e.get("duration_ms"))
        elif ev == "build_ended":
            status = e.get("status")
            for p in e.get("phases") or []:
                if isinstance(p, dict) and p.get("phase") and p["phase"] not in phases:
                    phases[p["phase"]] = num(p.get("duration_ms"))
    pending = None
    for e in events:
        ev = e.get("event")
        if ev == "command_started":
            pending = (e.get("phase"), e.get("command"))
        elif ev == "command_ended" and pending:
            commands[f"{pending[0]}: {pending[1]}"] = num(e.get("duration_ms"))
            pending = None
    lines = [str(e.get("line", "")) for e in events if e.get("event") == "log"]
    return {
        "status": status,
        "phases": phases,
        "commands": commands,
        "pip_downloads": sum(1 for l in lines if re.match(r"\s*Downloading\s", l)),
        "pip_already_satisfied": sum(1 for l in lines if "Requirement already satisfied" in l),
        "cache": cache_records(events),
        "events": len(events),
    }


def throughput(records):
    """Median bytes, duration and MiB/s over restore/save records that moved data."""
    rows = []
    for r in records:
        b, d = num(r.get("bytes")), num(r.get("duration_ms"))
        if b and d:
            rows.append((b, d, (b / MIB) / (d / 1000)))
    if not rows:
        return None
    cb = [num(r.get("compressed_bytes")) for r in records if num(r.get("compressed_bytes"))]
    files = [num(r.get("files")) for r in records if num(r.get("files"))]
    return {
        "count": len(rows),
        "bytes_median": med([r[0] for r in rows]),
        "compressed_bytes_median": med(cb),
        "files_median": med(files),
        "duration_ms_median": med([r[1] for r in rows]),
        "mib_per_s_median": round(statistics.median([r[2] for r in rows]), 1),
    }


rows = [l.rstrip("\n").split("\t") for l in open(manifest, encoding="utf-8") if l.strip()]
out = {"pairs": max([int(r[2]) for r in rows if r[0] in ("runner", "docker", "cachefrom")] or [0])}
warnings = []

runner_rows = [r for r in rows if r[0] == "runner"]
if runner_rows:
    runs = {"cold": [], "warm": [], "archive": []}
    for part, kind, pair, ms, path in runner_rows:
        a = analyse_run(path)
        a.update(pair=int(pair), wall_ms=float(ms))
        runs[kind].append(a)
    res = {"image": image}
    for kind in ("cold", "warm", "archive"):
        rs = runs[kind]
        res[f"{kind}_ms"] = [r["wall_ms"] for r in rs]
        res[f"{kind}_median_ms"] = med(res[f"{kind}_ms"])
        res[f"{kind}_phases_median_ms"] = {
            p: med([r["phases"].get(p) for r in rs]) for p in PHASES
            if any(r["phases"].get(p) is not None for r in rs)}
        cmds = []
        for r in rs:
            cmds += [c for c in r["commands"] if c not in cmds]
        res[f"{kind}_commands_median_ms"] = {c: med([r["commands"].get(c) for r in rs]) for c in cmds}
        res[f"{kind}_pip_downloads"] = [r["pip_downloads"] for r in rs]
        res[f"{kind}_pip_already_satisfied"] = [r["pip_already_satisfied"] for r in rs]
        res[f"{kind}_cache_events"] = [r["cache"] for r in rs]
        restores = [c for r in rs for c in r["cache"] if is_restore(c)]
        res[f"{kind}_restore_hits"] = sum(1 for c in restores if c.get("hit") is True)
        if any(r["status"] not in (None, "SUCCEEDED") for r in rs):
            warnings.append(f"a {kind} build did not succeed")
    cw, ww = res["cold_median_ms"], res["warm_median_ms"]
    res["ratio"] = round(cw / ww, 2) if cw and ww else None
    aw = res["archive_median_ms"]
    res["ratio_archive"] = round(cw / aw, 2) if cw and aw else None
    res["target_ratio"] = 5
    archive_restores = [c for r in runs["archive"] for c in r["cache"] if is_restore(c) and c.get("hit") is not False]
    res["restore"] = throughput(archive_restores)
    res["warm_restore_sources"] = [c.get("source") for r in runs["warm"] for c in r["cache"] if is_restore(c)]
    res["archive_restore_sources"] = [c.get("source") for r in runs["archive"] for c in r["cache"] if is_restore(c)]
    if any(src != "volume" for src in res["warm_restore_sources"]):
        warnings.append(f"warm restores did not all come from the cache volumes: {res['warm_restore_sources']}")
    if any(src != "archive" for src in res["archive_restore_sources"]):
        warnings.append(f"--no-cache-volumes restores did not all come from the archive: {res['archive_restore_sources']}")
    res["save"] = throughput([c for r in runs["cold"] for c in r["cache"] if is_save(c)])
    if not any(r["cache"] for r in runs["cold"] + runs["warm"]):
        warnings.append("no cache events in runner's JSON output: does this runner support `cache:`?")
    if res["cold_restore_hits"]:
        warnings.append(f"{res['cold_restore_hits']} cold build(s) reported a cache hit: not cold")
    if res["warm_restore_hits"] < len(runs["warm"]):
        warnings.append(f"only {res['warm_restore_hits']} of {len(runs['warm'])} warm builds reported a cache hit")
    if any(n for n in res["warm_pip_downloads"] + res["archive_pip_downloads"]):
        warnings.append("warm builds still downloaded wheels from PyPI")
    venv = [v for c, v in res["warm_commands_median_ms"].items() if "python3 -m venv" in c]
    if venv and venv[0] is not None and venv[0] > 1000:
        warnings.append(f"warm builds re-ran `python3 -m venv` ({venv[0]:.0f} ms): "
                        ".venv/bin/python was not restored (symlink to /usr/bin/python3 outside the cache paths?)")
    out["runner"] = res

docker_rows = [r for r in rows if r[0] == "docker"]
if docker_rows:
    res = {}
    for kind in ("cold", "warm"):
        ms, cached_steps, installs = [], [], []
        for part, k, pair, m, path in docker_rows:
            if k != kind:
                continue
            text = open(path, encoding="utf-8", errors="replace").read()
            ms.append(float(m))
            cached_steps.append(text.count("Using cache"))
            installs.append(text.count("Successfully installed"))
        res[f"{kind}_ms"] = ms
        res[f"{kind}_median_ms"] = med(ms)
        res[f"{kind}_cached_steps"] = cached_steps
        res[f"{kind}_pip_installs"] = installs
    cw, ww = res["cold_median_ms"], res["warm_median_ms"]
    res["ratio"] = round(cw / ww, 2) if cw and ww else None
    size = [int(r[3]) for r in rows if r[0] == "docker-image"]
    res["image_bytes"] = size[0] if size else None
    if any(res["warm_pip_installs"]):
        warnings.append("a cached docker build re-ran pip install")
    if any(res["cold_cached_steps"]):
        warnings.append("a --no-cache docker build used cached steps")
    out["docker"] = res

cf_rows = [r for r in rows if r[0] == "cachefrom"]
if cf_rows:
    res = {}
    for kind in ("cold", "cachefrom"):
        walls, stages, cached, pulls = [], [], [], []
        for part, k, pair, m, path in cf_rows:
            if k != kind:
                continue
            walls.append(float(m))
            for e in read_events(path):
                if e.get("event") == "stage" and e.get("stage") == "image":
                    stages.append(num(e.get("duration_ms")))
                    cached.append((e.get("detail") or {}).get("cached_steps"))
                if e.get("event") == "notice" and str(e.get("message", "")).startswith("cache-from"):
                    pulls.append(e["message"])
        res[f"{kind}_ms"] = walls
        res[f"{kind}_median_ms"] = med(walls)
        res[f"{kind}_image_stage_ms"] = stages
        res[f"{kind}_image_stage_median_ms"] = med(stages)
        res[f"{kind}_cached_steps"] = cached
        res[f"{kind}_notices"] = pulls
    a, b = res["cold_image_stage_median_ms"], res["cachefrom_image_stage_median_ms"]
    res["image_stage_ratio"] = round(a / b, 2) if a and b else None
    a, b = res["cold_median_ms"], res["cachefrom_median_ms"]
    res["build_ratio"] = round(a / b, 2) if a and b else None
    if any(c for c in res["cold_cached_steps"]):
        warnings.append("a cold cache-from build used cached steps: the engine was not cold")
    if not all(res["cachefrom_cached_steps"]):
        warnings.append("a cache-from build reused no step")
    out["cache_from"] = res

out["loadavg_1min"] = {r[1]: float(r[3]) for r in rows if r[0] == "load"}
out["cpus"] = os.cpu_count()
out["warnings"] = warnings

if as_json:
    print(json.dumps(out, separators=(",", ":")))
    sys.exit(0)


def s(ms):
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def spread(xs):
    return f"min {min(xs) / 1000:.2f}, max {max(xs) / 1000:.2f}" if xs else ""


if "runner" in out:
    r = out["runner"]
    print(f"runner cache: fixtures/cache-app on {r['image']}, {out['pairs']} rounds "
          "(fresh data dir per round)")
    print(f"  cold (miss):  median {s(r['cold_median_ms']):>9}  ({spread(r['cold_ms'])}); "
          f"pip downloads per run {r['cold_pip_downloads']}")
    print(f"  warm (hit, cache volumes): median {s(r['warm_median_ms']):>9}  ({spread(r['warm_ms'])}); "
          f"pip downloads per run {r['warm_pip_downloads']}")
    print(f"  warm (hit, --no-cache-volumes, archive extracted): median {s(r['archive_median_ms']):>9}  "
          f"({spread(r['archive_ms'])}); pip downloads per run {r['archive_pip_downloads']}")
    ratio = r["ratio"]
    verdict = "" if ratio is None else ("  meets the >= 5x target" if ratio >= 5 else "  below the 5x target")
    print(f"  ratio cold/warm (medians): {ratio}x{verdict}")
    print(f"  ratio cold/archive (medians): {r['ratio_archive']}x")
    print("  phase medians (cold -> warm -> archive):")
    for p in PHASES:
        c, w, a = (r[f"{k}_phases_median_ms"].get(p) for k in ("cold", "warm", "archive"))
        if c is None and w is None and a is None:
            continue
        print(f"    {p:<17} {s(c):>9} -> {s(w):>9} -> {s(a):>9}")
    print("  install commands, warm medians:")
    for c, v in r["warm_commands_median_ms"].items():
        if c.startswith("INSTALL"):
            print(f"    {s(v):>9}  {c[len('INSTALL: '):]}")
    rs = r["restore"]
    if rs:
        cb = rs["compressed_bytes_median"]
        print(f"  cache restore from the archive: {rs['bytes_median'] / MIB:.1f} MiB"
              + (f" ({cb / MIB:.1f} MiB compressed)" if cb else "")
              + (f", {rs['files_median']:.0f} files" if rs["files_median"] else "")
              + f" in {s(rs['duration_ms_median'])} -> {rs['mib_per_s_median']} MiB/s (median of {rs['count']})")
    else:
        print("  cache restore: no restore event with bytes and duration_ms found")
    sv = r["save"]
    if sv:
        print(f"  cache save (cold): {sv['bytes_median'] / MIB:.1f} MiB in {s(sv['duration_ms_median'])} "
              f"-> {sv['mib_per_s_median']} MiB/s")
    for kind in ("cold", "warm", "archive"):
        evs = r[f"{kind}_cache_events"]
        if evs and evs[0]:
            print(f"  {kind} cache events (pair 1): " + "; ".join(
                ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("event", "key", "matched_key"))
                for e in evs[0]))

if "docker" in out:
    d = out["docker"]
    print(f"docker layer cache: fixtures/cache-app/Dockerfile, {out['pairs']} interleaved pairs (classic builder)")
    print(f"  docker build --no-cache:        median {s(d['cold_median_ms']):>9}  ({spread(d['cold_ms'])})")
    print(f"  rebuild, app.py edited (cache): median {s(d['warm_median_ms']):>9}  ({spread(d['warm_ms'])}); "
          f"cached steps per run {d['warm_cached_steps']}")
    print(f"  ratio no-cache/cached (medians): {d['ratio']}x"
          + (f"; image {d['image_bytes'] / 1e6:.1f} MB" if d["image_bytes"] else ""))

if "cache_from" in out:
    c = out["cache_from"]
    print(f"cold agent, cache-from a registry: fixtures/cache-app/Dockerfile through runner build, {out['pairs']} rounds")
    print(f"  cold engine, nothing to pull:  image stage median {s(c['cold_image_stage_median_ms']):>9}, "
          f"whole build {s(c['cold_median_ms'])}; cached steps {c['cold_cached_steps']}")
    print(f"  cold engine, cache-from:       image stage median {s(c['cachefrom_image_stage_median_ms']):>9}, "
          f"whole build {s(c['cachefrom_median_ms'])}; cached steps {c['cachefrom_cached_steps']}")
    print(f"  ratio cold/cache-from (medians): image stage {c['image_stage_ratio']}x, whole build {c['build_ratio']}x")
    if c["cachefrom_notices"]:
        print(f"  e.g. {c['cachefrom_notices'][0]}")

load = out["loadavg_1min"]
print(f"host: {out['cpus']} CPUs, 1-min load average {load.get('start')} at start, {load.get('end')} at end")
for w in warnings:
    print(f"warning: {w}")
PY
