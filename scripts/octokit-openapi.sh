#!/usr/bin/env bash
# Fetch GitHub's published OpenAPI description (npm package @octokit/openapi) once into a
# cache dir and print the path of generated/api.github.com.json. Idempotent: a second run
# only prints the path. Used by the GitHub stand-in (tests/it/forge_github.py).
#   RUNNER_OCTOKIT_OPENAPI_DIR  cache dir (default ~/.cache/runner-test/octokit-openapi)
#   RUNNER_OCTOKIT_OPENAPI_VERSION  npm version spec (default: latest)
set -euo pipefail
dir="${RUNNER_OCTOKIT_OPENAPI_DIR:-$HOME/.cache/runner-test/octokit-openapi}"
spec="@octokit/openapi${RUNNER_OCTOKIT_OPENAPI_VERSION:+@$RUNNER_OCTOKIT_OPENAPI_VERSION}"
out="$dir/package/generated/api.github.com.json"
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch $spec (apt-get install -y npm)" >&2; exit 1; }
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "$spec" >/dev/null )
tgz="$(ls "$tmp"/*.tgz)"
mkdir -p "$tmp/x"
tar -xzf "$tgz" -C "$tmp/x" package/generated/api.github.com.json package/package.json
rm -rf "$dir/package.new" && mv "$tmp/x/package" "$dir/package.new"
rm -rf "$dir/package" && mv "$dir/package.new" "$dir/package"
echo "$out"
