#!/usr/bin/env bash
# A real OCI/Docker registry on loopback for the tests: Debian's `docker-registry`
# (CNCF distribution 2.8, /usr/bin/docker-registry), optionally behind htpasswd
# basic auth that accepts exactly the credentials moto's ECR hands out.
#
#   scripts/registry.sh start [--port N] [--dir DATA_DIR] [--htpasswd]
#   scripts/registry.sh stop [--port N]      # no --port: every registry this script started
#   scripts/registry.sh status [--port N]    # exit 0 if (that / any) registry answers
#
# start prints the registry address (127.0.0.1:PORT) on stdout; progress goes to
# stderr. Default port: 5000 without auth, 5001 with --htpasswd. Idempotent:
# starting an already running registry on that port (same auth mode) is a no-op.
# State (config.yml, htpasswd, pid file, log) lives in
# ${RUNNER_REGISTRY_STATE:-${XDG_RUNTIME_DIR:-/tmp}/runner-registry}/PORT/; the
# blobs in DATA_DIR (default: that directory's data/). Plain HTTP: Docker treats
# 127.0.0.0/8 registries as insecure, so `docker push 127.0.0.1:PORT/x` just works.
#
# ECR credentials (checked against moto 5.2.1, moto/ecr/responses.py
# get_authorization_token): for each registry id (default: the account,
# 123456789012 in moto) moto returns
#   authorizationToken = base64("AWS:" + password), password = "<registryId>-auth-token"
#   e.g. "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu" = base64("AWS:123456789012-auth-token")
#   proxyEndpoint      = "https://<registryId>.dkr.ecr.<region>.amazonaws.com"
#   expiresAt          = 2015-01-01 00:00:00 (local time; already in the past)
# So with --htpasswd the only user is `AWS` with password
# "${RUNNER_ECR_ACCOUNT:-123456789012}-auth-token" (bcrypt, as distribution requires):
#   docker login 127.0.0.1:5001 -u AWS -p 123456789012-auth-token
# The password/user can be overridden with RUNNER_REGISTRY_USER / RUNNER_REGISTRY_PASSWORD.
set -euo pipefail

PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
STATE_ROOT=${RUNNER_REGISTRY_STATE:-${XDG_RUNTIME_DIR:-/tmp}/runner-registry}
ACCOUNT=${RUNNER_ECR_ACCOUNT:-123456789012}
REG_USER=${RUNNER_REGISTRY_USER:-AWS}
REG_PASSWORD=${RUNNER_REGISTRY_PASSWORD:-$ACCOUNT-auth-token}
WAIT_SECONDS=${RUNNER_REGISTRY_WAIT:-30}

log() { printf 'registry: %s\n' "$*" >&2; }
die() {
	printf 'registry: error: %s\n' "$*" >&2
	exit 1
}
usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		die "need root for: $*"
	fi
}

apt_updated=0
apt_install() {
	command -v apt-get >/dev/null 2>&1 || return 1
	local logfile
	logfile=$(mktemp "${TMPDIR:-/tmp}/runner-registry-apt.XXXXXX")
	if [ "$apt_updated" = 0 ]; then
		log "apt-get update"
		as_root apt-get update >"$logfile" 2>&1 || {
			tail -n 20 "$logfile" | sed 's/^/  | /' >&2
			return 1
		}
		apt_updated=1
	fi
	log "apt-get install $*"
	# policy-rc.d-less containers: the package's init script must not grab :5000.
	as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y "$@" >"$logfile" 2>&1 || {
		tail -n 20 "$logfile" | sed 's/^/  | /' >&2
		return 1
	}
	rm -f "$logfile"
}

REGISTRY_BIN=
ensure_registry_bin() {
	REGISTRY_BIN=$(command -v docker-registry || true)
	if [ -z "$REGISTRY_BIN" ]; then
		apt_install docker-registry || die "could not install Debian's docker-registry"
		REGISTRY_BIN=$(command -v docker-registry) || die "docker-registry still missing after install"
		# With systemd, the package starts its own instance on :5000; we run ours.
		if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
			as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
		fi
	fi
}

# bcrypt_hash USER PASSWORD -> "USER:$2y$..." line for distribution's htpasswd auth.
bcrypt_line() {
	local user=$1 pw=$2
	if ! command -v htpasswd >/dev/null 2>&1 && ! python3 -c 'import bcrypt' >/dev/null 2>&1; then
		apt_install apache2-utils ||
			python3 -m pip install --quiet --disable-pip-version-check bcrypt >&2 ||
			die "need htpasswd (apt apache2-utils) or python bcrypt (pip) to hash the password"
	fi
	if command -v htpasswd >/dev/null 2>&1; then
		htpasswd -Bbn "$user" "$pw" | sed '/^$/d'
	else
		python3 -c 'import sys, bcrypt; print(sys.argv[1] + ":" + bcrypt.hashpw(sys.argv[2].encode(), bcrypt.gensalt()).decode())' "$user" "$pw"
	fi
}

# http_code URL -> HTTP status of GET (000 when nothing answers).
http_code() {
	if command -v curl >/dev/null 2>&1; then
		curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
	else
		python3 - "$1" <<'PY' 2>/dev/null || echo 000
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
	fi
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

state_pid() {
	local f=$STATE_ROOT/$1/registry.pid
	if [ -f "$f" ]; then cat "$f"; fi
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
port='' dir='' auth=0
while [ $# -gt 0 ]; do
	case $1 in
	--port) port=${2:?--port needs a value}; shift 2 ;;
	--port=*) port=${1#--port=}; shift ;;
	--dir) dir=${2:?--dir needs a value}; shift 2 ;;
	--dir=*) dir=${1#--dir=}; shift ;;
	--htpasswd) auth=1; shift ;;
	-h | --help) usage ;;
	*) log "unknown argument: $1"; usage ;;
	esac
done
if [ -n "$port" ]; then
	case $port in '' | *[!0-9]*) die "bad port: $port" ;; esac
fi

do_start() {
	[ -n "$port" ] || { if [ "$auth" = 1 ]; then port=5001; else port=5000; fi; }
	local state=$STATE_ROOT/$port want code pid
	if [ "$auth" = 1 ]; then want=401; else want=200; fi
	local url="http://127.0.0.1:$port/v2/"

	pid=$(state_pid "$port")
	code=$(http_code "$url")
	if [ "$code" != 000 ]; then
		if pid_alive "$pid"; then
			[ "$code" = "$want" ] ||
				die "registry on port $port is running with the other auth mode (/v2/ answers $code, want $want); stop it first"
			if [ -n "$dir" ] && ! grep -qF "rootdirectory: \"$dir\"" "$state/config.yml" 2>/dev/null; then
				log "warning: registry on port $port already running with another data dir ($state/config.yml)"
			fi
			log "already running on 127.0.0.1:$port (pid $pid)"
			echo "127.0.0.1:$port"
			return 0
		fi
		die "port $port is already taken by something else (/v2/ answers $code)"
	fi
	if pid_alive "$pid"; then
		log "stale registry pid $pid on port $port not answering; stopping it"
		kill "$pid" 2>/dev/null || true
		sleep 0.5
	fi

	ensure_registry_bin
	mkdir -p "$state"
	[ -n "$dir" ] || dir=$state/data
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)

	local auth_yaml=""
	if [ "$auth" = 1 ]; then
		bcrypt_line "$REG_USER" "$REG_PASSWORD" >"$state/htpasswd"
		chmod 600 "$state/htpasswd"
		auth_yaml="auth:
  htpasswd:
    realm: runner-registry
    path: \"$state/htpasswd\""
	else
		rm -f "$state/htpasswd"
	fi

	cat >"$state/config.yml" <<EOF
# written by scripts/registry.sh
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: "$dir"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: 127.0.0.1:$port
  secret: runner-test-registry-$port
  headers:
    X-Content-Type-Options: [nosniff]
$auth_yaml
EOF

	log "starting $REGISTRY_BIN on 127.0.0.1:$port (data $dir, auth $([ "$auth" = 1 ] && echo "htpasswd user $REG_USER" || echo none))"
	# setsid+nohup: own session, survives the caller's shell; $! is the registry itself.
	nohup setsid "$REGISTRY_BIN" serve "$state/config.yml" </dev/null >>"$state/registry.log" 2>&1 &
	pid=$!
	echo "$pid" >"$state/registry.pid"

	local deadline=$((SECONDS + WAIT_SECONDS))
	while [ "$SECONDS" -lt "$deadline" ]; do
		code=$(http_code "$url")
		if [ "$code" = "$want" ]; then
			log "up on 127.0.0.1:$port (pid $pid)"
			echo "127.0.0.1:$port"
			return 0
		fi
		if ! pid_alive "$pid"; then
			tail -n 20 "$state/registry.log" | sed 's/^/  | /' >&2
			rm -f "$state/registry.pid"
			die "registry exited (log $state/registry.log)"
		fi
		sleep 0.2
	done
	tail -n 20 "$state/registry.log" | sed 's/^/  | /' >&2
	die "registry on port $port not answering $want on /v2/ after ${WAIT_SECONDS}s (last: $code)"
}

stop_one() {
	local p=$1 pid
	pid=$(state_pid "$p")
	if pid_alive "$pid"; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			pid_alive "$pid" || break
			sleep 0.1
		done
		if pid_alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
		log "stopped registry on port $p (pid $pid)"
	fi
	rm -f "$STATE_ROOT/$p/registry.pid"
}

all_ports() {
	local d
	for d in "$STATE_ROOT"/*/; do
		[ -f "$d/config.yml" ] || continue
		basename "$d"
	done
}

do_stop() {
	if [ -n "$port" ]; then
		stop_one "$port"
	else
		for p in $(all_ports); do stop_one "$p"; done
	fi
}

do_status() {
	local p pid code any=1 ports
	if [ -n "$port" ]; then ports=$port; else ports=$(all_ports); fi
	for p in $ports; do
		pid=$(state_pid "$p")
		code=$(http_code "http://127.0.0.1:$p/v2/")
		if pid_alive "$pid" && [ "$code" != 000 ]; then
			local mode=none
			[ -f "$STATE_ROOT/$p/htpasswd" ] && mode=htpasswd
			echo "127.0.0.1:$p running pid=$pid auth=$mode v2=$code state=$STATE_ROOT/$p"
			any=0
		else
			echo "127.0.0.1:$p stopped"
		fi
	done
	return $any
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) usage ;;
esac
