//! `runner key generate`, `runner push`, `runner sign`, `runner verify`: the image steps
//! of `runner build`, one at a time, the way users know them from cosign and crane.

use super::args::{KeyCommand, KeyPassword, PushArgs, RegistryArgs, SignArgs, VerifyArgs};
use super::exit::ExitStatus;
use crate::aws_config::AwsSettings;
use crate::publish::connect::{connect, ConnectOptions};
use crate::publish::push::{push_image, PushOptions};
use crate::publish::registry::{Endpoints, Limits};
use crate::publish::{ImageRef, PublishError};
use crate::secrets::Secret;
use crate::sign::bundle::SignatureFormat;
use crate::sign::{cosign, generate_key_pair, SignError, SigningKey, VerifyingKey};
use std::collections::BTreeMap;
use std::time::Duration;

fn password(p: &KeyPassword) -> Result<Secret, String> {
    p.key_password.clone().map(Secret::new).ok_or_else(|| {
        "set COSIGN_PASSWORD to the key's password (it may be empty: COSIGN_PASSWORD=)".to_string()
    })
}

fn fail(json: bool, status: ExitStatus, msg: &str) -> ExitStatus {
    if json {
        println!("{}", serde_json::json!({"ok": false, "error": msg}));
    }
    eprintln!("error: {msg}");
    status
}

/// `RUNNER_REGISTRY_TIMEOUT=SECONDS`: the longest silence from the registry and the
/// deadline of its small requests (defaults: `Limits::default()`).
const TIMEOUT_VAR: &str = "RUNNER_REGISTRY_TIMEOUT";

pub(super) fn registry_limits(value: Option<&str>) -> Result<Limits, PublishError> {
    let Some(value) = value.map(str::to_string) else {
        return Ok(Limits::default());
    };
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(|s| Limits::default().with_timeout(Duration::from_secs_f64(s)))
        .ok_or(PublishError::BadTimeout {
            name: TIMEOUT_VAR,
            value,
        })
}

/// More registry endpoint overrides, `HOST=URL,HOST=URL`.
const ENDPOINTS_VAR: &str = "RUNNER_REGISTRY_ENDPOINTS";

/// Where registries are reached: the items of RUNNER_REGISTRY_ENDPOINTS, then the
/// `--registry-endpoint` flags (which win for the same host), all checked alike.
pub(super) fn registry_endpoints(
    flags: &[String],
    var: Option<&str>,
) -> Result<Endpoints, PublishError> {
    let from_var = var
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| (ENDPOINTS_VAR, s));
    let from_flags = flags.iter().map(|s| ("--registry-endpoint", s.as_str()));
    Endpoints::from_items(from_var.chain(from_flags))
}

fn options(args: &RegistryArgs, create_repository: bool) -> Result<ConnectOptions, PublishError> {
    Ok(ConnectOptions {
        endpoints: registry_endpoints(&args.registry_endpoint, args.registry_endpoints.as_deref())?,
        aws: AwsSettings {
            region: args.region.clone(),
            ..Default::default()
        },
        auth: super::config::registry_auth(),
        create_repository,
        limits: registry_limits(args.registry_timeout.as_deref())?,
        ..Default::default()
    })
}

pub fn key(cmd: KeyCommand) -> ExitStatus {
    match cmd {
        KeyCommand::Generate {
            output_dir,
            password: pw,
            json,
        } => {
            let pw = match password(&pw) {
                Ok(p) => p,
                Err(m) => return fail(json, ExitStatus::Setup, &m),
            };
            match generate_key_pair(&output_dir, pw.expose().as_bytes()) {
                Ok((k, p)) if json => {
                    let out = serde_json::json!({
                        "ok": true,
                        "private_key": k.display().to_string(),
                        "public_key": p.display().to_string(),
                    });
                    println!("{out}");
                    ExitStatus::Success
                }
                Ok((k, p)) => {
                    println!("Private key written to {}", k.display());
                    println!("Public key written to {}", p.display());
                    ExitStatus::Success
                }
                Err(e) => fail(json, ExitStatus::Setup, &e.to_string()),
            }
        }
    }
}

pub async fn push(args: PushArgs) -> ExitStatus {
    let json = args.registry.json;
    let target = match ImageRef::parse(&args.repository) {
        Ok(t) if t.digest.is_none() => t,
        Ok(_) => {
            return fail(
                json,
                ExitStatus::Setup,
                "push to a repository or a tag, not a digest",
            )
        }
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let opts = match options(&args.registry, args.create_repository) {
        Ok(o) => o,
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let endpoint = match super::config::engine_endpoint() {
        Ok(e) => e,
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let engine = match crate::docker::DockerEngine::connect_to(&endpoint).await {
        Ok(e) => e,
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let connected = match connect(&target, &opts, true).await {
        Ok(c) => c,
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let push_opts = PushOptions {
        compression_level: args.compression_level,
        layer_map: Some(super::data_dir().join("publish").join("layers.json")),
        immutable_tags: connected.immutable_tags,
        concurrency: super::config::push_concurrency()
            .unwrap_or(crate::publish::push::DEFAULT_PUSH_CONCURRENCY),
        ..Default::default()
    };
    let quiet = json;
    let progress = move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    match push_image(
        &engine,
        &args.local_image,
        &target,
        connected.registry,
        &push_opts,
        &progress,
    )
    .await
    {
        Ok(out) => {
            if json {
                println!("{}", serde_json::to_string(&out).unwrap_or_default());
            } else {
                eprintln!(
                    "pushed {} ({} blobs uploaded, {} bytes; {} already there)",
                    out.reference, out.blobs_uploaded, out.bytes_uploaded, out.blobs_skipped
                );
                println!("{}", out.reference);
            }
            ExitStatus::Success
        }
        Err(e) => fail(json, push_status(&e), &e.to_string()),
    }
}

fn push_status(e: &PublishError) -> ExitStatus {
    match e {
        PublishError::TagImmutable { .. } => ExitStatus::Failed,
        _ => ExitStatus::Setup,
    }
}

fn parse_annotations(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("bad --annotation `{i}`: write KEY=VALUE"))
        })
        .collect()
}

pub async fn sign(args: SignArgs) -> ExitStatus {
    let json = args.registry.json;
    let result: Result<cosign::Signed, String> = async {
        let image = ImageRef::parse(&args.image).map_err(|e| e.to_string())?;
        let annotations = parse_annotations(&args.annotations)?;
        let pw = password(&args.password)?;
        let key = SigningKey::load(&args.key, pw.expose().as_bytes()).map_err(|e| e.to_string())?;
        let opts = options(&args.registry, false).map_err(|e| e.to_string())?;
        let c = connect(&image, &opts, false)
            .await
            .map_err(|e| e.to_string())?;
        let digest = cosign::resolve(&c.registry, &image)
            .await
            .map_err(|e| e.to_string())?;
        let format = if args.new_bundle_format {
            SignatureFormat::Bundle
        } else {
            SignatureFormat::Sig
        };
        cosign::sign_as(format, &c.registry, &image, &digest, &key, &annotations)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(s) => {
            if json {
                println!("{}", serde_json::to_string(&s).unwrap_or_default());
            } else {
                println!("signed {} ({})", s.image, s.signature_tag);
            }
            ExitStatus::Success
        }
        Err(m) => fail(json, ExitStatus::Setup, &m),
    }
}

pub async fn verify(args: VerifyArgs) -> ExitStatus {
    let json = args.registry.json;
    let result: Result<serde_json::Value, SignError> = async {
        let image = ImageRef::parse(&args.image).map_err(PublishError::from)?;
        let key = VerifyingKey::load(&args.key)?;
        let opts = options(&args.registry, false)?;
        let c = connect(&image, &opts, false).await?;
        let digest = cosign::resolve(&c.registry, &image).await?;
        let signatures = cosign::verify(&c.registry, &image, &digest, &key).await?;
        let mut types = Vec::new();
        for t in &args.attestations {
            let uri = cosign::predicate_type_uri(t);
            let found =
                cosign::verify_attestations(&c.registry, &image, &digest, &key, Some(&uri)).await?;
            types.push(serde_json::json!({"predicateType": uri, "count": found.len()}));
        }
        Ok(serde_json::json!({
            "ok": true,
            "image": format!("{}@{digest}", image.name()),
            "signatures": signatures,
            "attestations": types,
        }))
    }
    .await;
    match result {
        Ok(v) => {
            if json {
                println!("{v}");
            } else {
                println!(
                    "verified {}: {} valid signature(s){}",
                    v["image"].as_str().unwrap_or(""),
                    v["signatures"],
                    if args.attestations.is_empty() {
                        String::new()
                    } else {
                        format!(", attestations: {}", args.attestations.join(", "))
                    }
                );
            }
            ExitStatus::Success
        }
        Err(e @ SignError::NotVerified { .. }) => fail(json, ExitStatus::Failed, &e.to_string()),
        Err(SignError::Publish(PublishError::NotFound { reference })) => fail(
            json,
            ExitStatus::Failed,
            &format!("{reference} was not found in the registry"),
        ),
        Err(e) => fail(json, ExitStatus::Setup, &e.to_string()),
    }
}
