//! cosign's newer signature format (`cosign sign --new-bundle-format`, the default in
//! cosign 3): a Sigstore bundle (`application/vnd.dev.sigstore.bundle.v0.3+json`) whose
//! content is a DSSE envelope over an in-toto statement with predicate type
//! `https://sigstore.dev/cosign/sign/v1` and the image's digest as its subject, signed
//! over the DSSE pre-authentication encoding.
//!
//! The bundle is the one layer of an OCI 1.1 artifact manifest (`artifactType` the
//! bundle's media type, an empty `{}` config, `subject` the signed image) found through
//! the referrers API (`GET /v2/<name>/referrers/<digest>`), or, on a registry without
//! it (distribution 2.8), through the referrers tag schema: tag `sha256-<hex>` holds an
//! image index listing the referrers. Writing uses the same two paths: a registry that
//! answers the manifest's PUT with `OCI-Subject` indexed it itself; otherwise the tag's
//! index is updated.
//!
//! With a key (no Fulcio certificate), the verification material is a public-key hint
//! and no transparency-log entry is required: the signature by the given key is what is
//! checked, as `cosign verify --key` does with `--insecure-ignore-tlog`.

use super::cosign::{pae, Signed};
use super::error::SignError;
use super::keys::{SigningKey, VerifyingKey};
use crate::publish::reference::{short_digest, ImageRef};
use crate::publish::registry::{Registry, OCI_INDEX, OCI_MANIFEST};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::BTreeMap;

/// The media type cosign writes (and the prefix every bundle version shares).
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// The media types a bundle's `mediaType` may have (protobuf-specs' list).
const BUNDLE_MEDIA_TYPES: &[&str] = &[
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    BUNDLE_V03,
];
/// The predicate type of an image signature in a bundle.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPES: &[&str] = &[
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];
/// The OCI empty descriptor's media type and content.
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_JSON: &[u8] = b"{}";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How `runner sign` attaches a signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignatureFormat {
    /// cosign's classic layout: a simple-signing payload at tag `sha256-<hex>.sig`.
    #[default]
    Sig,
    /// A Sigstore bundle attached as an OCI referrer (cosign `--new-bundle-format`).
    Bundle,
}

impl SignatureFormat {
    /// `sig` or `bundle`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sig" => Some(Self::Sig),
            "bundle" => Some(Self::Bundle),
            _ => None,
        }
    }
}

/// `sha256:abc` → `sha256-abc`: the referrers tag schema's tag.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Standard base64 as protobuf JSON writes it; URL-safe and unpadded forms are read too.
fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    B64.decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .ok()
}

/// The in-toto statement cosign signs for an image: its digest as the only subject
/// (annotations there, when given), an empty predicate.
pub fn statement(digest: &str, annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    let mut subject = json!({"digest": {algorithm: hex}});
    if !annotations.is_empty() {
        subject["annotations"] = json!(annotations);
    }
    serde_json::to_vec(&json!({
        "_type": STATEMENT_TYPES[0],
        "subject": [subject],
        "predicateType": COSIGN_SIGN_PREDICATE,
        "predicate": {},
    }))
    .unwrap_or_default()
}

/// The public key's hint: base64 of SHA-256 of its DER (SubjectPublicKeyInfo).
fn key_hint(public_pem: &str) -> String {
    let body: String = public_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = B64.decode(body.trim()).unwrap_or_default();
    B64.encode(sha2::Sha256::digest(&der))
}

/// A bundle (v0.3) of `digest`'s signature statement signed by `key`.
pub fn make_bundle(
    digest: &str,
    key: &SigningKey,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, SignError> {
    let st = statement(digest, annotations);
    let sig = key.sign(&pae(IN_TOTO, &st))?;
    let bundle = json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {
            "publicKey": {"hint": key_hint(&key.public_pem()?)},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": B64.encode(&st),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": B64.encode(sig)}],
        },
    });
    Ok(serde_json::to_vec(&bundle).unwrap_or_default())
}

/// Checks one bundle: a DSSE envelope signed by `key` over an in-toto statement whose
/// subject is `digest` and whose predicate type is cosign's signature. `Err` says why
/// not.
pub fn verify_bundle(bytes: &[u8], digest: &str, key: &VerifyingKey) -> Result<(), String> {
    let b: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("is not a JSON bundle ({e})"))?;
    let media_type = b["mediaType"].as_str().unwrap_or("");
    if !BUNDLE_MEDIA_TYPES.contains(&media_type) {
        return Err(format!(
            "has the media type {media_type:?}, not a Sigstore bundle's"
        ));
    }
    let env = &b["dsseEnvelope"];
    if env.is_null() {
        return Err(if b["messageSignature"].is_null() {
            "holds neither a DSSE envelope nor a message signature".to_string()
        } else {
            "holds a message signature (a blob's), not a DSSE envelope over the image".to_string()
        });
    }
    let payload_type = env["payloadType"].as_str().unwrap_or("");
    if payload_type != IN_TOTO {
        return Err(format!(
            "envelope's payload type is {payload_type:?}, not {IN_TOTO}"
        ));
    }
    let payload = env["payload"]
        .as_str()
        .and_then(unb64)
        .ok_or("envelope has no base64 payload")?;
    let signed = env["signatures"].as_array().into_iter().flatten().any(|s| {
        s["sig"]
            .as_str()
            .and_then(unb64)
            .is_some_and(|sig| key.verify(&pae(payload_type, &payload), &sig))
    });
    if !signed {
        return Err("signature does not verify with this public key".to_string());
    }
    let st: Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("signed payload is not an in-toto statement ({e})"))?;
    if !STATEMENT_TYPES.contains(&st["_type"].as_str().unwrap_or("")) {
        return Err(format!("signed payload's _type is {}", st["_type"]));
    }
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    let about_this = st["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["digest"][algorithm].as_str() == Some(hex));
    if !about_this {
        return Err(format!("signed statement is not about {digest}"));
    }
    let pt = st["predicateType"].as_str().unwrap_or("");
    if pt != COSIGN_SIGN_PREDICATE {
        return Err(format!(
            "is an attestation of type {pt:?}, not a signature ({COSIGN_SIGN_PREDICATE})"
        ));
    }
    Ok(())
}

/// The descriptors of `digest`'s referrers: through the referrers API when the
/// registry offers it, else from the referrers tag's index. `None` when neither exists.
pub async fn referrers(
    registry: &Registry,
    repo: &str,
    digest: &str,
) -> Result<Option<Vec<Value>>, SignError> {
    let index = match registry.get_referrers(repo, digest).await? {
        Some(bytes) => bytes,
        None => match registry.get_manifest(repo, &referrers_tag(digest)).await? {
            Some(m) => m.bytes,
            None => return Ok(None),
        },
    };
    let index: Value = serde_json::from_slice(&index).unwrap_or(Value::Null);
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let limit = registry.limits().max_attachment_layers;
    if manifests.len() > limit {
        return Err(SignError::TooManyLayers {
            reference: format!("the referrers of {}/{repo}@{digest}", registry.registry()),
            layers: manifests.len(),
            limit,
        });
    }
    Ok(Some(manifests))
}

/// The bundles attached to `digest` (each with the digest of its referrer manifest, or
/// the reason it could not be read), at most `max_signature` bytes each and
/// `max_attachments_total` together.
async fn read_bundles(
    registry: &Registry,
    repo: &str,
    digest: &str,
) -> Result<Option<Vec<(String, Result<Vec<u8>, String>)>>, SignError> {
    let Some(descriptors) = referrers(registry, repo, digest).await? else {
        return Ok(None);
    };
    let limits = *registry.limits();
    let mut budget = limits.max_attachments_total;
    let mut out = Vec::new();
    for d in descriptors {
        let artifact_type = d["artifactType"].as_str();
        if artifact_type.is_some_and(|t| !t.starts_with(BUNDLE_PREFIX)) {
            continue;
        }
        let Some(mdigest) = d["digest"].as_str() else {
            continue;
        };
        let Some(m) = registry.get_manifest(repo, mdigest).await? else {
            out.push((mdigest.to_string(), Err("is listed but missing".into())));
            continue;
        };
        let manifest: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
        if manifest["subject"]["digest"].as_str() != Some(digest) {
            out.push((mdigest.to_string(), Err(format!("has no subject {digest}"))));
            continue;
        }
        let layer = manifest["layers"].as_array().and_then(|ls| {
            ls.iter().find(|l| {
                l["mediaType"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(BUNDLE_PREFIX))
            })
        });
        let Some(blob_digest) = layer.and_then(|l| l["digest"].as_str()) else {
            // Another kind of referrer without an artifactType in the index.
            continue;
        };
        let cap = limits.max_signature.min(budget);
        if layer
            .and_then(|l| l["size"].as_u64())
            .is_some_and(|s| s > cap)
        {
            return Err(crate::publish::PublishError::TooLarge {
                registry: registry.registry().to_string(),
                what: format!(
                    "bundle {blob_digest} of {}/{repo}@{mdigest}",
                    registry.registry()
                ),
                limit: cap,
            }
            .into());
        }
        let blob = registry.get_blob(repo, blob_digest, cap).await?;
        budget = budget.saturating_sub(blob.len() as u64);
        out.push((mdigest.to_string(), Ok(blob)));
    }
    Ok(Some(out))
}

/// Bundle-format signatures of `digest` by `key`: how many verify, and why each other
/// one does not (a missing referrers index is a reason too).
pub async fn verify_bundles(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &VerifyingKey,
) -> Result<(usize, Vec<String>), SignError> {
    let Some(bundles) = read_bundles(registry, &image.repository, digest).await? else {
        return Ok((
            0,
            vec![format!(
                "no Sigstore bundle among the referrers (neither the referrers API nor tag {} lists one)",
                referrers_tag(digest)
            )],
        ));
    };
    let mut valid = 0;
    let mut reasons = Vec::new();
    for (mdigest, bytes) in &bundles {
        match bytes
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|b| verify_bundle(b, digest, key))
        {
            Ok(()) => valid += 1,
            Err(why) => reasons.push(format!("bundle in {} {why}", short_digest(mdigest))),
        }
    }
    if bundles.is_empty() {
        reasons.push(format!(
            "no Sigstore bundle among the referrers listed for {}",
            short_digest(digest)
        ));
    }
    Ok((valid, reasons))
}

/// Signs `digest` as a bundle and attaches it as a referrer (cosign
/// `--new-bundle-format`): the artifact manifest is pushed by digest, and the referrers
/// tag's index is updated unless the registry indexed the subject itself.
pub async fn sign(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &SigningKey,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    let repo = &image.repository;
    let subject = registry.get_manifest(repo, digest).await?.ok_or_else(|| {
        crate::publish::PublishError::NotFound {
            reference: format!("{}@{digest}", image.name()),
        }
    })?;
    let bundle = make_bundle(digest, key, annotations)?;
    let bundle_digest = registry.push_blob_bytes(repo, &bundle).await?;
    let config_digest = registry.push_blob_bytes(repo, EMPTY_JSON).await?;
    let manifest_annotations = json!({
        "dev.sigstore.bundle.content": "dsse-envelope",
        "dev.sigstore.bundle.predicateType": COSIGN_SIGN_PREDICATE,
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": {"mediaType": OCI_EMPTY, "digest": config_digest, "size": EMPTY_JSON.len()},
        "layers": [{"mediaType": BUNDLE_V03, "digest": bundle_digest, "size": bundle.len()}],
        "subject": {"mediaType": subject.media_type, "digest": digest, "size": subject.bytes.len()},
        "annotations": manifest_annotations,
    });
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    let manifest_digest = crate::publish::reference::sha256_digest(&bytes);
    let (_, indexed) = registry
        .put_manifest_subject(repo, &manifest_digest, OCI_MANIFEST, &bytes)
        .await?;
    let mut referrers_tag_written = None;
    if !indexed {
        let tag = referrers_tag(digest);
        let mut manifests: Vec<Value> = match registry.get_manifest(repo, &tag).await? {
            Some(m) => serde_json::from_slice::<Value>(&m.bytes)
                .ok()
                .and_then(|v| v["manifests"].as_array().cloned())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if !manifests
            .iter()
            .any(|d| d["digest"].as_str() == Some(&manifest_digest))
        {
            manifests.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": bytes.len(),
                "artifactType": BUNDLE_V03,
                "annotations": manifest_annotations,
            }));
            let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
            let index = serde_json::to_vec(&index).unwrap_or_default();
            registry.put_manifest(repo, &tag, OCI_INDEX, &index).await?;
        }
        referrers_tag_written = Some(format!("{}:{tag}", image.name()));
    }
    Ok(Signed {
        image: format!("{}@{digest}", image.name()),
        signature_tag: referrers_tag_written
            .unwrap_or_else(|| format!("{}@{manifest_digest}", image.name())),
        payload_digest: bundle_digest,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::publish::auth::{Credentials, Static};
    use crate::publish::registry::{Endpoints, RetryPolicy};
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn edit(bundle: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(bundle).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_bundle_verifies_and_tampered_ones_do_not() {
        let key = SigningKey::generate().unwrap();
        let public = key.verifying_key().unwrap();
        let b = make_bundle(DIGEST, &key, &BTreeMap::new()).unwrap();
        verify_bundle(&b, DIGEST, &public).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["mediaType"], BUNDLE_V03);
        assert_eq!(v["dsseEnvelope"]["payloadType"], IN_TOTO);

        let other = format!("sha256:{}", "f".repeat(64));
        let err = verify_bundle(&b, &other, &public).unwrap_err();
        assert!(err.contains("not about"), "{err}");
        let stranger = SigningKey::generate().unwrap().verifying_key().unwrap();
        let err = verify_bundle(&b, DIGEST, &stranger).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        // The signature changed, or the statement changed under it.
        let flipped = edit(&b, |v| {
            let mut sig = B64
                .decode(v["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap())
                .unwrap();
            let last = sig.len() - 1;
            sig[last] ^= 1;
            v["dsseEnvelope"]["signatures"][0]["sig"] = json!(B64.encode(sig));
        });
        assert!(verify_bundle(&flipped, DIGEST, &public).is_err());
        let moved = edit(&b, |v| {
            v["dsseEnvelope"]["payload"] = json!(B64.encode(statement(&other, &BTreeMap::new())));
        });
        let err = verify_bundle(&moved, &other, &public).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        let not_bundle = edit(&b, |v| v["mediaType"] = json!("application/json"));
        assert!(verify_bundle(&not_bundle, DIGEST, &public).is_err());
        // An attestation bundle signed by the key is not a signature.
        let st = serde_json::to_vec(&json!({
            "_type": STATEMENT_TYPES[0],
            "subject": [{"digest": {"sha256": &DIGEST[7..]}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {},
        }))
        .unwrap();
        let sig = key.sign(&pae(IN_TOTO, &st)).unwrap();
        let att = edit(&b, |v| {
            v["dsseEnvelope"]["payload"] = json!(B64.encode(&st));
            v["dsseEnvelope"]["signatures"][0]["sig"] = json!(B64.encode(sig));
        });
        let err = verify_bundle(&att, DIGEST, &public).unwrap_err();
        assert!(err.contains("attestation"), "{err}");
        assert_eq!(referrers_tag(DIGEST), format!("sha256-{}", &DIGEST[7..]));
        assert_eq!(
            SignatureFormat::parse("bundle"),
            Some(SignatureFormat::Bundle)
        );
        assert_eq!(SignatureFormat::parse("sig"), Some(SignatureFormat::Sig));
        assert_eq!(SignatureFormat::parse("x"), None);
    }

    /// An in-memory registry for one repository (`app`): blobs, manifests by tag and by
    /// digest, and, with `api`, the OCI 1.1 referrers API (`OCI-Subject` on a PUT of a
    /// manifest with a subject, `GET /v2/app/referrers/<digest>`); without it, 404 there
    /// as distribution 2.8 answers.
    #[derive(Default)]
    struct Fake {
        api: bool,
        blobs: HashMap<String, Vec<u8>>,
        manifests: HashMap<String, (String, Vec<u8>)>,
        log: Vec<String>,
    }

    async fn handle(
        axum::extract::State(st): axum::extract::State<Arc<Mutex<Fake>>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut f = st.lock().unwrap();
        let path = uri.path().to_string();
        f.log.push(format!("{method} {path}"));
        let digest_of = |b: &[u8]| crate::publish::reference::sha256_digest(b);
        if path == "/v2/" {
            return StatusCode::OK.into_response();
        }
        if let Some(d) = path.strip_prefix("/v2/app/blobs/uploads/") {
            if method == Method::POST {
                return (
                    StatusCode::ACCEPTED,
                    [("Location", "/v2/app/blobs/uploads/u1")],
                )
                    .into_response();
            }
            let want = uri
                .query()
                .and_then(|q| q.strip_prefix("digest="))
                .unwrap_or_default()
                .replace("%3A", ":");
            assert_eq!(d, "u1");
            assert_eq!(digest_of(&body), want);
            f.blobs.insert(want, body.to_vec());
            return StatusCode::CREATED.into_response();
        }
        if let Some(d) = path.strip_prefix("/v2/app/blobs/") {
            return match f.blobs.get(d) {
                Some(b) if method == Method::HEAD => {
                    (StatusCode::OK, [("Content-Length", b.len().to_string())]).into_response()
                }
                Some(b) => (StatusCode::OK, b.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            };
        }
        if let Some(r) = path.strip_prefix("/v2/app/manifests/") {
            if method == Method::PUT {
                let mt = headers
                    .get("Content-Type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let d = digest_of(&body);
                f.manifests
                    .insert(r.to_string(), (mt.clone(), body.to_vec()));
                f.manifests.insert(d.clone(), (mt, body.to_vec()));
                let v: Value = serde_json::from_slice(&body).unwrap();
                let mut resp =
                    (StatusCode::CREATED, [("Docker-Content-Digest", d)]).into_response();
                if f.api && v["subject"]["digest"].is_string() {
                    let s = v["subject"]["digest"].as_str().unwrap();
                    resp.headers_mut().insert("OCI-Subject", s.parse().unwrap());
                }
                return resp;
            }
            return match f.manifests.get(r) {
                Some((mt, b)) => {
                    (StatusCode::OK, [("Content-Type", mt.clone())], b.clone()).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            };
        }
        if let Some(d) = path.strip_prefix("/v2/app/referrers/") {
            if !f.api {
                return StatusCode::NOT_FOUND.into_response();
            }
            let mut seen = std::collections::BTreeSet::new();
            let manifests: Vec<Value> = f
                .manifests
                .values()
                .filter_map(|(mt, b)| {
                    let v: Value = serde_json::from_slice(b).ok()?;
                    (v["subject"]["digest"] == d && seen.insert(digest_of(b))).then(|| {
                        json!({"mediaType": mt, "digest": digest_of(b), "size": b.len(),
                               "artifactType": v["artifactType"]})
                    })
                })
                .collect();
            let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
            return (
                StatusCode::OK,
                [("Content-Type", OCI_INDEX)],
                serde_json::to_vec(&index).unwrap(),
            )
                .into_response();
        }
        StatusCode::NOT_FOUND.into_response()
    }

    /// Signs an image in the bundle format on the fake and verifies it back; returns the
    /// fake's request log and whether the referrers tag exists.
    async fn sign_and_verify(api: bool) -> (Vec<String>, bool) {
        let state = Arc::new(Mutex::new(Fake {
            api,
            ..Fake::default()
        }));
        let image_manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        let digest = crate::publish::reference::sha256_digest(image_manifest);
        state.lock().unwrap().manifests.insert(
            digest.clone(),
            (OCI_MANIFEST.to_string(), image_manifest.to_vec()),
        );
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let host = addr.to_string();
        let registry = Registry::new(
            &host,
            &Endpoints::default(),
            Arc::new(Static(Credentials::Anonymous)),
            RetryPolicy::default(),
        )
        .unwrap();
        let image = ImageRef::parse(&format!("{host}/app:1")).unwrap();
        let key = SigningKey::generate().unwrap();
        let public = key.verifying_key().unwrap();

        let (valid, reasons) = verify_bundles(&registry, &image, &digest, &public)
            .await
            .unwrap();
        assert_eq!(valid, 0, "{reasons:?}");
        let signed = sign(&registry, &image, &digest, &key, &BTreeMap::new())
            .await
            .unwrap();
        let (valid, reasons) = verify_bundles(&registry, &image, &digest, &public)
            .await
            .unwrap();
        assert_eq!(valid, 1, "{reasons:?}");
        // The classic check and the bundle check together: one valid signature.
        assert_eq!(
            crate::sign::cosign::verify(&registry, &image, &digest, &public)
                .await
                .unwrap(),
            1
        );
        let stranger = SigningKey::generate().unwrap().verifying_key().unwrap();
        let err = crate::sign::cosign::verify(&registry, &image, &digest, &stranger)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not verify with this public key"),
            "{err}"
        );
        let f = state.lock().unwrap();
        let tag = referrers_tag(&digest);
        assert_eq!(
            signed.signature_tag.ends_with(&tag),
            !api,
            "{}",
            signed.signature_tag
        );
        (f.log.clone(), f.manifests.contains_key(&tag))
    }

    #[tokio::test]
    async fn the_referrers_api_is_used_when_the_registry_offers_it() {
        let (log, tag_written) = sign_and_verify(true).await;
        assert!(!tag_written, "a referrers tag was written: {log:?}");
        assert!(
            !log.iter()
                .any(|l| l.contains("/manifests/sha256-") && !l.ends_with(".sig")),
            "the tag schema was consulted: {log:?}"
        );
        assert!(log.iter().any(|l| l.starts_with("GET /v2/app/referrers/")));
    }

    #[tokio::test]
    async fn the_referrers_tag_is_the_fallback_without_the_api() {
        let (log, tag_written) = sign_and_verify(false).await;
        assert!(tag_written, "{log:?}");
        assert!(log
            .iter()
            .any(|l| l.starts_with("PUT /v2/app/manifests/sha256-")));
    }

    /// A valid `.sig` signature stands when the referrers index cannot be read (here:
    /// more entries than runner reads); without one, that is the error.
    #[tokio::test]
    async fn an_unreadable_referrers_index_does_not_hide_a_valid_sig_signature() {
        let state = Arc::new(Mutex::new(Fake::default()));
        let image_manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let digest = crate::publish::reference::sha256_digest(image_manifest);
        let many: Vec<Value> = (0..crate::publish::registry::MAX_ATTACHMENT_LAYERS + 1)
            .map(|i| json!({"mediaType": OCI_MANIFEST, "digest": format!("sha256:{i:064x}"), "size": 1}))
            .collect();
        let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": many})).unwrap();
        {
            let mut f = state.lock().unwrap();
            f.manifests.insert(
                digest.clone(),
                (OCI_MANIFEST.to_string(), image_manifest.to_vec()),
            );
            f.manifests
                .insert(referrers_tag(&digest), (OCI_INDEX.to_string(), index));
        }
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let registry = Registry::new(
            &host,
            &Endpoints::default(),
            Arc::new(Static(Credentials::Anonymous)),
            RetryPolicy::default(),
        )
        .unwrap();
        let image = ImageRef::parse(&format!("{host}/app:1")).unwrap();
        let key = SigningKey::generate().unwrap();
        let public = key.verifying_key().unwrap();
        let err = crate::sign::cosign::verify(&registry, &image, &digest, &public)
            .await
            .unwrap_err();
        assert!(matches!(err, SignError::TooManyLayers { .. }), "{err}");
        crate::sign::cosign::sign(&registry, &image, &digest, &key, &BTreeMap::new())
            .await
            .unwrap();
        let valid = crate::sign::cosign::verify(&registry, &image, &digest, &public)
            .await
            .unwrap();
        assert_eq!(valid, 1);
    }
}
