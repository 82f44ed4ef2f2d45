//! Pulls an image from a registry into the engine: how a cold agent gets the layers that
//! `cache-from` names, so the classic builder can reuse them (`docker pull X || true;
//! docker build --cache-from X`, done through runner's registry client so ECR tokens and
//! endpoint overrides apply as for the push).
//!
//! The engine gets a `docker save` archive (`docker load`): the manifest, the config, and
//! the compressed layers it does not already have (a layer whose chain is on the engine is
//! left out; `docker load` only reads the layers it lacks). The engine checks every layer
//! against the config's diff IDs, and every blob here is checked against its digest.

use super::error::PublishError;
use super::reference::ImageRef;
use super::registry::Registry;
use crate::docker::DockerEngine;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use tokio::io::AsyncWriteExt as _;

/// What a pull did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Pulled {
    /// The image ID (`sha256:` of the config).
    pub id: String,
    /// The engine had the image already (only tagged).
    pub already_local: bool,
    pub layers: usize,
    /// Layers downloaded (the others were on the engine).
    pub layers_fetched: usize,
    /// Compressed bytes downloaded.
    pub bytes_fetched: u64,
}

fn bad(reference: &str, reason: impl std::fmt::Display) -> PublishError {
    PublishError::Protocol {
        registry: reference.split('/').next().unwrap_or_default().to_string(),
        what: format!("read the manifest of {reference}"),
        status: 200,
        detail: reason.to_string(),
    }
}

/// The platform's name in image indexes.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Appends one file to the archive, off the async threads.
async fn add(
    mut archive: tar::Builder<std::fs::File>,
    name: String,
    data: Vec<u8>,
    path: &Path,
) -> Result<tar::Builder<std::fs::File>, PublishError> {
    let shown = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        archive
            .append_data(&mut h, &name, &data[..])
            .map(|()| archive)
    })
    .await
    .map_err(|e| PublishError::io("write", &shown, std::io::Error::other(e)))?
    .map_err(|e| PublishError::io("write", &shown, e))
}

/// Pulls `image` (tag or digest) into the engine and tags it `image`'s name as written,
/// so that `cache-from: [image]` finds it. `Ok(None)`: the registry has no such image
/// (a project's first build).
pub async fn pull_into_engine(
    engine: &DockerEngine,
    registry: &Registry,
    image: &ImageRef,
    local_tag: (&str, &str),
    work_dir: &Path,
) -> Result<Option<Pulled>, PublishError> {
    let shown = image.to_string();
    let Some(mut manifest) = registry
        .get_manifest(&image.repository, image.manifest_reference())
        .await?
    else {
        return Ok(None);
    };
    let mut doc: Value = serde_json::from_slice(&manifest.bytes).map_err(|e| bad(&shown, e))?;
    if let Some(list) = doc.get("manifests").and_then(Value::as_array) {
        // An index: this host's platform, else the first.
        let pick = list
            .iter()
            .find(|m| {
                m["platform"]["os"] == "linux" && m["platform"]["architecture"] == host_arch()
            })
            .or_else(|| list.first())
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| bad(&shown, "an index without manifests"))?
            .to_string();
        manifest = registry
            .get_manifest(&image.repository, &pick)
            .await?
            .ok_or_else(|| PublishError::NotFound {
                reference: format!("{}@{pick}", image.name()),
            })?;
        doc = serde_json::from_slice(&manifest.bytes).map_err(|e| bad(&shown, e))?;
    }
    let config_digest = doc["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad(&shown, "no config digest"))?
        .to_string();
    // The config is read whole (its descriptor's size, within a limit); each layer at
    // most its descriptor's size (the digest check refuses anything else anyway).
    let config_size = doc["config"]["size"]
        .as_u64()
        .unwrap_or(registry.limits().max_config)
        .min(registry.limits().max_config);
    let layers: Vec<(String, u64)> = doc["layers"]
        .as_array()
        .ok_or_else(|| bad(&shown, "no layers"))?
        .iter()
        .map(|l| Some((l["digest"].as_str()?.to_string(), l["size"].as_u64()?)))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(&shown, "a layer without a digest or a size"))?;
    let mut pulled = Pulled {
        id: config_digest.clone(),
        layers: layers.len(),
        ..Default::default()
    };
    let tag = |engine: &DockerEngine| {
        let id = config_digest.clone();
        let (repo, t) = (local_tag.0.to_string(), local_tag.1.to_string());
        let engine = engine.clone();
        async move {
            engine
                .tag_image(&id, &repo, &t)
                .await
                .map_err(|e| PublishError::LocalImage {
                    image: id,
                    detail: e.to_string(),
                })
        }
    };
    if engine.image_info(&config_digest).await.is_ok() {
        pulled.already_local = true;
        tag(engine).await?;
        return Ok(Some(pulled));
    }

    let config = registry
        .get_blob(&image.repository, &config_digest, config_size)
        .await?;
    let cfg: Value = serde_json::from_slice(&config).map_err(|e| bad(&shown, e))?;
    let diff_ids: Vec<String> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(bad(
            &shown,
            format!(
                "{} layers but {} diff IDs in the config",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    // The longest bottom run of layers whose chain the engine has.
    let chains = engine
        .local_layer_chains()
        .await
        .map_err(|e| PublishError::LocalImage {
            image: shown.clone(),
            detail: e.to_string(),
        })?;
    let present = chains
        .iter()
        .map(|c| c.iter().zip(&diff_ids).take_while(|(a, b)| a == b).count())
        .max()
        .unwrap_or(0);

    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let layer_names: Vec<String> = diff_ids
        .iter()
        .map(|d| format!("{}/layer.tar", hex(d)))
        .collect();
    let save_manifest = serde_json::json!([{
        "Config": format!("{}.json", hex(&config_digest)),
        "RepoTags": [],
        "Layers": layer_names,
    }]);
    // The archive goes to a file, one blob in memory at a time.
    std::fs::create_dir_all(work_dir).map_err(|e| PublishError::io("create", work_dir, e))?;
    let file = tempfile::Builder::new()
        .prefix("runner-pull-")
        .suffix(".tar")
        .tempfile_in(work_dir)
        .map_err(|e| PublishError::io("create a file in", work_dir, e))?;
    let path = file.path().to_path_buf();
    let mut archive = tar::Builder::new(
        file.as_file()
            .try_clone()
            .map_err(|e| PublishError::io("open", &path, e))?,
    );
    archive = add(
        archive,
        "manifest.json".into(),
        save_manifest.to_string().into_bytes(),
        &path,
    )
    .await?;
    archive = add(
        archive,
        format!("{}.json", hex(&config_digest)),
        config,
        &path,
    )
    .await?;
    // Layers are streamed into the archive behind their entry's header (the size is the
    // descriptor's, which the download must match): never a whole layer in memory.
    let mut out = tokio::fs::File::from_std(
        file.as_file()
            .try_clone()
            .map_err(|e| PublishError::io("open", &path, e))?,
    );
    for (i, (blob, size)) in layers.iter().enumerate().skip(present) {
        let mut h = tar::Header::new_gnu();
        h.set_path(&layer_names[i])
            .map_err(|e| PublishError::io("write", &path, e))?;
        h.set_size(*size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let io = |e| PublishError::io("write", &path, e);
        out.write_all(h.as_bytes()).await.map_err(io)?;
        registry
            .get_blob_into(&image.repository, blob, *size, &mut out)
            .await?;
        let padding = (512 - size % 512) % 512;
        let zeros = [0u8; 512];
        out.write_all(&zeros[..usize::try_from(padding).unwrap_or(0)])
            .await
            .map_err(io)?;
        out.flush().await.map_err(io)?;
        pulled.layers_fetched += 1;
        pulled.bytes_fetched += size;
    }
    tokio::task::spawn_blocking(move || archive.into_inner().and_then(|mut f| f.flush()))
        .await
        .map_err(|e| PublishError::io("write", &path, std::io::Error::other(e)))?
        .map_err(|e| PublishError::io("write", &path, e))?;
    engine
        .load_image(&path)
        .await
        .map_err(|e| PublishError::LocalImage {
            image: shown.clone(),
            detail: e.to_string(),
        })?;
    tag(engine).await?;
    Ok(Some(pulled))
}
