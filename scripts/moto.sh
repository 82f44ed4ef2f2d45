#!/usr/bin/env bash
# The local AWS stand-in (moto in server mode) for the demo: start it on loopback, seed the
# sample app's parameter and secret, print the endpoint. `scripts/moto.sh stop` stops it.
#   eval "$(bash scripts/moto.sh start)"   # exports AWS_ENDPOINT_URL and test credentials
set -euo pipefail
port=${RUNNER_MOTO_PORT:-4566}
state=${XDG_RUNTIME_DIR:-/tmp}/runner-moto.pid
endpoint="http://127.0.0.1:$port"

case ${1:-start} in
stop)
	if [ -f "$state" ]; then kill "$(cat "$state")" 2>/dev/null || true; rm -f "$state"; fi
	exit 0
	;;
start) ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac

if ! curl -fsS "$endpoint/moto-api/" >/dev/null 2>&1; then
	python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install --quiet 'moto[server]>=5,<6' >&2
	nohup python3 -m moto.server -H 127.0.0.1 -p "$port" >"${state%.pid}.log" 2>&1 &
	echo $! >"$state"
	for _ in $(seq 1 50); do
		curl -fsS "$endpoint/moto-api/" >/dev/null 2>&1 && break
		sleep 0.2
	done
fi

AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
	python3 - <<'PY' >&2
import json, boto3
ssm = boto3.client("ssm")
sm = boto3.client("secretsmanager")
ssm.put_parameter(Name="/sample-app/api-token", Value="demo-token-7f3a9c21e4", Type="SecureString", Overwrite=True)
try:
    sm.create_secret(Name="sample-app/db", SecretString=json.dumps({"username": "app", "password": "demo-db-pass-5b8e"}))
except sm.exceptions.ResourceExistsException:
    pass
print("moto: seeded /sample-app/api-token and sample-app/db")
PY

cat <<ENV
export AWS_ENDPOINT_URL=$endpoint
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
ENV
