#!/usr/bin/env bash
# The main job end to end on the embedded defaults: sets up the local stack (Docker engine,
# base images), builds runner, validates the example buildspecs, then runs the sample app's
# buildspec in a Debian container (apt from Debian's mirror, pytest from PyPI over the
# host's trusted CA bundle), collecting its artifact and JUnit report.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --debian
echo "demo: cargo build --release" >&2
cargo build --release --quiet
runner=target/release/runner
out=${RUNNER_DEMO_OUT:-$(mktemp -d)}

echo "demo: runner validate" >&2
"$runner" validate buildspecs/*.yml fixtures/sample-app/buildspec.yml

echo "demo: runner build (sample app)" >&2
# The image, source mode and timeout come from fixtures/sample-app/runner.yml.
"$runner" build --source fixtures/sample-app --artifacts "$out"

echo "demo: artifacts in $out:" >&2
find "$out" -type f | sort >&2
