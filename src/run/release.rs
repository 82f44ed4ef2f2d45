//! The stages after a successful build: build the project's image, push it, sign and
//! attest it. Each stage reports one `Event::Stage`; the first failure stops the rest.
//! Used by every entry point (`runner build`, agents, the GitHub Actions step).

use super::emit::{self, Stage};
use super::scans::{self, SavedImage};
use crate::docker::{DockerEngine, ImageBuildSpec};
use crate::event::{Event, Level, Reporter};
use crate::project::{ImageConfig, SignConfig};
use crate::publish::connect::{connect, ConnectOptions};
use crate::publish::push::{push_image, PushOptions};
use crate::publish::registry::{Registry, OCI_MANIFEST};
use crate::publish::ImageRef;
use crate::sign::{cosign, provenance, SigningKey};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A cause of a failed release stage, kept typed behind [`ReleaseError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a release stage failed. Each is reported as a failed `stage` event with this
/// message before it is returned.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// `image.repository` is not an image reference.
    #[error(transparent)]
    Repository(#[from] crate::publish::reference::BadReference),
    #[error("image tag {tag:?}: {source}")]
    Tag {
        tag: String,
        source: crate::publish::reference::BadReference,
    },
    #[error("Image build failed: {0}")]
    Build(#[source] Cause),
    #[error("Image scan failed: cannot read {image}: {source}")]
    ScanRead {
        image: String,
        source: scans::ScanError,
    },
    #[error("Image scan failed: {0}")]
    Scan(#[source] scans::ScanError),
    /// The image scan's policy refused the image (the scan stage reported why).
    #[error(transparent)]
    ScanRefused(scans::ScanError),
    #[error("Push failed: {0}")]
    Push(#[source] Cause),
    #[error("Push failed: {digest} vanished from the registry")]
    Vanished { digest: String },
    #[error("Push failed: tag {tag} already exists and the repository's tags are immutable")]
    ImmutableTag { tag: String },
    #[error("Signing failed: {0}")]
    Sign(#[source] Cause),
    #[error("Attestation failed: {0}")]
    Attest(#[source] Cause),
    /// The signing key's public half could not be derived.
    #[error(transparent)]
    VerifyingKey(Cause),
    #[error(
        "GitOps refused for {repo}: require-signature is set but the project has no sign: key"
    )]
    GitopsNoKey { repo: String },
    #[error("GitOps refused: {0}")]
    GitopsRefused(#[source] Cause),
    #[error("GitOps bump of {repo} failed: {source}")]
    GitopsBump { repo: String, source: Cause },
}

/// Everything the release stages need, gathered by the entry point.
pub struct ReleaseInput<'a> {
    pub source: &'a Path,
    pub image: &'a ImageConfig,
    pub sign: Option<&'a SignConfig>,
    /// The password of the signing key (COSIGN_PASSWORD), read at the edge.
    pub key_password: Option<crate::secrets::Secret>,
    pub project: &'a str,
    pub build_id: &'a str,
    pub build_number: u64,
    pub revision: Option<&'a str>,
    pub branch: Option<&'a str>,
    pub source_uri: Option<&'a str>,
    pub buildspec: &'a str,
    pub build_image: &'a str,
    pub started_on: String,
    pub connect: ConnectOptions,
    /// Where the push remembers layer → blob (the data directory).
    pub layer_map: PathBuf,
    pub work_dir: PathBuf,
    /// Scan the image before pushing it (`scan.image`), judged by `policy`.
    /// `None`: no image scan. The rules are compiled once per build by the caller.
    pub image_scanner: Option<&'a crate::scan::secrets::SecretScanner>,
    pub policy: &'a crate::scan::policy::Policy,
    pub advisories: &'a crate::scan::osv::AdvisoryDb,
    /// GitOps targets to bump once the image is pushed (and signed).
    pub gitops: &'a [crate::project::GitopsTarget],
    /// Where the GitOps targets' tokens come from (read at the caller's edge).
    pub gitops_tokens: &'a crate::secrets::NamedSecrets,
    /// Blob uploads at once (default [`crate::publish::push::DEFAULT_PUSH_CONCURRENCY`]).
    pub push_concurrency: Option<usize>,
}

/// What the release produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Released {
    /// `registry/repository@sha256:...`
    pub reference: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub local_image: String,
    pub signed: bool,
    pub attestations: Vec<String>,
    pub pull_requests: Vec<String>,
}

/// `{short-revision}` and friends in a tag.
pub fn expand_tag(template: &str, input: &ReleaseInput<'_>) -> String {
    let rev = input.revision.unwrap_or("");
    let short = &rev[..rev.len().min(12)];
    let branch: String = input
        .branch
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    template
        .replace("{revision}", rev)
        .replace("{short-revision}", short)
        .replace("{branch}", &branch)
        .replace("{build-number}", &input.build_number.to_string())
}

fn notice(reporter: &dyn Reporter, message: String) {
    emit::notice(reporter, Level::Info, message);
}

/// The local names of the `cache-from` images, brought up to date from their registry:
/// a cold agent pulls them (only the layers its engine lacks), a warm one checks that its
/// copy is still what the tag names (one manifest request). A missing or unreachable
/// image only loses the layer cache, never the build: it is reported and left out, or
/// the engine's own copy is used.
async fn cache_from_images(
    engine: &DockerEngine,
    refs: &[String],
    (connect_opts, work_dir): (&ConnectOptions, &Path),
    reporter: &dyn Reporter,
) -> Vec<String> {
    let mut names = Vec::new();
    for text in refs {
        let local = engine.image_info(text).await.is_ok();
        let image = match ImageRef::parse(text) {
            Ok(i) => i,
            Err(_) if local => {
                names.push(text.clone());
                continue;
            }
            Err(e) => {
                notice(reporter, format!("cache-from {text} left out: {e}"));
                continue;
            }
        };
        // A digest cannot be a local tag: such an image is tagged `cache-<digest>`.
        let tag = match (&image.tag, &image.digest) {
            (_, Some(d)) => format!("cache-{}", crate::publish::reference::short_digest(d)),
            (Some(t), None) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let started = Instant::now();
        let pulled = match connect(&image, connect_opts, false).await {
            Ok(c) => {
                crate::publish::pull::pull_into_engine(
                    engine,
                    &c.registry,
                    &image,
                    (&image.name(), &tag),
                    work_dir,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let message = match pulled {
            Ok(Some(p)) if p.already_local => {
                names.push(format!("{}:{tag}", image.name()));
                format!("cache-from {text}: the engine has it already")
            }
            Ok(Some(p)) => {
                names.push(format!("{}:{tag}", image.name()));
                format!(
                    "cache-from {text}: pulled {} of {} layers ({:.1} MB) in {:.1} s",
                    p.layers_fetched,
                    p.layers,
                    p.bytes_fetched as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                )
            }
            Ok(None) if local => {
                names.push(text.clone());
                format!("cache-from {text}: not in the registry; using the engine's copy")
            }
            Ok(None) => format!(
                "cache-from {text}: not in the registry yet (a first build); building without it"
            ),
            Err(e) if local => {
                names.push(text.clone());
                format!("cache-from {text}: the registry could not be asked ({e}); using the engine's copy")
            }
            Err(e) => format!("cache-from {text} could not be pulled ({e}); building without it"),
        };
        notice(reporter, message);
    }
    names
}

/// Runs the stages; `Err` carries the error already reported as a failed stage.
pub async fn release(
    engine: &DockerEngine,
    input: &ReleaseInput<'_>,
    reporter: &dyn Reporter,
) -> Result<Released, ReleaseError> {
    let tags = tags(input);
    let repo = ImageRef::parse(&input.image.repository)?;
    let built = image_stage(engine, input, &repo, &tags, reporter).await?;
    // Inventory: for the image scan and the SBOM.
    let inventory = scan_stage(engine, input, &built.local, reporter).await?;
    let pushed = push_stage(
        engine,
        input,
        &repo,
        &tags,
        &built,
        inventory.as_ref(),
        reporter,
    )
    .await?;
    let mut out = Released {
        reference: pushed.reference.clone(),
        digest: pushed.digest.clone(),
        tags,
        local_image: built.local,
        signed: false,
        attestations: Vec::new(),
        pull_requests: Vec::new(),
    };
    let registry = pushed.registry;
    let Some(sign_cfg) = input.sign else {
        gitops(input, &registry, &repo, &mut out, None, reporter).await?;
        return Ok(out);
    };
    let key = sign_stage(
        input,
        sign_cfg,
        &registry,
        &repo,
        inventory.as_ref(),
        &mut out,
        reporter,
    )
    .await?;
    let verifying = key
        .verifying_key()
        .map_err(|e| ReleaseError::VerifyingKey(e.into()))?;
    gitops(
        input,
        &registry,
        &repo,
        &mut out,
        Some(&verifying),
        reporter,
    )
    .await?;
    Ok(out)
}

/// The image's tags, expanded; the short revision (or `build-N`) when none is left.
fn tags(input: &ReleaseInput<'_>) -> Vec<String> {
    let mut tags: Vec<String> = input
        .image
        .tags
        .iter()
        .map(|t| expand_tag(t, input))
        .filter(|t| !t.is_empty())
        .collect();
    if tags.is_empty() {
        tags.push(match input.revision {
            Some(r) => r[..r.len().min(12)].to_string(),
            None => format!("build-{}", input.build_number),
        });
    }
    tags
}

/// What the image stage built.
struct Built {
    /// The first tag's reference in the registry.
    first: ImageRef,
    /// The engine's name of the image (`repository:first-tag`).
    local: String,
    /// The labels it was built with (the OCI ones become the manifest's annotations).
    labels: HashMap<String, String>,
}

/// The `image` stage: the project's image built on the engine from its context.
async fn image_stage(
    engine: &DockerEngine,
    input: &ReleaseInput<'_>,
    repo: &ImageRef,
    tags: &[String],
    reporter: &dyn Reporter,
) -> Result<Built, ReleaseError> {
    let cfg = input.image;
    let st = Stage::start(reporter, "image");
    let first = ImageRef::parse(&format!("{}:{}", cfg.repository, tags[0])).map_err(|source| {
        st.fail(ReleaseError::Tag {
            tag: tags[0].clone(),
            source,
        })
    })?;
    let context = input.source.join(&cfg.context);
    let local = format!("{}:{}", repo.name(), tags[0]);
    notice(
        reporter,
        format!(
            "Building image {local} from {}/{}",
            cfg.context, cfg.dockerfile
        ),
    );
    let tar = {
        let context = context.clone();
        let dockerfile = cfg.dockerfile.clone();
        tokio::task::spawn_blocking(move || {
            crate::publish::context::context_tar(&context, &dockerfile)
        })
        .await
        .map_err(Cause::from)
        .and_then(|r| r.map_err(Cause::from))
    };
    let tar = tar.map_err(|e| st.fail(ReleaseError::Build(e)))?;
    let labels = labels(input);
    let cache_from = cache_from_images(
        engine,
        &cfg.cache_from,
        (&input.connect, &input.work_dir),
        reporter,
    )
    .await;
    let spec = ImageBuildSpec {
        dockerfile: cfg.dockerfile.clone(),
        tag: local.clone(),
        build_args: cfg.build_args.iter().cloned().collect(),
        labels: labels.clone(),
        target: cfg.target.clone(),
        cache_from,
        no_cache: false,
    };
    let mut cached_steps = 0usize;
    let built = engine
        .build_image(&spec, bytes::Bytes::from(tar), |line| {
            if line.contains("Using cache") {
                cached_steps += 1;
            }
            reporter.event(&Event::Log {
                stream: crate::event::Stream::Stdout,
                line: line.to_string(),
            });
        })
        .await;
    let image_id = built.map_err(|e| st.fail(ReleaseError::Build(e.into())))?;
    st.ok(
        format!("Image built: {local} ({image_id}; {cached_steps} steps from the layer cache)"),
        serde_json::json!({"image": local, "id": image_id, "cached_steps": cached_steps}),
    );
    Ok(Built {
        first,
        local,
        labels,
    })
}

/// The image's labels: its source and revision (OCI), and the project.
fn labels(input: &ReleaseInput<'_>) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    if let Some(uri) = input.source_uri {
        labels.insert(
            "org.opencontainers.image.source".to_string(),
            uri.to_string(),
        );
    }
    if let Some(rev) = input.revision {
        labels.insert(
            "org.opencontainers.image.revision".to_string(),
            rev.to_string(),
        );
    }
    labels.insert("dev.runner.project".to_string(), input.project.to_string());
    labels
}

/// The `scan` stage, when the project scans its image or attests its SBOM: the image
/// saved and its inventory read (kept for the SBOM and the push), then judged by the
/// policy when the image is scanned. `None`: neither is asked for.
async fn scan_stage(
    engine: &DockerEngine,
    input: &ReleaseInput<'_>,
    local: &str,
    reporter: &dyn Reporter,
) -> Result<Option<SavedImage>, ReleaseError> {
    let wants_sbom = input
        .sign
        .is_some_and(|s| s.attest.iter().any(|a| a == "sbom"));
    if input.image_scanner.is_none() && !wants_sbom {
        return Ok(None);
    }
    let st = Stage::start(reporter, "scan");
    let saved = scans::image_inventory(engine, local, &input.work_dir)
        .await
        .map_err(|source| {
            st.fail(ReleaseError::ScanRead {
                image: local.to_string(),
                source,
            })
        })?;
    if let Some(scanner) = input.image_scanner {
        let findings = scans::scan_inventory(&saved.inventory, input.advisories, scanner)
            .map_err(|e| st.fail(ReleaseError::Scan(e)))?;
        scans::judge(
            reporter,
            &format!("image {local}"),
            &findings,
            input.policy,
            st.started(),
        )
        .map_err(ReleaseError::ScanRefused)?;
    }
    Ok(Some(saved))
}

/// What the push stage left in the registry.
struct Pushed {
    registry: Arc<Registry>,
    reference: String,
    digest: String,
}

/// The `push` stage: the image under its first tag, then the other tags naming the same
/// manifest (refused when an immutable repository has one naming another).
async fn push_stage(
    engine: &DockerEngine,
    input: &ReleaseInput<'_>,
    repo: &ImageRef,
    tags: &[String],
    built: &Built,
    inventory: Option<&SavedImage>,
    reporter: &dyn Reporter,
) -> Result<Pushed, ReleaseError> {
    let st = Stage::start(reporter, "push");
    let connected = connect(&built.first, &input.connect, true)
        .await
        .map_err(|e| st.fail(ReleaseError::Push(e.into())))?;
    let mut annotations = BTreeMap::new();
    annotations.extend(
        built
            .labels
            .iter()
            .filter(|(k, _)| k.starts_with("org.opencontainers"))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let opts = PushOptions {
        layer_map: Some(input.layer_map.clone()),
        work_dir: input.work_dir.clone(),
        immutable_tags: connected.immutable_tags,
        annotations,
        // The image scan saved this image already: no second export from the engine.
        saved_archive: inventory.map(|saved| saved.archive().to_path_buf()),
        concurrency: input
            .push_concurrency
            .unwrap_or(crate::publish::push::DEFAULT_PUSH_CONCURRENCY),
        ..Default::default()
    };
    let registry = connected.registry.clone();
    let progress = |line: &str| notice(reporter, line.to_string());
    let pushed = push_image(
        engine,
        &built.local,
        &built.first,
        registry.clone(),
        &opts,
        &progress,
    )
    .await
    .map_err(|e| st.fail(ReleaseError::Push(e.into())))?;
    // The other tags name the same manifest.
    if tags.len() > 1 {
        let manifest = registry
            .get_manifest(&repo.repository, &pushed.digest)
            .await
            .map_err(|e| st.fail(ReleaseError::Push(e.into())))?
            .ok_or_else(|| {
                st.fail(ReleaseError::Vanished {
                    digest: pushed.digest.clone(),
                })
            })?;
        for tag in &tags[1..] {
            if connected.immutable_tags {
                if let Ok(Some(m)) = registry.get_manifest(&repo.repository, tag).await {
                    if m.digest != pushed.digest {
                        return Err(st.fail(ReleaseError::ImmutableTag { tag: tag.clone() }));
                    }
                }
            }
            registry
                .put_manifest(&repo.repository, tag, OCI_MANIFEST, &manifest.bytes)
                .await
                .map_err(|e| st.fail(ReleaseError::Push(e.into())))?;
        }
    }
    st.ok(
        format!(
            "Image pushed: {} (tags {}; {} blobs, {} bytes uploaded; {} already in the registry)",
            pushed.reference,
            tags.join(", "),
            pushed.blobs_uploaded,
            pushed.bytes_uploaded,
            pushed.blobs_skipped
        ),
        serde_json::json!({"reference": pushed.reference, "digest": pushed.digest, "tags": tags, "push": pushed}),
    );
    Ok(Pushed {
        registry,
        reference: pushed.reference.clone(),
        digest: pushed.digest.clone(),
    })
}

/// The `sign` stage: a signature of the pushed digest by the project's key, and the
/// attestations it asks for. Returns the key (its public half gates GitOps).
async fn sign_stage(
    input: &ReleaseInput<'_>,
    sign_cfg: &SignConfig,
    registry: &Registry,
    repo: &ImageRef,
    inventory: Option<&SavedImage>,
    out: &mut Released,
    reporter: &dyn Reporter,
) -> Result<SigningKey, ReleaseError> {
    let st = Stage::start(reporter, "sign");
    let key_path = if Path::new(&sign_cfg.key).is_absolute() {
        PathBuf::from(&sign_cfg.key)
    } else {
        input.source.join(&sign_cfg.key)
    };
    // The password's hand-off to the key's decryption (no copy).
    let password = input
        .key_password
        .as_ref()
        .map(|p| p.expose().as_bytes())
        .unwrap_or_default();
    let key =
        SigningKey::load(&key_path, password).map_err(|e| st.fail(ReleaseError::Sign(e.into())))?;
    let digest = out.digest.clone();
    cosign::sign_as(
        sign_cfg.format,
        registry,
        repo,
        &digest,
        &key,
        &BTreeMap::new(),
    )
    .await
    .map_err(|e| st.fail(ReleaseError::Sign(e.into())))?;
    out.signed = true;
    for what in &sign_cfg.attest {
        match what.as_str() {
            "provenance" => {
                let predicate = provenance::slsa_v1(&provenance::ProvenanceInput {
                    source_uri: input
                        .source_uri
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("file://{}", input.source.display())),
                    revision: input.revision.map(str::to_string),
                    buildspec: input.buildspec.to_string(),
                    build_id: input.build_id.to_string(),
                    builder_id: format!(
                        "https://github.com/runner-build/runner@v{}",
                        env!("CARGO_PKG_VERSION")
                    ),
                    build_image: Some(input.build_image.to_string()),
                    started_on: input.started_on.clone(),
                    finished_on: now_rfc3339(),
                });
                cosign::attest(
                    registry,
                    repo,
                    &digest,
                    &key,
                    provenance::SLSA_PROVENANCE_V1,
                    predicate,
                )
                .await
                .map_err(|e| st.fail(ReleaseError::Attest(e.into())))?;
                out.attestations
                    .push(provenance::SLSA_PROVENANCE_V1.to_string());
            }
            "sbom" => match inventory
                .map(|saved| crate::scan::image::sbom::cyclonedx(&saved.inventory.sbom_subject()))
            {
                Some(bom) => {
                    cosign::attest(
                        registry,
                        repo,
                        &digest,
                        &key,
                        "https://cyclonedx.org/bom",
                        bom,
                    )
                    .await
                    .map_err(|e| st.fail(ReleaseError::Attest(e.into())))?;
                    out.attestations
                        .push("https://cyclonedx.org/bom".to_string());
                }
                None => notice(
                    reporter,
                    "No SBOM of the image is available; the sbom attestation was skipped".into(),
                ),
            },
            _ => {}
        }
    }
    st.ok(
        format!(
            "Image signed: {}@{} with {}{}",
            repo.name(),
            digest,
            sign_cfg.key,
            if out.attestations.is_empty() {
                String::new()
            } else {
                format!("; attested: {}", out.attestations.join(", "))
            }
        ),
        serde_json::json!({"digest": digest, "key": sign_cfg.key, "attestations": out.attestations}),
    );
    Ok(key)
}

/// Opens (or updates) the deployment pull requests. With `require-signature` (the
/// default when the project signs), the digest must carry a valid signature by the
/// project's key in the registry first.
async fn gitops(
    input: &ReleaseInput<'_>,
    registry: &Registry,
    repo: &ImageRef,
    out: &mut Released,
    key: Option<&crate::sign::VerifyingKey>,
    reporter: &dyn Reporter,
) -> Result<(), ReleaseError> {
    for target in input.gitops {
        let st = Stage::start(reporter, "gitops");
        if target.require_signature.unwrap_or(input.sign.is_some()) {
            let Some(key) = key else {
                return Err(st.fail(ReleaseError::GitopsNoKey {
                    repo: target.config.repo.clone(),
                }));
            };
            cosign::verify(registry, repo, &out.digest, key)
                .await
                .map_err(|e| st.fail(ReleaseError::GitopsRefused(e.into())))?;
        }
        let req = crate::gitops::BumpRequest {
            config: target.config.clone(),
            image: repo.name(),
            digest: out.digest.clone(),
            tag: out.tags.first().cloned(),
            token: target.config.token(input.gitops_tokens),
        };
        let o = crate::gitops::bump(&req).await.map_err(|e| {
            st.fail(ReleaseError::GitopsBump {
                repo: target.config.repo.clone(),
                source: e.into(),
            })
        })?;
        let pr = o.pull_request.as_ref().map(|p| p.url.clone());
        if let Some(url) = &pr {
            out.pull_requests.push(url.clone());
        }
        st.ok(
            format!(
                "GitOps: {} {:?} on {}{}",
                o.repository,
                o.status,
                o.branch,
                pr.map(|u| format!(", pull request {u}"))
                    .unwrap_or_default()
            ),
            serde_json::to_value(&o).unwrap_or_default(),
        );
    }
    Ok(())
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
