#!/usr/bin/env bash
# The main job end to end on the embedded defaults: sets up the local stack (Docker engine,
# base images, moto as the AWS stand-in, a registry standing in for ECR's data plane, a
# git remote and a strict GitHub stand-in), builds runner, validates the example
# buildspecs, then runs the sample app's buildspec twice in a Python container:
#   - secrets and lockfiles in the source scanned against the policy first;
#   - secrets from Parameter Store and Secrets Manager (moto), masked in every output;
#   - pytest from PyPI over HTTPS (the container trusts the host's CA bundle);
#   - a JUnit report, a tarball artifact and an exported variable;
#   - the image built from the Dockerfile, scanned (packages, secrets in its layers),
#     pushed to "ECR" with moto's token, signed and attested (SLSA provenance, SBOM);
#   - a pull request on the config repository pinning the new digest;
#   - the second run finds the virtualenv in the project's cache volumes (nothing to
#     download or extract), takes the image's layers from `cache-from` (the engine's
#     layer cache), uploads no blob the registry already has, and updates the same PR;
#   - a third run goes through the agent pool: a local `runner server` (SQLite), one
#     `runner agent`, `runner submit`, the log followed and the artifacts downloaded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --debian --python
echo "demo: cargo build --release" >&2
cargo build --release --quiet
runner=$PWD/target/release/runner
work=$(mktemp -d)
out=${RUNNER_DEMO_OUT:-$work/artifacts}
# A fresh data directory, so the first build is a cache miss and the second a hit.
export RUNNER_DATA_DIR=${RUNNER_DEMO_DATA:-$work/data}
pids=()
# The cache volumes this demo's builds create (runner keeps them between builds; the
# demo's data directory goes away, so they go too).
volumes_before=$(docker volume ls -q 2>/dev/null | grep '^runner-cache-sample-app-' || true)
cleanup() {
	local v
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for v in $(docker volume ls -q 2>/dev/null | grep '^runner-cache-sample-app-' || true); do
		grep -qx "$v" <<<"$volumes_before" || docker volume rm -f "$v" >/dev/null 2>&1 || true
	done
	bash scripts/registry.sh stop --port 5001 >/dev/null 2>&1 || true
	bash scripts/moto.sh stop
}
trap cleanup EXIT

echo "demo: local AWS stand-in (moto) and the registry behind ECR's token" >&2
eval "$(bash scripts/moto.sh start)"
bash scripts/registry.sh start --htpasswd --port 5001 >/dev/null
ecr=123456789012.dkr.ecr.us-east-1.amazonaws.com
export RUNNER_REGISTRY_ENDPOINTS=$ecr=http://127.0.0.1:5001

echo "demo: signing key (runner key generate)" >&2
export COSIGN_PASSWORD=demo-password
"$runner" key generate --output-dir "$work/keys" >/dev/null
export RUNNER_SIGN_KEY=$work/keys/cosign.key

# Offline advisory data: the shared OSV dumps when present, else `runner db update`.
if [ -d ../shared/advisories ]; then export RUNNER_ADVISORIES=$PWD/../shared/advisories; fi

echo "demo: config repository and GitHub stand-in" >&2
token=demo-$RANDOM$RANDOM
export RUNNER_GITOPS_TOKEN=$token
git -c init.defaultBranch=main init -q --bare "$work/git/acme/sample-app-deploy.git"
git -c init.defaultBranch=main init -q "$work/seed"
cp -r fixtures/sample-app-deploy/. "$work/seed/"
git -C "$work/seed" add -A
git -C "$work/seed" -c user.name=demo -c user.email=demo@localhost commit -qm "sample-app deployment"
git -C "$work/seed" push -q "$work/git/acme/sample-app-deploy.git" HEAD:main
python3 tests/it/git_http.py --root "$work/git" --token "$token" --port 18080 >"$work/git_http.out" 2>&1 &
pids+=($!)
python3 tests/it/forge_github.py --spec "$(bash scripts/octokit-openapi.sh)" --token "$token" \
	--port 18081 --git-root "$work/git" --record "$work/forge.jsonl" >"$work/forge.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	grep -q PORT "$work/git_http.out" 2>/dev/null && grep -q PORT "$work/forge.out" 2>/dev/null && break
	sleep 0.1
done

echo "demo: runner validate" >&2
"$runner" validate buildspecs/*.yml fixtures/sample-app/buildspec.yml

# The image, source mode, scans, image, signing and GitOps come from
# fixtures/sample-app/runner.yml.
for run in cold warm; do
	echo "demo: runner build (sample app, $run)" >&2
	"$runner" build --source fixtures/sample-app --artifacts "$out" | tee "$work/build-$run.log"
done
echo "demo: the build cache, cold then warm" >&2
grep -h -e 'Cache ' -e 'cache-from' -e 'Image built' "$work/build-cold.log" "$work/build-warm.log" | sed 's/^/  /' >&2

echo "demo: runner verify (signature and attestations, by the public key)" >&2
"$runner" verify "$ecr/sample-app:latest" --key "$work/keys/cosign.pub" \
	--attestation slsaprovenance1 --attestation cyclonedx

echo "demo: the pull request on the config repository" >&2
curl -fsS "http://127.0.0.1:18081/_pulls" | python3 -c '
import json, sys
for repo, prs in json.load(sys.stdin).items():
  for pr in prs:
    head, base = pr.get("head", {}), pr.get("base", {})
    print("  %s #%s %s: %s (%s -> %s) %s" % (repo, pr.get("number"), pr.get("state"), pr.get("title"),
          head.get("ref") if isinstance(head, dict) else head,
          base.get("ref") if isinstance(base, dict) else base, pr.get("html_url", "")))' >&2
git -C "$work/seed" fetch -q "$work/git/acme/sample-app-deploy.git" '+refs/heads/*:refs/remotes/demo/*'
branch=$(git -C "$work/seed" for-each-ref --format='%(refname)' refs/remotes/demo/runner | head -n1)
git -C "$work/seed" --no-pager diff main "$branch" >&2

echo "demo: the agent pool: a local runner server and agent, then runner submit --wait" >&2
# The same sample app again, as a team's pool would run it: the server queues it (SQLite
# and blobs in its own data directory), the agent (its own data directory, this shell's
# AWS, registry, signing and GitOps settings) claims it and runs the same pipeline.
"$runner" --data-dir "$work/pool-server" server --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
export RUNNER_SERVER
RUNNER_SERVER=$(sed -n 's/^listening on //p' "$work/server.out" | head -n1)
[ -n "$RUNNER_SERVER" ] || { cat "$work/server.err" >&2; exit 1; }
agent_token=$("$runner" --data-dir "$work/pool-server" server token create --role agent --name demo-agent | tail -n1)
submit_token=$("$runner" --data-dir "$work/pool-server" server token create --role submit --name demo | tail -n1)
RUNNER_TOKEN=$agent_token "$runner" --data-dir "$work/pool-agent" agent --name demo-agent >"$work/agent.log" 2>&1 &
agent_pid=$!
pids+=($agent_pid)
job=$(RUNNER_TOKEN=$submit_token "$runner" submit --source fixtures/sample-app)
RUNNER_TOKEN=$submit_token "$runner" jobs logs "$job" --follow | tail -n 25
RUNNER_TOKEN=$submit_token "$runner" jobs show "$job"
RUNNER_TOKEN=$submit_token "$runner" jobs artifacts "$job" --download "$out/pool-$job" >&2
state=$(RUNNER_TOKEN=$submit_token "$runner" jobs show "$job" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
# SIGTERM drains the agent (no job is running now); it exits by itself.
kill -TERM "$agent_pid"
[ "$state" = succeeded ] || { echo "demo: the pool's build ended $state (agent log: $work/agent.log)" >&2; exit 1; }

echo "demo: artifacts in $out:" >&2
find "$out" -type f | sort >&2
