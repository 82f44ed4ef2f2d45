//! Cosign's registry layout: a signature is an OCI manifest at tag `sha256-<hex>.sig`
//! beside the image, one layer per signature (the simple-signing payload, its signature
//! in the `dev.cosignproject.cosign/signature` annotation); attestations live at
//! `sha256-<hex>.att`, one DSSE envelope per layer. Adding a signature appends a layer,
//! as cosign does.

use super::error::SignError;
use super::keys::{SigningKey, VerifyingKey};
use crate::publish::reference::{short_digest, ImageRef};
use crate::publish::registry::{Registry, OCI_MANIFEST};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `sha256:abc` → `sha256-abc.<suffix>`.
pub fn tag_for(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// The simple-signing payload exactly as cosign writes it: compact JSON, keys in this
/// order, `optional` null or an object of annotations (sorted keys).
pub fn payload(
    docker_reference: &str,
    digest: &str,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let s = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let optional = if annotations.is_empty() {
        "null".to_string()
    } else {
        serde_json::to_string(annotations).unwrap_or_else(|_| "null".into())
    };
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":"cosign container image signature"}},"optional":{}}}"#,
        s(docker_reference),
        s(digest),
        optional
    )
    .into_bytes()
}

/// DSSE pre-authentication encoding: `DSSEv1 <len> <type> <len> <payload>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// One layer of a `.sig` or `.att` manifest, with its blob.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: String,
    pub digest: String,
    pub annotations: BTreeMap<String, String>,
    pub blob: Vec<u8>,
}

/// The layers of `media_type` at `tag`, blobs fetched (each within `max_layer` bytes,
/// all of them within the registry's `max_attachments_total`) and checked against their
/// digests. Layers of other types are not downloaded.
pub async fn read_layers(
    registry: &Registry,
    repo: &str,
    tag: &str,
    media_type: &str,
    max_layer: u64,
) -> Result<Vec<Layer>, SignError> {
    let Some(m) = registry.get_manifest(repo, tag).await? else {
        return Ok(Vec::new());
    };
    let limits = *registry.limits();
    let manifest: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let listed = manifest["layers"].as_array().map_or(0, Vec::len);
    if listed > limits.max_attachment_layers {
        return Err(SignError::TooManyLayers {
            reference: format!("{}/{repo}:{tag}", registry.registry()),
            layers: listed,
            limit: limits.max_attachment_layers,
        });
    }
    let mut budget = limits.max_attachments_total;
    let mut out = Vec::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        let (Some(mt), Some(digest)) = (l["mediaType"].as_str(), l["digest"].as_str()) else {
            continue;
        };
        if mt != media_type {
            continue;
        }
        let annotations = l["annotations"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        // Within the layer's declared size, the per-layer limit and what is left of
        // the manifest's budget; a declared size beyond those is refused unread.
        let cap = max_layer.min(budget);
        let max = match l["size"].as_u64() {
            Some(size) if size > cap => {
                return Err(crate::publish::PublishError::TooLarge {
                    registry: registry.registry().to_string(),
                    what: format!(
                        "layer {digest} of {}/{repo}:{tag} ({size} bytes declared)",
                        registry.registry()
                    ),
                    limit: cap,
                }
                .into())
            }
            Some(size) => size,
            None => cap,
        };
        let blob = registry.get_blob(repo, digest, max).await?;
        budget = budget.saturating_sub(blob.len() as u64);
        out.push(Layer {
            media_type: mt.to_string(),
            digest: digest.to_string(),
            annotations,
            blob,
        });
    }
    Ok(out)
}

/// Appends a layer to the manifest at `tag` (creating it), skipping an identical one.
async fn append_layer(
    registry: &Registry,
    repo: &str,
    tag: &str,
    media_type: &str,
    blob: &[u8],
    annotations: BTreeMap<String, String>,
) -> Result<String, SignError> {
    let digest = registry.push_blob_bytes(repo, blob).await?;
    let mut layers: Vec<Value> = match registry.get_manifest(repo, tag).await? {
        Some(m) => serde_json::from_slice::<Value>(&m.bytes)
            .ok()
            .and_then(|v| v["layers"].as_array().cloned())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let new_layer = json!({
        "mediaType": media_type,
        "size": blob.len(),
        "digest": digest,
        "annotations": annotations,
    });
    if layers
        .iter()
        .any(|l| l["digest"] == new_layer["digest"] && l["annotations"] == new_layer["annotations"])
    {
        return Ok(digest);
    }
    layers.push(new_layer);
    let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|_| json!({"created": "0001-01-01T00:00:00Z"}))
        .collect();
    let config = json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
    let config_digest = registry.push_blob_bytes(repo, &config_bytes).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config_bytes.len(), "digest": config_digest},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    registry
        .put_manifest(repo, tag, OCI_MANIFEST, &bytes)
        .await?;
    Ok(digest)
}

/// Resolves a tag to the digest of the manifest it names (a digest resolves to itself,
/// after checking the registry has it).
pub async fn resolve(registry: &Registry, image: &ImageRef) -> Result<String, SignError> {
    let m = registry
        .get_manifest(&image.repository, image.manifest_reference())
        .await?
        .ok_or_else(|| crate::publish::PublishError::NotFound {
            reference: image.to_string(),
        })?;
    Ok(m.digest)
}

/// What signing did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Signed {
    pub image: String,
    pub signature_tag: String,
    pub payload_digest: String,
}

/// Signs `digest` of `image`'s repository with `key` and attaches the signature.
pub async fn sign(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &SigningKey,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    let body = payload(&image.name(), digest, annotations);
    let sig = key.sign(&body)?;
    let mut ann = BTreeMap::new();
    ann.insert(SIGNATURE_ANNOTATION.to_string(), B64.encode(sig));
    let tag = tag_for(digest, "sig");
    let payload_digest = append_layer(
        registry,
        &image.repository,
        &tag,
        SIMPLE_SIGNING,
        &body,
        ann,
    )
    .await?;
    Ok(Signed {
        image: format!("{}@{digest}", image.name()),
        signature_tag: format!("{}:{tag}", image.name()),
        payload_digest,
    })
}

/// Signs in the chosen format: a `.sig` layer, or a Sigstore bundle as a referrer.
pub async fn sign_as(
    format: super::bundle::SignatureFormat,
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &SigningKey,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    match format {
        super::bundle::SignatureFormat::Sig => {
            sign(registry, image, digest, key, annotations).await
        }
        super::bundle::SignatureFormat::Bundle => {
            super::bundle::sign(registry, image, digest, key, annotations).await
        }
    }
}

/// Verifies that `digest` carries at least one signature by `key` about this digest:
/// a classic `.sig` layer or a Sigstore bundle attached as a referrer (what cosign 3
/// writes). Returns the number of valid signatures of both kinds.
pub async fn verify(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &VerifyingKey,
) -> Result<usize, SignError> {
    let (sig_valid, mut reasons) = verify_sig_layers(registry, image, digest, key).await?;
    let (bundle_valid, bundle_reasons) =
        match super::bundle::verify_bundles(registry, image, digest, key).await {
            Ok(found) => found,
            // A valid `.sig` signature stands even when the referrers cannot be read
            // (a registry refusing the API's path, an oversized or hostile index).
            Err(e) if sig_valid > 0 => {
                tracing::warn!(error = %e, "the referrers (bundle signatures) could not be read");
                (0, Vec::new())
            }
            Err(e) => return Err(e),
        };
    reasons.extend(bundle_reasons);
    let valid = sig_valid + bundle_valid;
    if valid == 0 {
        return Err(SignError::NotVerified {
            what: "signature",
            image: format!("{}@{digest}", image.name()),
            reasons,
        });
    }
    Ok(valid)
}

/// The classic `.sig` signatures: how many verify and why the others do not.
async fn verify_sig_layers(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &VerifyingKey,
) -> Result<(usize, Vec<String>), SignError> {
    let layers = read_layers(
        registry,
        &image.repository,
        &tag_for(digest, "sig"),
        SIMPLE_SIGNING,
        registry.limits().max_signature,
    )
    .await?;
    let mut reasons = Vec::new();
    let mut valid = 0;
    if layers.is_empty() {
        reasons.push(format!(
            "no signature manifest at tag {}",
            tag_for(digest, "sig")
        ));
    }
    for l in &layers {
        if l.media_type != SIMPLE_SIGNING {
            continue;
        }
        let Some(sig) = l
            .annotations
            .get(SIGNATURE_ANNOTATION)
            .and_then(|s| B64.decode(s).ok())
        else {
            reasons.push(format!("layer {} has no signature annotation", l.digest));
            continue;
        };
        if !key.verify(&l.blob, &sig) {
            reasons.push(format!(
                "signature on layer {} does not verify with this public key",
                short_digest(&l.digest)
            ));
            continue;
        }
        let p: Value = serde_json::from_slice(&l.blob).unwrap_or(Value::Null);
        let claimed = p["critical"]["image"]["docker-manifest-digest"]
            .as_str()
            .unwrap_or("");
        if claimed != digest {
            reasons.push(format!(
                "payload of layer {} is for {claimed}, not {digest}",
                short_digest(&l.digest)
            ));
            continue;
        }
        if p["critical"]["type"] != "cosign container image signature" {
            reasons.push(format!(
                "payload of layer {} has the wrong type",
                short_digest(&l.digest)
            ));
            continue;
        }
        valid += 1;
    }
    Ok((valid, reasons))
}

/// Attaches an in-toto statement about `digest` as a DSSE envelope signed with `key`.
pub async fn attest(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &SigningKey,
    predicate_type: &str,
    predicate: Value,
) -> Result<String, SignError> {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": image.name(), "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    let statement = serde_json::to_vec(&statement).unwrap_or_default();
    let payload_type = "application/vnd.in-toto+json";
    let sig = key.sign(&pae(payload_type, &statement))?;
    let envelope = json!({
        "payloadType": payload_type,
        "payload": B64.encode(&statement),
        "signatures": [{"keyid": "", "sig": B64.encode(sig)}],
    });
    let blob = serde_json::to_vec(&envelope).unwrap_or_default();
    let mut ann = BTreeMap::new();
    ann.insert(SIGNATURE_ANNOTATION.to_string(), String::new());
    ann.insert("predicateType".to_string(), predicate_type.to_string());
    append_layer(
        registry,
        &image.repository,
        &tag_for(digest, "att"),
        DSSE_ENVELOPE,
        &blob,
        ann,
    )
    .await
}

/// A verified attestation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attestation {
    pub predicate_type: String,
    pub predicate: Value,
}

/// The attestations on `digest` signed by `key` (and of `predicate_type`, when given).
pub async fn verify_attestations(
    registry: &Registry,
    image: &ImageRef,
    digest: &str,
    key: &VerifyingKey,
    predicate_type: Option<&str>,
) -> Result<Vec<Attestation>, SignError> {
    let layers = read_layers(
        registry,
        &image.repository,
        &tag_for(digest, "att"),
        DSSE_ENVELOPE,
        registry.limits().max_attestation,
    )
    .await?;
    let mut reasons = Vec::new();
    let mut out = Vec::new();
    if layers.is_empty() {
        reasons.push(format!(
            "no attestation manifest at tag {}",
            tag_for(digest, "att")
        ));
    }
    let hex = digest.trim_start_matches("sha256:");
    for l in layers.iter().filter(|l| l.media_type == DSSE_ENVELOPE) {
        let env: Value = serde_json::from_slice(&l.blob).unwrap_or(Value::Null);
        let payload_type = env["payloadType"].as_str().unwrap_or("");
        let Some(statement) = env["payload"].as_str().and_then(|p| B64.decode(p).ok()) else {
            reasons.push(format!(
                "layer {} is not a DSSE envelope",
                short_digest(&l.digest)
            ));
            continue;
        };
        let signed = env["signatures"].as_array().into_iter().flatten().any(|s| {
            s["sig"]
                .as_str()
                .and_then(|s| B64.decode(s).ok())
                .is_some_and(|sig| key.verify(&pae(payload_type, &statement), &sig))
        });
        if !signed {
            reasons.push(format!(
                "envelope in layer {} is not signed by this key",
                short_digest(&l.digest)
            ));
            continue;
        }
        let st: Value = serde_json::from_slice(&statement).unwrap_or(Value::Null);
        let about_this = st["subject"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["digest"]["sha256"].as_str() == Some(hex));
        if !about_this {
            reasons.push(format!(
                "statement in layer {} is about another image",
                short_digest(&l.digest)
            ));
            continue;
        }
        let pt = st["predicateType"].as_str().unwrap_or("").to_string();
        if predicate_type.is_some_and(|want| want != pt) {
            reasons.push(format!(
                "attestation in layer {} is of type {pt}",
                short_digest(&l.digest)
            ));
            continue;
        }
        out.push(Attestation {
            predicate_type: pt,
            predicate: st["predicate"].clone(),
        });
    }
    if out.is_empty() {
        return Err(SignError::NotVerified {
            what: "attestation",
            image: format!("{}@{digest}", image.name()),
            reasons,
        });
    }
    Ok(out)
}

/// cosign's short names for predicate types.
pub fn predicate_type_uri(name: &str) -> String {
    match name {
        "slsaprovenance" => "https://slsa.dev/provenance/v0.2",
        "slsaprovenance1" | "slsa" => "https://slsa.dev/provenance/v1",
        "cyclonedx" => "https://cyclonedx.org/bom",
        "spdxjson" | "spdx" => "https://spdx.dev/Document",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn payload_matches_cosign_bytes() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let p = payload("127.0.0.1:5001/app", d, &BTreeMap::new());
        assert_eq!(
            String::from_utf8(p).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5001/app"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        assert_eq!(tag_for(d, "sig"), format!("sha256-{}.sig", &d[7..]));
        assert_eq!(pae("t", b"abc"), b"DSSEv1 1 t 3 abc".to_vec());
    }
}
