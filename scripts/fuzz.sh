#!/usr/bin/env bash
# Fuzzes runner's parsers with libFuzzer (libfuzzer-sys, no sanitizer, debug assertions
# and overflow checks on):
#   bash scripts/fuzz.sh [--seconds N] [TARGET...]
#   bash scripts/fuzz.sh --replay fuzz/artifacts/TARGET/crash-…
# Each target (fuzz/fuzz_targets/*.rs; all of them by default) runs N seconds (default
# 600), one at a time, on a corpus seeded from ../shared/corpus, fixtures/ and
# fuzz/seeds/. Prints one line per target (runs, exec/s, crashes, reproducer) and exits
# non-zero when any target crashed. Not part of CI (too slow).
#
# Stable toolchain only. Only the `runner` crate is instrumented (fuzz/rustc-sancov.sh as
# RUSTC_WRAPPER), in the dev profile the main crate uses, so the dependencies of an
# earlier `cargo build` (copied from target/debug once) are reused: a few minutes instead
# of rebuilding ~400 crates. `cd fuzz && cargo fuzz run -s none TARGET` works too
# (everything instrumented, release profile; a long first build).
#
# Generated corpora go to fuzz/corpus/<target>/, crashes to fuzz/artifacts/<target>/,
# logs to fuzz/logs/ (all git-ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SECONDS_PER_TARGET=600
REPLAY=
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER_TARGET=$2; shift 2 ;;
        --seconds=*) SECONDS_PER_TARGET=${1#*=}; shift ;;
        --replay) REPLAY=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done

# The registry target talks to its own server on 127.0.0.1 only: never through a proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
BIN=$ROOT/fuzz/target/debug

ALL=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -vx runner-fuzz)
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS <<<"$ALL"
fi
for t in "${TARGETS[@]}"; do
    grep -qx "$t" <<<"$ALL" || { echo "fuzz: no target $t; targets: $(echo $ALL)" >&2; exit 2; }
done

if [ ! -d "$BIN" ] && [ -d target/debug ]; then
    echo "fuzz: reusing the dependencies built in target/debug" >&2
    mkdir -p fuzz/target
    cp -a --reflink=auto target/debug fuzz/target/
fi
echo "fuzz: building every target (one build)" >&2
(cd fuzz && RUSTC_WRAPPER="$ROOT/fuzz/rustc-sancov.sh" cargo build --bins --target-dir "$ROOT/fuzz/target") >&2

if [ -n "$REPLAY" ]; then
    t=$(basename "$(dirname "$REPLAY")")
    exec "$BIN/$t" "$REPLAY"
fi

# The shared corpus sits beside the repository (in a worktree: beside the main clone).
SHARED=${RUNNER_SHARED_DIR:-$ROOT/../shared}
if [ ! -d "$SHARED/corpus" ]; then
    common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    [ -n "$common" ] && [ -d "$common/../../shared/corpus" ] && SHARED=$(cd "$common/../../shared" && pwd)
fi
[ -d "$SHARED/corpus" ] || echo "fuzz: no shared corpus at $SHARED/corpus; seeding from fixtures only" >&2

# seed TARGET FILE [PREFIX-BYTES (printf format)]: copies FILE into the target's corpus,
# named by content, with PREFIX in front (targets whose first bytes choose a mode).
seed() {
    local dir=fuzz/corpus/$1 file=$2 prefix=${3:-} tmp sum
    [ -f "$file" ] || return 0
    mkdir -p "$dir"
    tmp=$(mktemp)
    { printf "$prefix"; cat "$file"; } >"$tmp"
    sum=$(sha1sum "$tmp" | cut -c1-16)
    mv "$tmp" "$dir/seed-$sum"
}
seed_all() { # TARGET DIR-OR-GLOB... : every regular file under each
    local t=$1 f
    shift
    for d in "$@"; do
        [ -e "$d" ] || continue
        while IFS= read -r -d '' f; do seed "$t" "$f"; done < <(find "$d" -type f -print0)
    done
}

# A small image, as `docker save` writes it (prefix 0) and as an OCI layout (prefix 1),
# built from the scanner's fixtures: dpkg, apk, Python and node metadata, a whiteout, a
# gzip-compressed second layer.
# seed_gz TARGET FILE.gz [PREFIX]: seed with FILE.gz decompressed.
seed_gz() {
    local u
    u=$(mktemp)
    gunzip -c "$2" >"$u" && seed "$1" "$u" "${3:-}"
    rm -f "$u"
}

image_seeds() {
    local w sha
    w=$(mktemp -d)
    sha() { sha256sum "$1" | cut -d' ' -f1; }
    mkdir -p "$w/l1/etc" "$w/l1/var/lib/dpkg" "$w/l1/lib/apk/db" \
        "$w/l1/usr/lib/python3/site-packages/foo-1.0.dist-info" "$w/l1/usr/lib/node_modules/left-pad" \
        "$w/l2/etc" "$w/l2/usr/lib/node_modules"
    printf 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n' >"$w/l1/etc/os-release"
    cp fixtures/scan/image/dpkg-status "$w/l1/var/lib/dpkg/status"
    cp fixtures/scan/image/apk-installed "$w/l1/lib/apk/db/installed"
    cp fixtures/scan/image/METADATA "$w/l1/usr/lib/python3/site-packages/foo-1.0.dist-info/METADATA"
    printf '{"name":"left-pad","version":"1.3.0"}' >"$w/l1/usr/lib/node_modules/left-pad/package.json"
    ln -s os-release "$w/l1/etc/system-release"
    printf 'ID=alpine\nVERSION_ID=3.19.1\n' >"$w/l2/etc/os-release"
    : >"$w/l2/usr/lib/node_modules/.wh.left-pad"
    (cd "$w/l1" && tar --format=gnu --owner=0 --group=0 -cf "$w/layer1.tar" etc var lib usr)
    (cd "$w/l2" && tar --format=gnu --owner=0 --group=0 -cf "$w/layer2.tar" etc usr)
    gzip -n -c "$w/layer2.tar" >"$w/layer2.tar.gz"
    local d1 d2 g2 cfg chex
    d1=$(sha "$w/layer1.tar"); d2=$(sha "$w/layer2.tar"); g2=$(sha "$w/layer2.tar.gz")
    printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]}}' "$d1" "$d2" >"$w/config.json"
    chex=$(sha "$w/config.json")

    mkdir -p "$w/save/$d1" "$w/save/$d2"
    cp "$w/config.json" "$w/save/$chex.json"
    cp "$w/layer1.tar" "$w/save/$d1/layer.tar"
    cp "$w/layer2.tar.gz" "$w/save/$d2/layer.tar"
    printf '[{"Config":"%s.json","RepoTags":["fuzz/app:latest"],"Layers":["%s/layer.tar","%s/layer.tar"]}]' \
        "$chex" "$d1" "$d2" >"$w/save/manifest.json"
    (cd "$w/save" && tar --format=gnu -cf "$w/save.tar" manifest.json "$chex.json" "$d1" "$d2")
    seed image_archive "$w/save.tar" '\000'

    mkdir -p "$w/oci/blobs/sha256"
    cp "$w/config.json" "$w/oci/blobs/sha256/$chex"
    cp "$w/layer1.tar" "$w/oci/blobs/sha256/$d1"
    cp "$w/layer2.tar.gz" "$w/oci/blobs/sha256/$g2"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
        "$chex" "$(stat -c %s "$w/config.json")" "$d1" "$(stat -c %s "$w/layer1.tar")" "$g2" "$(stat -c %s "$w/layer2.tar.gz")" >"$w/manifest.json"
    local mhex
    mhex=$(sha "$w/manifest.json")
    cp "$w/manifest.json" "$w/oci/blobs/sha256/$mhex"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$w/oci/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"latest"},"platform":{"os":"linux","architecture":"amd64"}}]}' \
        "$mhex" "$(stat -c %s "$w/manifest.json")" >"$w/oci/index.json"
    (cd "$w/oci" && tar --format=gnu -cf "$w/oci.tar" oci-layout index.json blobs)
    seed image_archive "$w/oci.tar" '\001'
    rm -rf "$w"
}

# The gitleaks packs, one rule per seed (compiling a whole pack per run is slow).
rule_seeds() {
    local f w
    for f in scanners/secrets/rules.toml fixtures/scan/secrets/gitleaks-upstream.toml; do
        [ -f "$f" ] || continue
        w=$(mktemp -d)
        awk -v dir="$w" '/^\[\[rules\]\]/{n++} {print > (dir "/" (n+0))}' "$f"
        for r in "$w"/*; do seed gitleaks_rules "$r"; done
        rm -rf "$w"
    done
    seed gitleaks_rules scanners/secrets/rules.toml
}

seed_target() {
    local t=$1 f
    case "$t" in
        buildspec) seed_all "$t" "$SHARED/corpus/buildspecs" buildspecs
                   for f in fixtures/*/buildspec.yml; do seed "$t" "$f"; done ;;
        project_file) seed_all "$t" fuzz/seeds/project_file
                   for f in fixtures/*/runner.yml; do seed "$t" "$f"; done ;;
        cargo_lock) seed "$t" fixtures/scan/deps/cargo/Cargo.lock; seed "$t" fixtures/scan/secrets/cases/Cargo.lock; seed "$t" Cargo.lock ;;
        package_lock) for v in npm-v1 npm-v2 npm-v3; do seed "$t" "fixtures/scan/deps/$v/package-lock.json"; done ;;
        yarn_lock) seed "$t" fixtures/scan/deps/yarn-classic/yarn.lock; seed "$t" fixtures/scan/deps/yarn-berry/yarn.lock ;;
        pnpm_lock) seed "$t" fixtures/scan/deps/pnpm/pnpm-lock.yaml ;;
        requirements_txt) seed "$t" fixtures/scan/deps/requirements/requirements.txt
                   for f in fixtures/*/requirements.txt; do seed "$t" "$f"; done ;;
        poetry_lock) seed "$t" fixtures/scan/deps/poetry/poetry.lock; seed "$t" fixtures/scan/secrets/cases/poetry.lock ;;
        pipfile_lock) seed "$t" fixtures/scan/deps/pipfile/Pipfile.lock ;;
        uv_lock) seed "$t" fixtures/scan/deps/uv/uv.lock ;;
        go_mod) seed "$t" fixtures/scan/deps/go/go.mod ;;
        gemfile_lock) seed "$t" fixtures/scan/deps/gemfile/Gemfile.lock ;;
        composer_lock) seed "$t" fixtures/scan/deps/composer/composer.lock ;;
        gitops_edit)
            # Byte 0: the file name (kustomization, values, Argo CD, manifest); byte 1: the
            # image (5 = the first one the file names) and options (tag, add, helm keys).
            while IFS= read -r -d '' f; do
                local name
                case "$(basename "$f")" in
                    kustomization.y*ml) name='\000' ;;
                    values*.y*ml) name='\002' ;;
                    .argocd-source*) name='\004' ;;
                    *) name='\006' ;;
                esac
                seed "$t" "$f" "$name\\005"
                seed "$t" "$f" "$name\\165"
            done < <(find "$SHARED/corpus/gitops" fixtures/gitops fixtures/sample-app-deploy -type f -name '*.y*ml' -print0 2>/dev/null) ;;
        image_archive) image_seeds ;;
        image_inventory)
            seed_all "$t" fuzz/seeds/image_inventory
            seed "$t" fixtures/scan/image/dpkg-status '\000'
            seed "$t" fixtures/scan/image/apk-installed '\001'
            seed "$t" fixtures/scan/image/rpmdb.sqlite '\002'
            seed_gz "$t" fixtures/scan/rpmdb/rhel8-libuuid/Packages.gz '\002'
            seed "$t" fixtures/scan/image/dep-v0.bin '\005'
            seed "$t" fixtures/scan/image/METADATA '\006' ;;
        junit) seed_all "$t" fuzz/seeds/junit ;;
        secrets_file) seed_all "$t" fuzz/seeds/secrets_file ;;
        secrets_baseline) seed_all "$t" fuzz/seeds/secrets_baseline ;;
        gitleaks_rules) rule_seeds ;;
        dockerignore) seed_all "$t" fuzz/seeds/dockerignore
                   for f in fixtures/*/.dockerignore; do seed "$t" "$f"; done ;;
        osv_record) seed_all "$t" fixtures/scan/osv ;;
        env_file) seed_all "$t" fuzz/seeds/env_file
                   for f in fixtures/scan/secrets/cases/*.env; do seed "$t" "$f"; done ;;
        image_ref) seed_all "$t" fuzz/seeds/image_ref ;;
        registry_responses) seed_all "$t" fuzz/seeds/registry_responses ;;
        *) seed_all "$t" "fuzz/seeds/$t" ;;
    esac
    mkdir -p "fuzz/corpus/$t"
}

crashed=0
summary=()
for t in "${TARGETS[@]}"; do
    seed_target "$t"
    mkdir -p "fuzz/artifacts/$t" fuzz/logs
    log=fuzz/logs/$t.log
    echo "fuzz: $t for ${SECONDS_PER_TARGET}s ($(ls "fuzz/corpus/$t" | wc -l) inputs in the corpus)" >&2
    before=$(ls "fuzz/artifacts/$t" | wc -l)
    set +e
    "$BIN/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=30 \
        -rss_limit_mb=4096 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    after=$(ls "fuzz/artifacts/$t" | wc -l)
    crashes=$((after - before))
    [ $rc -ne 0 ] && [ $crashes -eq 0 ] && crashes=1
    line=$(printf '%-20s runs=%-10s exec/s=%-7s crashes=%s' "$t" "${runs:-?}" "${rate:-?}" "$crashes")
    if [ $crashes -ne 0 ]; then
        crashed=1
        newest=$(ls -t "fuzz/artifacts/$t" | head -1)
        line="$line  reproducer=fuzz/artifacts/$t/$newest (log: $log)"
    fi
    echo "$line"
    summary+=("$line")
done

echo "fuzz: summary (${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${summary[@]}"
exit $crashed
