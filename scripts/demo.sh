#!/usr/bin/env bash
# The main job end to end on the embedded defaults: sets up the local stack (Docker engine,
# base images, moto as the AWS stand-in), builds runner, validates the example buildspecs,
# then runs the sample app's buildspec twice in a Python container:
#   - secrets from Parameter Store and Secrets Manager (moto), masked in every output;
#   - pytest from PyPI over HTTPS (the container trusts the host's CA bundle);
#   - a JUnit report, a tarball artifact and an exported variable;
#   - the second run restores the virtualenv from the build cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --debian --python
echo "demo: cargo build --release" >&2
cargo build --release --quiet
runner=$PWD/target/release/runner
out=${RUNNER_DEMO_OUT:-$(mktemp -d)}
# A fresh data directory, so the first build is a cache miss and the second a hit.
export RUNNER_DATA_DIR=${RUNNER_DEMO_DATA:-$(mktemp -d)}

echo "demo: local AWS stand-in" >&2
eval "$(bash scripts/moto.sh start)"
trap 'bash scripts/moto.sh stop' EXIT

echo "demo: runner validate" >&2
"$runner" validate buildspecs/*.yml fixtures/sample-app/buildspec.yml

# The image, source mode and timeout come from fixtures/sample-app/runner.yml.
for run in cold warm; do
	echo "demo: runner build (sample app, $run cache)" >&2
	"$runner" build --source fixtures/sample-app --artifacts "$out"
done

echo "demo: artifacts in $out:" >&2
find "$out" -type f | sort >&2
