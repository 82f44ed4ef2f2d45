#!/usr/bin/env bash
# Self-test of tests/it/cosign_indep.py against real registries from scripts/registry.sh
# (one without auth, one with the ECR-style htpasswd user), using docker to push
# runner/busybox:latest (built by scripts/setup.sh, which this runs if it is missing).
#
#   bash tests/it/cosign_indep_selftest.sh
#
# environment: SELFTEST_PORT (default 5070; PORT+1 is the htpasswd registry).
# The registries get their own state/data dirs under a temp dir and are stopped at exit.
# Ends with "N passed, N failed"; exit 0 only if nothing failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOL=$ROOT/tests/it/cosign_indep.py
PORT=${SELFTEST_PORT:-5070}
APORT=$((PORT + 1))
USER_=AWS
PASS_=${RUNNER_ECR_ACCOUNT:-123456789012}-auth-token
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cosign-selftest.XXXXXX")
export RUNNER_REGISTRY_STATE=$TMP/registry
passed=0 failed=0

cleanup() {
	bash "$ROOT/scripts/registry.sh" stop >/dev/null 2>&1 || true
	docker logout "127.0.0.1:$APORT" >/dev/null 2>&1 || true
	docker rmi "127.0.0.1:$PORT/selftest/busybox:latest" "127.0.0.1:$APORT/selftest/busybox:latest" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
die() { printf 'selftest: error: %s\n' "$*" >&2; exit 2; }

# expect RC DESCRIPTION [STDERR-PATTERN] -- cmd...: run cmd, check exit code (and stderr).
expect() {
	local want=$1 desc=$2 pat=${3:-}
	shift 3
	[ "${1:-}" = "--" ] && shift
	"$@" >"$TMP/out" 2>"$TMP/err"
	local rc=$?
	if [ "$rc" != "$want" ]; then
		bad "$desc: exit $rc, want $want"
		sed 's/^/     | /' "$TMP/err" | tail -n 5
		return 1
	fi
	if [ -n "$pat" ] && ! grep -qE -- "$pat" "$TMP/err"; then
		bad "$desc: stderr lacks /$pat/"
		sed 's/^/     | /' "$TMP/err" | tail -n 5
		return 1
	fi
	ok "$desc${pat:+ (stderr: $(head -c 160 "$TMP/err" | tr '\n' ' '))}"
}

ci() { python3 "$TOOL" "$@"; }

# --- prerequisites ------------------------------------------------------------
python3 -c 'import cryptography, nacl' 2>/dev/null ||
	python3 -m pip install --quiet --disable-pip-version-check cryptography PyNaCl >&2 ||
	die "pip install cryptography PyNaCl failed"
if ! docker image inspect runner/busybox:latest >/dev/null 2>&1; then
	bash "$ROOT/scripts/setup.sh" >&2 || die "scripts/setup.sh failed"
fi
docker image inspect runner/busybox:latest >/dev/null 2>&1 || die "no runner/busybox:latest image"

bash "$ROOT/scripts/registry.sh" start --port "$PORT" >/dev/null || die "registry on $PORT did not start"
bash "$ROOT/scripts/registry.sh" start --port "$APORT" --htpasswd >/dev/null || die "registry on $APORT did not start"

R=127.0.0.1:$PORT
A=127.0.0.1:$APORT
IMG=$R/selftest/busybox:latest
{ docker tag runner/busybox:latest "$IMG" && docker push "$IMG" >/dev/null; } || die "docker push $IMG failed"
ok "docker push to the no-auth registry"
docker logout "$A" >/dev/null 2>&1 || true
expect 1 "docker push without login refused by the htpasswd registry" "" -- \
	sh -c "docker tag runner/busybox:latest $A/selftest/busybox:latest && docker push $A/selftest/busybox:latest"
echo "$PASS_" | docker login "$A" -u "$USER_" --password-stdin >/dev/null 2>&1 || die "docker login $A failed"
docker push "$A/selftest/busybox:latest" >/dev/null || die "docker push to $A failed"
ok "docker login -u AWS -p $PASS_ + push to the htpasswd registry"
DIGEST=$(python3 -c "
import sys; sys.path.insert(0, '$ROOT/tests/it'); import cosign_indep as c
print(c.Registry('$R').resolve(c.parse_ref('$IMG')))")
HEX=${DIGEST#sha256:}

# --- keys -----------------------------------------------------------------------
export COSIGN_PASSWORD=selftest-pw
{ ci generate-key-pair --output-dir "$TMP/a" >/dev/null && ci generate-key-pair --output-dir "$TMP/b" >/dev/null; } ||
	die "generate-key-pair failed"
if head -1 "$TMP/a/cosign.key" | grep -qx -- '-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----' &&
	head -1 "$TMP/a/cosign.pub" | grep -qx -- '-----BEGIN PUBLIC KEY-----' &&
	python3 - "$TMP/a/cosign.key" <<'PY'; then
import base64, json, sys
lines = open(sys.argv[1]).read().split("\n")
d = json.loads(base64.b64decode("".join(lines[1:-2])))
assert list(d) == ["kdf", "cipher", "ciphertext"], list(d)
assert d["kdf"]["name"] == "scrypt" and d["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}, d["kdf"]
assert len(base64.b64decode(d["kdf"]["salt"])) == 32 and len(base64.b64decode(d["cipher"]["nonce"])) == 24
assert d["cipher"]["name"] == "nacl/secretbox"
PY
	ok "key pair format (SIGSTORE PEM, scrypt N=65536 r=8 p=1, 32-byte salt, 24-byte nonce)"
else
	bad "key pair format"
fi
expect 0 "public-key re-derives cosign.pub" "" -- sh -c "python3 '$TOOL' public-key --key '$TMP/a/cosign.key' | cmp -s - '$TMP/a/cosign.pub'"
expect 2 "wrong COSIGN_PASSWORD refused" "decryption failed" -- env COSIGN_PASSWORD=nope python3 "$TOOL" public-key --key "$TMP/a/cosign.key"

# --- sign / verify --------------------------------------------------------------
expect 1 "verify before signing: no signatures" "no signatures found" -- ci verify --key "$TMP/a/cosign.pub" "$IMG"
expect 0 "sign with key A" "" -- ci sign --key "$TMP/a/cosign.key" "$IMG"
expect 0 "verify (tag ref) with key A" "" -- ci verify --key "$TMP/a/cosign.pub" "$IMG"
if grep -q "\"digest\": \"$DIGEST\"" "$TMP/out"; then ok "verify summary names the image digest"; else bad "verify summary lacks $DIGEST"; fi
expect 0 "verify (digest ref) with key A" "" -- ci verify --key "$TMP/a/cosign.pub" "$R/selftest/busybox@$DIGEST"
expect 0 "verify --identity $R/selftest/busybox" "" -- ci verify --key "$TMP/a/cosign.pub" --identity "$R/selftest/busybox" "$IMG"
expect 1 "verify --identity of another repo" "docker-reference" -- ci verify --key "$TMP/a/cosign.pub" --identity "$R/other" "$IMG"
expect 1 "verify with key B (wrong key)" "does not verify with the given public key" -- ci verify --key "$TMP/b/cosign.pub" "$IMG"

# signature manifest layout, byte for byte where cosign fixes it
if python3 - "$R" "$HEX" <<'PY'; then
import json, sys, urllib.request
reg, hexd = sys.argv[1], sys.argv[2]
req = urllib.request.Request(f"http://{reg}/v2/selftest/busybox/manifests/sha256-{hexd}.sig",
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
m = json.loads(urllib.request.urlopen(req).read())
assert m["schemaVersion"] == 2 and m["mediaType"] == "application/vnd.oci.image.manifest.v1+json", m
assert m["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json", m
(l,) = m["layers"]
assert l["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json", l
assert list(l["annotations"]) == ["dev.cosignproject.cosign/signature"], l
p = urllib.request.urlopen(f"http://{reg}/v2/selftest/busybox/blobs/{l['digest']}").read()
want = ('{"critical":{"identity":{"docker-reference":"%s/selftest/busybox"},"image":{"docker-manifest-digest":'
        '"sha256:%s"},"type":"cosign container image signature"},"optional":null}') % (reg, hexd)
assert p == want.encode(), p
PY
	ok "signature manifest layout and exact simple-signing payload bytes"
else
	bad "signature manifest layout"
fi

expect 0 "sign again with key B (appends a layer)" "" -- ci sign --key "$TMP/b/cosign.key" "$IMG"
if grep -q '"layers": 2' "$TMP/out"; then ok "signature manifest now has 2 layers"; else bad "append: $(cat "$TMP/out")"; fi
expect 0 "verify with key B after append" "" -- ci verify --key "$TMP/b/cosign.pub" "$IMG"
expect 0 "verify with key A after append" "" -- ci verify --key "$TMP/a/cosign.pub" "$IMG"
expect 0 "re-sign with key A is a duplicate" "" -- ci sign --key "$TMP/a/cosign.key" "$IMG"
if grep -q '"appended": false' "$TMP/out"; then ok "duplicate signature not appended"; else bad "dupe: $(cat "$TMP/out")"; fi

# --- tampering --------------------------------------------------------------------
# A second, different image (tiny OCI image pushed through the API) to move signatures onto.
OTHER=$(python3 - "$R" "$ROOT/tests/it" <<'PY'
import sys; sys.path.insert(0, sys.argv[2]); import cosign_indep as c
r = c.Registry(sys.argv[1]); repo = "selftest/other"
layer = r.put_blob(repo, b"not really a tarball")
cfg = c.go_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}})
cd = r.put_blob(repo, cfg)
m = c.go_json({"schemaVersion": 2, "mediaType": c.OCI_MANIFEST_MT,
               "config": {"mediaType": c.OCI_CONFIG_MT, "size": len(cfg), "digest": cd},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 20, "digest": layer}]})
print(r.put_manifest(repo, "v1", m, c.OCI_MANIFEST_MT))
PY
) || die "pushing the second image failed"
OIMG=$R/selftest/other:v1
expect 1 "unsigned second image" "no signatures found" -- ci verify --key "$TMP/a/cosign.pub" "$OIMG"
expect 0 "sign second image with a payload claiming the first image's digest" "" -- \
	ci sign --key "$TMP/a/cosign.key" --claimed-digest "$DIGEST" "$OIMG"
expect 1 "signature for another digest refused" "payload is for $DIGEST, not the image digest" -- \
	ci verify --key "$TMP/a/cosign.pub" "$OIMG"

# Copy the first image's genuine signature manifest (and blobs) onto the second image's .sig tag.
if python3 - "$R" "$ROOT/tests/it" "$HEX" "$OTHER" <<'PY'; then
import json, sys; sys.path.insert(0, sys.argv[2]); import cosign_indep as c
r = c.Registry(sys.argv[1]); hexd, other = sys.argv[3], sys.argv[4]
body, mt, _ = r.get_manifest("selftest/busybox", f"sha256-{hexd}.sig")
m = json.loads(body)
for d in [m["config"]] + m["layers"]:
    r.put_blob("selftest/other", r.get_blob("selftest/busybox", d["digest"]))
r.put_manifest("selftest/other", c.sig_tag(other), body, mt)
PY
	expect 1 "genuine signature copied onto another image refused" "not the image digest" -- \
		ci verify --key "$TMP/a/cosign.pub" "$OIMG"
else
	bad "could not copy the signature manifest"
fi

# Same signature, payload changed (docker-manifest-digest swapped to the other image's).
if python3 - "$R" "$ROOT/tests/it" "$HEX" "$OTHER" <<'PY'; then
import json, sys; sys.path.insert(0, sys.argv[2]); import cosign_indep as c
r = c.Registry(sys.argv[1]); hexd, other = sys.argv[3], sys.argv[4]
body, mt, _ = r.get_manifest("selftest/busybox", f"sha256-{hexd}.sig")
m = json.loads(body)
layers = []
for l in m["layers"]:
    p = r.get_blob("selftest/busybox", l["digest"]).replace(("sha256:" + hexd).encode(), other.encode())
    layers.append(dict(l, size=len(p), digest=r.put_blob("selftest/other", p)))
cfg = c._empty_sig_config([l["digest"] for l in layers])
m2 = dict(m, layers=layers, config=dict(m["config"], size=len(cfg), digest=r.put_blob("selftest/other", cfg)))
r.put_manifest("selftest/other", c.sig_tag(other), c.go_json(m2), c.OCI_MANIFEST_MT)
PY
	expect 1 "payload edited under a genuine signature refused" "signature does not verify" -- \
		ci verify --key "$TMP/a/cosign.pub" "$OIMG"
else
	bad "could not forge the edited payload"
fi

# --- attestations -------------------------------------------------------------------
echo '{"buildType":"https://example.invalid/runner@v1","builder":{"id":"runner"}}' >"$TMP/pred.json"
expect 1 "verify-attestation before attesting" "no attestations found" -- ci verify-attestation --key "$TMP/a/cosign.pub" "$IMG"
expect 0 "attest slsaprovenance with key A" "" -- ci attest --key "$TMP/a/cosign.key" --type slsaprovenance --predicate "$TMP/pred.json" "$IMG"
expect 0 "verify-attestation --type slsaprovenance" "" -- ci verify-attestation --key "$TMP/a/cosign.pub" --type slsaprovenance "$IMG"
if grep -q 'https://slsa.dev/provenance/v0.2' "$TMP/out"; then ok "predicate type printed"; else bad "predicate type not printed"; fi
expect 1 "verify-attestation --type cyclonedx (absent)" "is not 'https://cyclonedx.org/bom'" -- \
	ci verify-attestation --key "$TMP/a/cosign.pub" --type cyclonedx "$IMG"
expect 1 "verify-attestation with key B" "no DSSE signature verifies" -- ci verify-attestation --key "$TMP/b/cosign.pub" "$IMG"
expect 2 "verify-attestation with a bad --type" "invalid predicate type" -- ci verify-attestation --key "$TMP/a/cosign.pub" --type nosuch "$IMG"

# --- htpasswd (ECR-style) registry ---------------------------------------------------
AIMG=$A/selftest/busybox:latest
expect 2 "sign on the auth registry without credentials" "wants basic auth" -- ci sign --key "$TMP/a/cosign.key" "$AIMG"
expect 0 "sign on the auth registry as AWS/$PASS_" "" -- \
	ci sign --key "$TMP/a/cosign.key" --registry-user "$USER_" --registry-password "$PASS_" "$AIMG"
expect 0 "verify on the auth registry" "" -- \
	ci verify --key "$TMP/a/cosign.pub" --registry-user "$USER_" --registry-password "$PASS_" "$AIMG"
expect 0 "verify on the auth registry (credentials from REGISTRY_USER/PASSWORD)" "" -- \
	env REGISTRY_USER="$USER_" REGISTRY_PASSWORD="$PASS_" python3 "$TOOL" verify --key "$TMP/a/cosign.pub" "$AIMG"
expect 1 "verify on the auth registry with key B" "does not verify" -- \
	ci verify --key "$TMP/b/cosign.pub" --registry-user "$USER_" --registry-password "$PASS_" "$AIMG"
expect 2 "wrong registry password" "HTTP 401" -- \
	ci verify --key "$TMP/a/cosign.pub" --registry-user "$USER_" --registry-password wrong "$AIMG"

# --- older key flavour ---------------------------------------------------------------------
expect 0 "generate an old-style key (COSIGN PEM type, N=32768)" "" -- \
	ci generate-key-pair --output-dir "$TMP/c" --pem-type cosign --scrypt-n 32768
if head -1 "$TMP/c/cosign.key" | grep -qx -- '-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----'; then ok "COSIGN PEM type written"; else bad "COSIGN PEM type"; fi
expect 0 "sign with the old-style key" "" -- ci sign --key "$TMP/c/cosign.key" "$IMG"
expect 0 "verify with the old-style key" "" -- ci verify --key "$TMP/c/cosign.pub" "$IMG"

# --- usage errors -------------------------------------------------------------------------
expect 2 "missing key file" "cannot read" -- ci verify --key "$TMP/nope.pub" "$IMG"
expect 2 "bad image reference" "bad digest" -- ci verify --key "$TMP/a/cosign.pub" "$R/x@sha256:zz"
expect 2 "no subcommand" "" -- ci

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
