#!/usr/bin/env bash
# Image scanner correctness check: the dpkg inventory the scanner reads from a
# `docker save` tarball must equal what dpkg itself reports for the same rootfs:
#   dpkg-query --admindir=<rootfs>/var/lib/dpkg -W -f '${Package} ${Version}\n'
#
#   benches/image/inventory_check.sh [IMAGE] [--rootfs DIR] [--keep]
#
#   IMAGE        image to check (default runner/debian:bookworm, a debootstrap
#                minbase imported with `docker import`; scripts/setup.sh --debian)
#   --rootfs DIR a debootstrap rootfs (e.g. `debootstrap --variant=minbase bookworm
#                DIR http://deb.debian.org/debian`): imported as
#                runner-bench/minbase:latest with `tar -C DIR -c . | docker import`,
#                then compared against DIR/var/lib/dpkg
#   --keep       keep the work directory and say where
#
#   SCAN_IMAGE=path/to/scan-image   scanner binary (default target/release/scan-image,
#                                   built with `cargo build --release --bin scan-image`)
#
# Prints the package counts and the number of differing lines; exits 1 if any.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
log() { printf 'inventory-check: %s\n' "$*" >&2; }
die() {
	printf 'inventory-check: error: %s\n' "$*" >&2
	exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
image=runner/debian:bookworm
rootfs=""
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--rootfs) rootfs=${2:?--rootfs needs a directory}; shift ;;
	--keep) keep=1 ;;
	-*) die "unknown option $1" ;;
	*) image=$1 ;;
	esac
	shift
done

command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "docker not reachable (scripts/setup.sh)"
command -v dpkg-query >/dev/null || die "dpkg-query not found"

SCAN=${SCAN_IMAGE:-$ROOT/target/release/scan-image}
if [ -z "${SCAN_IMAGE:-}" ]; then
	log "cargo build --release --bin scan-image"
	(cd "$ROOT" && cargo build --release --quiet --bin scan-image) || die "build failed"
fi
[ -x "$SCAN" ] || die "scanner $SCAN not found (set SCAN_IMAGE)"

work=$(mktemp -d "${TMPDIR:-/tmp}/inventory-check.XXXXXX")
cleanup() { if [ "$keep" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

if [ -n "$rootfs" ]; then
	[ -f "$rootfs/var/lib/dpkg/status" ] || die "$rootfs has no var/lib/dpkg/status"
	image=runner-bench/minbase:latest
	log "importing $rootfs as $image"
	tar --numeric-owner -C "$rootfs" -c . | docker import - "$image" >/dev/null
	admindir=$rootfs/var/lib/dpkg
else
	docker image inspect "$image" >/dev/null 2>&1 || die "no image $image (scripts/setup.sh --debian)"
	# The image's own dpkg database, through the engine (not through our tar reader).
	cid=$(docker create "$image" true)
	docker cp "$cid:/var/lib/dpkg" "$work/dpkg" >/dev/null
	docker rm "$cid" >/dev/null
	admindir=$work/dpkg
fi

log "docker save $image"
docker save "$image" -o "$work/image.tar"

dpkg-query --admindir="$admindir" -W -f '${Package} ${Version}\n' | LC_ALL=C sort >"$work/expected.txt"
"$SCAN" "$work/image.tar" >"$work/inventory.json"
python3 - "$work/inventory.json" >"$work/scanned.txt" <<'PY'
import json, sys
inv = json.load(open(sys.argv[1]))
for p in inv["packages"]:
    if p["purl"].startswith("pkg:deb/"):
        print(p["name"], p["version"])
PY
LC_ALL=C sort -o "$work/scanned.txt" "$work/scanned.txt"

diffs=$(diff "$work/expected.txt" "$work/scanned.txt" | grep -c '^[<>]' || true)
echo "image:           $image"
echo "os:              $(python3 -c 'import json,sys; o=json.load(open(sys.argv[1]))["os"]; print(o and o["ecosystem"])' "$work/inventory.json")"
echo "dpkg-query:      $(wc -l <"$work/expected.txt") packages"
echo "scanner:         $(wc -l <"$work/scanned.txt") packages"
echo "differing lines: $diffs"
if [ "$diffs" != 0 ]; then
	diff "$work/expected.txt" "$work/scanned.txt" | head -n 40 || true
	exit 1
fi
