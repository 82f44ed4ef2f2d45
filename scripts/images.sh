#!/usr/bin/env bash
# Build the runner's local base images. No container registry is involved:
# everything comes from the host (static busybox) or the host's Debian apt mirror.
#
#   runner/busybox:latest   always; ~2 MB, a few seconds. Used by the tests.
#   runner/debian:bookworm  only with --debian or RUNNER_DEBIAN_IMAGE=1; a
#                           debootstrap minbase (~2 min the first time, then
#                           re-imported from a cached rootfs tarball).
#   runner/python:bookworm  only with --python or RUNNER_PYTHON_IMAGE=1 (implies
#                           --debian): runner/debian plus Debian's python3,
#                           python3-venv, python3-pip and ca-certificates from the
#                           apt mirror (HTTP; no PyPI access needed).
#   runner/standard:bookworm  only with `standard` (or --standard, or
#                           RUNNER_STANDARD_IMAGE=1; implies --debian): the
#                           default build image, runner's counterpart of
#                           CodeBuild's standard image (fixtures/images/standard:
#                           Go 1.19 + 1.22, OpenJDK 17 + Maven, Node.js 18 + npm,
#                           Python 3.11, AWS CLI v2, git, jq, zip, build-essential,
#                           the host's static docker client) with its runtimes in
#                           /codebuild/image/config/runtimes.yml.
#   runner/standard-test:bookworm  only with `standard-test`: the same recipe
#                           with only Go 1.19 + 1.22 installed (what the tests
#                           of runtime-versions select; minutes, not a quarter
#                           of an hour).
#
# Idempotent: an image that already exists is left alone unless --rebuild.
# (runner/busybox is also rebuilt when its fixture or the host busybox changed;
# runner/python when its Dockerfile or the runner/debian image it is FROM changed.)
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/images.sh [standard] [standard-test] [--debian] [--python] [--rebuild] [--refresh-cache]

  --debian         also build runner/debian:bookworm (or RUNNER_DEBIAN_IMAGE=1)
  --python         also build runner/python:bookworm, FROM runner/debian:bookworm
                   (implies --debian; or RUNNER_PYTHON_IMAGE=1)
  standard, --standard
                   also build runner/standard:bookworm, the default build image
                   (implies --debian; or RUNNER_STANDARD_IMAGE=1)
  standard-test    also build runner/standard-test:bookworm: the same recipe
                   with only Go 1.19 and 1.22 (for the tests; implies --debian)
  --rebuild        rebuild images even if they already exist
  --refresh-cache  re-run debootstrap instead of reusing the cached rootfs tarball
                   (implies --rebuild for the Debian image)

environment:
  RUNNER_DEBIAN_IMAGE=1             same as --debian
  RUNNER_PYTHON_IMAGE=1             same as --python
  RUNNER_BUSYBOX=/path/to/busybox   static busybox to use (default: /bin/busybox)
  RUNNER_DEBIAN_MIRROR=URL          Debian mirror (default: the host's apt sources)
  RUNNER_DEBIAN_SECURITY_MIRROR=URL security mirror for the image's apt sources
  XDG_CACHE_HOME                    cache root (tarball in $XDG_CACHE_HOME/runner)
EOF
}

log() { printf 'images: %s\n' "$*" >&2; }
die() {
	printf 'images: error: %s\n' "$*" >&2
	exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FIXTURES=$ROOT/fixtures/images
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/runner

BUSYBOX_IMAGE=runner/busybox:latest
DEBIAN_IMAGE=runner/debian:bookworm
DEBIAN_SUITE=bookworm
PYTHON_IMAGE=runner/python:bookworm
STANDARD_IMAGE=runner/standard:bookworm
STANDARD_TEST_IMAGE=runner/standard-test:bookworm
STANDARD_TEST_PACKAGES="ca-certificates golang-1.19-go"

rebuild=0
refresh_cache=0
want_debian=0
want_python=0
want_standard=0
want_standard_test=0
case ${RUNNER_STANDARD_IMAGE:-0} in 1 | true | yes) want_standard=1 ;; esac
case ${RUNNER_DEBIAN_IMAGE:-0} in 1 | true | yes) want_debian=1 ;; esac
case ${RUNNER_PYTHON_IMAGE:-0} in 1 | true | yes) want_python=1 ;; esac

while [ $# -gt 0 ]; do
	case $1 in
	--debian) want_debian=1 ;;
	--python) want_python=1 ;;
	standard | --standard) want_standard=1 ;;
	standard-test | --standard-test) want_standard_test=1 ;;
	--rebuild) rebuild=1 ;;
	--refresh-cache) refresh_cache=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
	shift
done

# ---------------------------------------------------------------------------
# helpers

TMP_PATHS=()
cleanup() {
	local p m
	for p in "${TMP_PATHS[@]+"${TMP_PATHS[@]}"}"; do
		[ -e "$p" ] || continue
		# A failed debootstrap can leave proc/sys mounted inside its target:
		# unmount (deepest first) before deleting anything.
		if [ -r /proc/mounts ]; then
			while read -r m; do
				umount -l "$m" 2>/dev/null || true
			done < <(awk -v p="$p/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r)
		fi
		rm -rf --one-file-system "$p" 2>/dev/null || rm -rf "$p" || true
	done
}
trap cleanup EXIT

# run_logged LOGFILE CMD...: run quietly; on failure print the log tail and die.
run_logged() {
	local logfile=$1
	shift
	if ! "$@" >"$logfile" 2>&1; then
		printf 'images: command failed: %s\n' "$*" >&2
		tail -n 40 "$logfile" | sed 's/^/  | /' >&2
		die "see $logfile"
	fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_label() {
	docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

image_size() {
	local bytes
	bytes=$(docker image inspect --format '{{.Size}}' "$1" 2>/dev/null || echo 0)
	awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1000 / 1000 }'
}

now() { date +%s; }

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# drop_replaced OLD_ID IMAGE: remove the image a rebuild replaced, if it is now
# untagged and unused (docker refuses otherwise, which is fine).
drop_replaced() {
	[ -n "$1" ] && [ "$1" != "$(image_id "$2")" ] || return 0
	docker rmi "$1" >/dev/null 2>&1 || true
}

command -v docker >/dev/null 2>&1 || die "docker CLI not found (run scripts/setup.sh)"
docker info >/dev/null 2>&1 || die "docker daemon not reachable (run scripts/setup.sh)"

mkdir -p "$CACHE_DIR"
# Serialise concurrent invocations (e.g. parallel CI jobs on one host).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$CACHE_DIR/images.lock"
	flock 9
fi

# ---------------------------------------------------------------------------
# runner/busybox:latest

find_busybox() {
	local bb=${RUNNER_BUSYBOX:-}
	if [ -z "$bb" ]; then
		for bb in /bin/busybox /usr/bin/busybox /usr/sbin/busybox ""; do
			[ -x "$bb" ] && break
		done
	fi
	if [ -z "$bb" ] || [ ! -f "$bb" ] || [ ! -x "$bb" ]; then
		die "no busybox binary found; install Debian's busybox-static (apt-get install busybox-static)"
	fi
	# Must be static: a scratch image has no libc. `ldd` exits 0 only for
	# dynamic executables.
	if command -v ldd >/dev/null 2>&1 && ldd "$bb" >/dev/null 2>&1; then
		die "$bb is dynamically linked; install busybox-static (apt-get install busybox-static)"
	fi
	printf '%s\n' "$bb"
}

build_busybox() {
	local bb fixture ctx rootfs applet fixture_sha t0 have_sha old_id
	bb=$(find_busybox)
	fixture=$FIXTURES/busybox
	[ -f "$fixture/Dockerfile" ] || die "missing $fixture/Dockerfile"

	# Identity of what the image is built from: the fixture files, the binary
	# and this script (which lays out the rootfs).
	fixture_sha=$(
		cd "$fixture" &&
			{
				find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
				sha256sum <"$bb"
				sha256sum <"$ROOT/scripts/images.sh"
			} | sha256sum | cut -c1-16
	)

	if image_exists "$BUSYBOX_IMAGE" && [ "$rebuild" = 0 ]; then
		have_sha=$(image_label "$BUSYBOX_IMAGE" dev.runner.fixture-sha)
		if [ "$have_sha" = "$fixture_sha" ]; then
			log "$BUSYBOX_IMAGE exists ($(image_size "$BUSYBOX_IMAGE")), skipping (--rebuild to force)"
			return 0
		fi
		log "$BUSYBOX_IMAGE is stale (fixture/busybox changed), rebuilding"
	fi

	t0=$(now)
	old_id=$(image_id "$BUSYBOX_IMAGE")
	log "building $BUSYBOX_IMAGE from $bb"
	ctx=$(mktemp -d "${TMPDIR:-/tmp}/runner-busybox.XXXXXX")
	TMP_PATHS+=("$ctx")
	cp -R "$fixture/." "$ctx/"
	rootfs=$ctx/rootfs
	mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,tmp,var/tmp} "$ctx/home/builder"

	cp "$bb" "$rootfs/bin/busybox"
	chmod 0755 "$rootfs/bin/busybox"
	# `busybox --install -s` can't run inside scratch at build time, so lay the
	# applet symlinks out here. --list-full gives FHS paths (usr/bin/env, ...).
	if "$bb" --list-full >/dev/null 2>&1; then
		while IFS= read -r applet; do
			case $applet in "" | bin/busybox | linuxrc) continue ;; esac
			mkdir -p "$rootfs/$(dirname "$applet")"
			ln -sf /bin/busybox "$rootfs/$applet"
		done < <("$bb" --list-full)
	else
		while IFS= read -r applet; do
			case $applet in "" | busybox) continue ;; esac
			ln -sf /bin/busybox "$rootfs/bin/$applet"
		done < <("$bb" --list)
	fi
	ln -sf /bin/busybox "$rootfs/bin/sh"

	chmod 0755 "$rootfs" "$rootfs"/{bin,sbin,usr,usr/bin,usr/sbin,etc,var} "$ctx/home" "$ctx/home/builder"
	chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
	chmod 0700 "$rootfs/root"
	chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
	[ -f "$rootfs/etc/shadow" ] && chmod 0640 "$rootfs/etc/shadow"
	printf 'export PS1='"'"'\\u@\\h:\\w\\$ '"'"'\n' >"$ctx/home/builder/.profile"
	chmod 0644 "$ctx/home/builder/.profile"

	run_logged "$ctx.build.log" docker build --force-rm \
		--label "dev.runner.fixture-sha=$fixture_sha" \
		--label "dev.runner.busybox-version=$("$bb" 2>&1 | head -n 1 | sed 's/ multi-call.*//')" \
		-t "$BUSYBOX_IMAGE" "$ctx"
	TMP_PATHS+=("$ctx.build.log")

	verify_busybox
	drop_replaced "$old_id" "$BUSYBOX_IMAGE"
	log "built $BUSYBOX_IMAGE ($(image_size "$BUSYBOX_IMAGE")) in $(($(now) - t0))s"
}

verify_busybox() {
	local out
	out=$(docker run --rm "$BUSYBOX_IMAGE" sh -c 'echo ok' 2>&1) || true
	[ "$out" = ok ] || die "$BUSYBOX_IMAGE smoke test failed: $out"
	# Run-as support: the non-root user must resolve by name and own its home;
	# /tmp must be world-writable with the sticky bit.
	out=$(docker run --rm --user builder "$BUSYBOX_IMAGE" \
		sh -c 'echo "$(id -u):$(id -g) $HOME $(stat -c %u /home/builder) $(stat -c %a /tmp)" && touch /tmp/x "$HOME/x"' 2>&1) || true
	[ "$out" = "1000:1000 /home/builder 1000 1777" ] ||
		die "$BUSYBOX_IMAGE run-as check failed (want '1000:1000 /home/builder 1000 1777'): $out"
}

# ---------------------------------------------------------------------------
# runner/debian:bookworm

# All (uri, suite) pairs of enabled "deb" entries in the host's apt sources,
# one-line (sources.list) and deb822 (*.sources) formats.
apt_source_pairs() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk '
			{ sub(/#.*/, "") }
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if (i + 1 <= NF) print $i, $(i + 1)
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk '
			function flush(   n, u, s, j) {
				if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/ && uris != "") {
					split(uris, u, " "); n = split(suites, s, " ")
					for (j = 1; j <= n; j++) print u[1], s[j]
				}
				types = uris = suites = enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				line = $0
				key = tolower(line); sub(/:.*/, "", key)
				val = line; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = tolower(val)
			}
			END { flush() }' "$f"
	done
}

# pick_mirror SUITE: the URI serving exactly SUITE, else (with a warning) the
# first plain-release URI, else nothing.
pick_mirror() {
	local want=$1 pairs uri
	pairs=$(apt_source_pairs | awk '$1 ~ /^(https?|file):/' | sed 's#/* # #')
	uri=$(awk -v s="$want" '$2 == s { print $1; exit }' <<<"$pairs")
	if [ -z "$uri" ]; then
		case $want in
		*-security) uri=$(awk '$2 ~ /-security$/ { print $1; exit }' <<<"$pairs") ;;
		*) uri=$(awk '$2 !~ /-(security|updates|backports|proposed-updates)$/ { print $1; exit }' <<<"$pairs") ;;
		esac
		[ -z "$uri" ] || log "warning: host apt has no '$want' entry; using $uri" >&2
	fi
	printf '%s\n' "$uri"
}

make_debian_tarball() {
	local tarball=$1 arch mirror security work rootfs include="" t0
	[ "$(id -u)" = 0 ] || die "debootstrap needs root; re-run as root (e.g. sudo scripts/images.sh --debian)"
	command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ||
		die "debootstrap not found (apt-get install debootstrap)"
	PATH=$PATH:/usr/sbin:/sbin

	arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
	mirror=${RUNNER_DEBIAN_MIRROR:-$(pick_mirror "$DEBIAN_SUITE")}
	[ -n "$mirror" ] || die "could not find a Debian mirror in /etc/apt/sources.list{,.d/*}; set RUNNER_DEBIAN_MIRROR"
	mirror=${mirror%/}
	security=${RUNNER_DEBIAN_SECURITY_MIRROR:-$(pick_mirror "$DEBIAN_SUITE-security")}
	security=${security%/}
	# apt in the image needs CA certificates if it is to talk https.
	case "$mirror $security" in *https:*) include=--include=ca-certificates ;; esac

	t0=$(now)
	log "debootstrap --variant=minbase $DEBIAN_SUITE ($arch) from $mirror (takes a couple of minutes)"
	# Not /tmp: it may be a small tmpfs or mounted nodev/noexec.
	work=$(mktemp -d /var/tmp/runner-debootstrap.XXXXXX)
	TMP_PATHS+=("$work")
	rootfs=$work/rootfs
	run_logged "$work.log" debootstrap --variant=minbase --arch="$arch" --components=main \
		${include:+"$include"} "$DEBIAN_SUITE" "$rootfs" "$mirror"
	TMP_PATHS+=("$work.log")
	log "debootstrap done in $(($(now) - t0))s; configuring"

	# apt sources: the same mirrors the host uses.
	rm -f "$rootfs/etc/apt/sources.list"
	{
		printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$mirror" "$DEBIAN_SUITE" "$DEBIAN_SUITE"
		[ -z "$security" ] ||
			printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
				"$security" "$DEBIAN_SUITE"
	} >"$rootfs/etc/apt/sources.list.d/debian.sources"

	# Don't let package installs try to start services inside a container.
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
	chmod 0755 "$rootfs/usr/sbin/policy-rc.d"

	# Same non-root user as runner/busybox, for run-as builds.
	run_logged "$work.chroot.log" chroot "$rootfs" useradd --uid 1000 --user-group --create-home --shell /bin/bash builder
	TMP_PATHS+=("$work.chroot.log")

	# Slim down: package caches and lists are refetched by `apt-get update`.
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
		"$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
	mkdir -p "$rootfs/var/lib/apt/lists/partial"
	: >"$rootfs/etc/hostname"
	: >"$rootfs/etc/resolv.conf"

	tar --numeric-owner --xattrs -C "$rootfs" \
		--exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' \
		-c . | gzip -1 >"$tarball.tmp"
	mv "$tarball.tmp" "$tarball"
	log "cached $tarball ($(du -h "$tarball" | cut -f1)) in $(($(now) - t0))s"
}

build_debian() {
	local arch tarball t0 old_id logfile out
	if image_exists "$DEBIAN_IMAGE" && [ "$rebuild" = 0 ] && [ "$refresh_cache" = 0 ]; then
		log "$DEBIAN_IMAGE exists ($(image_size "$DEBIAN_IMAGE")), skipping (--rebuild to force)"
		return 0
	fi
	arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
	tarball=$CACHE_DIR/debian-$DEBIAN_SUITE-minbase-$arch.tar.gz
	if [ "$refresh_cache" = 1 ] || [ ! -s "$tarball" ]; then
		make_debian_tarball "$tarball"
	else
		log "using cached rootfs $tarball (--refresh-cache to re-run debootstrap)"
	fi

	t0=$(now)
	old_id=$(image_id "$DEBIAN_IMAGE")
	log "importing $DEBIAN_IMAGE"
	logfile=$(mktemp "${TMPDIR:-/tmp}/runner-import.XXXXXX")
	TMP_PATHS+=("$logfile")
	run_logged "$logfile" docker import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["/bin/bash"]' \
		--change "LABEL org.opencontainers.image.title=runner/debian dev.runner.image=debian-$DEBIAN_SUITE" \
		--message "debootstrap --variant=minbase $DEBIAN_SUITE" \
		"$tarball" "$DEBIAN_IMAGE"

	out=$(docker run --rm "$DEBIAN_IMAGE" bash -c 'cat /etc/debian_version && id -u builder && apt-get --version | head -n 1' 2>&1) ||
		die "$DEBIAN_IMAGE smoke test failed: $out"
	drop_replaced "$old_id" "$DEBIAN_IMAGE"
	log "imported $DEBIAN_IMAGE ($(image_size "$DEBIAN_IMAGE"), Debian $(head -n 1 <<<"$out")) in $(($(now) - t0))s"
}

# ---------------------------------------------------------------------------
# runner/python:bookworm

# The Dockerfile, kept here so the image needs no build context at all (it is
# piped to `docker build -`). apt only: the mirror is plain HTTP, which
# `docker build` containers reach without the host's CA bundle.
python_dockerfile() {
	cat <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      python3 python3-venv python3-pip ca-certificates \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin \\
      /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log \\
 && mkdir -p /var/lib/apt/lists/partial
LABEL org.opencontainers.image.title=runner/python dev.runner.image=python-$DEBIAN_SUITE
CMD ["/bin/bash"]
EOF
}

build_python() {
	local fixture_sha have_sha t0 old_id logfile out
	image_exists "$DEBIAN_IMAGE" || die "$DEBIAN_IMAGE is missing (build it with --debian)"
	# Identity: the Dockerfile text and the exact base image it is FROM.
	fixture_sha=$({
		python_dockerfile
		image_id "$DEBIAN_IMAGE"
	} | sha256sum | cut -c1-16)

	if image_exists "$PYTHON_IMAGE" && [ "$rebuild" = 0 ]; then
		have_sha=$(image_label "$PYTHON_IMAGE" dev.runner.fixture-sha)
		if [ "$have_sha" = "$fixture_sha" ]; then
			log "$PYTHON_IMAGE exists ($(image_size "$PYTHON_IMAGE")), skipping (--rebuild to force)"
			return 0
		fi
		log "$PYTHON_IMAGE is stale (its Dockerfile or $DEBIAN_IMAGE changed), rebuilding"
	fi

	t0=$(now)
	old_id=$(image_id "$PYTHON_IMAGE")
	log "building $PYTHON_IMAGE (apt-get install python3 python3-venv python3-pip ca-certificates)"
	logfile=$(mktemp "${TMPDIR:-/tmp}/runner-python-build.XXXXXX")
	TMP_PATHS+=("$logfile")
	run_logged "$logfile" docker build --force-rm \
		--label "dev.runner.fixture-sha=$fixture_sha" \
		-t "$PYTHON_IMAGE" - < <(python_dockerfile)

	out=$(docker run --rm "$PYTHON_IMAGE" bash -c \
		'python3 --version && python3 -m venv /tmp/venv && /tmp/venv/bin/pip --version >/dev/null &&
		 python3 -m pip --version >/dev/null && test -s /etc/ssl/certs/ca-certificates.crt && id -u builder' 2>&1) ||
		die "$PYTHON_IMAGE smoke test failed: $out"
	drop_replaced "$old_id" "$PYTHON_IMAGE"
	log "built $PYTHON_IMAGE ($(image_size "$PYTHON_IMAGE"), $(head -n 1 <<<"$out")) in $(($(now) - t0))s"
}

# ---------------------------------------------------------------------------
# runner/standard:bookworm

# The host's docker client, when it is a static binary (it then runs in any image).
static_docker_client() {
	local d
	d=$(command -v docker 2>/dev/null) || return 0
	d=$(readlink -f "$d")
	if command -v ldd >/dev/null 2>&1 && ldd "$d" >/dev/null 2>&1; then
		return 0
	fi
	printf '%s\n' "$d"
}

# build_standard IMAGE [PACKAGES]: the recipe, with PACKAGES instead of the full list.
build_standard() {
	local packages=${2:-} STANDARD_IMAGE=$1
	local fixture=$FIXTURES/standard fixture_sha have_sha t0 old_id logfile ctx client extra="" out smoke
	image_exists "$DEBIAN_IMAGE" || die "$DEBIAN_IMAGE is missing (build it with --debian)"
	[ -f "$fixture/Dockerfile" ] || die "missing $fixture/Dockerfile"
	client=$(static_docker_client)
	[ -n "$client" ] || extra=docker.io
	# Identity: the fixture, the base image and the docker client copied in.
	fixture_sha=$({
		cd "$fixture" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
		image_id "$DEBIAN_IMAGE"
		[ -z "$client" ] || sha256sum <"$client"
		printf '%s\n' "$packages"
	} | sha256sum | cut -c1-16)

	if image_exists "$STANDARD_IMAGE" && [ "$rebuild" = 0 ]; then
		have_sha=$(image_label "$STANDARD_IMAGE" dev.runner.fixture-sha)
		if [ "$have_sha" = "$fixture_sha" ]; then
			log "$STANDARD_IMAGE exists ($(image_size "$STANDARD_IMAGE")), skipping (--rebuild to force)"
			return 0
		fi
		log "$STANDARD_IMAGE is stale (fixtures/images/standard or $DEBIAN_IMAGE changed), rebuilding"
	fi

	t0=$(now)
	old_id=$(image_id "$STANDARD_IMAGE")
	ctx=$(mktemp -d "${TMPDIR:-/tmp}/runner-standard.XXXXXX")
	TMP_PATHS+=("$ctx")
	cp -R "$fixture/." "$ctx/"
	mkdir -p "$ctx/bin"
	[ -z "$client" ] || cp "$client" "$ctx/bin/docker"
	# pip (the AWS CLI) trusts what the host trusts: a proxy may re-sign TLS.
	if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
		cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
	else
		: >"$ctx/host-ca.crt"
	fi
	log "building $STANDARD_IMAGE (apt: ${packages:-Go, Java, Maven, Node.js, Python, AWS CLI, build tools} + Go 1.22 from backports; docker client: ${client:-Debian docker.io}); this takes several minutes"
	logfile=$(mktemp "${TMPDIR:-/tmp}/runner-standard-build.XXXXXX")
	TMP_PATHS+=("$logfile")
	run_logged "$logfile" docker build --force-rm \
		--build-arg "BASE=$DEBIAN_IMAGE" --build-arg "EXTRA_PACKAGES=$extra" \
		${packages:+--build-arg "PACKAGES=$packages"} \
		--label "dev.runner.fixture-sha=$fixture_sha" \
		-t "$STANDARD_IMAGE" "$ctx"

	smoke='set -e
		go version && "$GOLANG_119_HOME/bin/go" version && docker --version && aws --version
		test -s /codebuild/image/config/runtimes.yml && id -u builder'
	[ -n "$packages" ] || smoke="$smoke"'
		java -version 2>&1 | sed -n 1p && mvn -B -v | sed -n 1p
		node --version && npm --version && python3 --version
		git --version && jq --version && zip -v | sed -n 2p
		unzip -v | sed -n 1p && gcc --version | sed -n 1p'
	out=$(docker run --rm "$STANDARD_IMAGE" bash -c "$smoke" 2>&1) ||
		die "$STANDARD_IMAGE smoke test failed: $out"
	drop_replaced "$old_id" "$STANDARD_IMAGE"
	log "built $STANDARD_IMAGE ($(image_size "$STANDARD_IMAGE")) in $(($(now) - t0))s:"
	sed 's/^/  /' <<<"$out" >&2
}

# ---------------------------------------------------------------------------

build_busybox
if [ "$want_debian" = 1 ] || [ "$want_python" = 1 ] || [ "$want_standard" = 1 ] || [ "$want_standard_test" = 1 ]; then
	build_debian
fi
if [ "$want_python" = 1 ]; then
	build_python
fi
if [ "$want_standard" = 1 ]; then
	build_standard "$STANDARD_IMAGE"
fi
if [ "$want_standard_test" = 1 ]; then
	build_standard "$STANDARD_TEST_IMAGE" "$STANDARD_TEST_PACKAGES"
fi
