//! The build cache inside a build: restore before INSTALL, save after a successful build.
//!
//! A cache problem never fails a build: a corrupt entry is removed and reported as a miss,
//! a store that cannot be written is a warning.

use super::ctx::Ctx;
use super::shells::Shells;
use crate::cache::{
    build_entry, covered, empty_dir, extract_engine_tar, extract_to_mounts, fingerprint,
    tar_from_mounts, tree_size, try_lock, validated_restore_tar, CacheError, CacheStore,
    EntryHandle, HostMount, VolumeLease, VolumeUse, HASH_FILES_SCRIPT,
};
use crate::docker::{BuildContainer, DockerEngine, DockerError};
use crate::event::{CacheSummary, Level};
use crate::plan::CachePlan;
use crate::plan::{BuildPlan, SourceMode};
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The container paths that get a volume: the cache paths' prefixes, outermost only,
/// except those inside a bind-mounted source directory (written on the host directly).
pub(super) fn volume_paths(plan: &BuildPlan, cache: &CachePlan) -> Vec<String> {
    let in_src = |p: &str| p == plan.src_dir || p.starts_with(&format!("{}/", plan.src_dir));
    let mut prefixes: Vec<String> = cache
        .paths
        .iter()
        .map(|p| p.prefix().to_string())
        .filter(|p| !(plan.source_mode == SourceMode::Mount && in_src(p)))
        .collect();
    prefixes.sort();
    let mut out: Vec<String> = Vec::new();
    for p in prefixes {
        if !out
            .iter()
            .any(|o| p == *o || p.starts_with(&format!("{o}/")))
        {
            out.push(p);
        }
    }
    out
}

/// What a build holds on the machine's shared state until its container is gone.
#[derive(Default)]
pub(super) struct Leases {
    /// The project's local cache volumes.
    pub volumes: Option<VolumeLease>,
    /// The project's /var/lib/docker volume (privileged builds).
    pub docker: Option<std::fs::File>,
}

/// Takes the project's local cache volumes for this build, when they can serve it: the
/// cache is both restored and saved, every cache path selects its whole directory and
/// lies in a volume, and no other build of the project holds them. Volumes whose content
/// cannot be trusted (the last build that used them did not end well) are removed first,
/// so the engine fills them from the image again.
pub(super) async fn take_volumes(
    ctx: &Ctx<'_>,
    engine: &DockerEngine,
    dir: &Path,
    cache: &CachePlan,
    volume_paths: &[String],
) -> Option<VolumeLease> {
    let in_volume = |p: &str| {
        volume_paths
            .iter()
            .any(|v| p == v || p.starts_with(&format!("{v}/")))
    };
    let usable = cache.restore
        && cache.save
        && cache
            .paths
            .iter()
            .all(|p| p.whole_tree() && in_volume(p.prefix()));
    if !usable {
        return None;
    }
    let plan = ctx.plan;
    let lease = match VolumeLease::acquire(dir, &plan.project, &plan.image, volume_paths) {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            ctx.notice(
                Level::Info,
                format!(
                    "another build of {} is using its cache volumes; this one restores from the archive",
                    plan.project
                ),
            );
            return None;
        }
        Err(e) => {
            ctx.notice(
                Level::Warning,
                format!("the cache volumes cannot be used: {e}"),
            );
            return None;
        }
    };
    // A volume removed behind runner's back (`docker volume rm`, a prune): what the
    // state says no longer holds, for any of them.
    let mut lease = lease;
    if lease.held().is_some() {
        for (_, name) in lease.volumes() {
            if !matches!(engine.volume_exists(name).await, Ok(true)) {
                lease.forget();
                break;
            }
        }
    }
    for (path, name) in lease.volumes() {
        if lease.held().is_none() {
            if let Err(e) = engine.remove_volume(name).await {
                ctx.notice(
                    Level::Warning,
                    format!(
                        "cache volume {name} could not be reset ({e}); restoring from the archive"
                    ),
                );
                return None;
            }
        }
        // Resetting a volume later needs its directory: an engine on another machine
        // gets throwaway volumes and the archive.
        let labels = [
            ("io.runner.project".to_string(), plan.project.clone()),
            ("io.runner.cache-path".to_string(), path.clone()),
        ]
        .into_iter()
        .collect();
        match engine.ensure_volume(name, labels).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = engine.remove_volume(name).await;
                return None;
            }
            Err(e) => {
                ctx.notice(
                    Level::Warning,
                    format!("cache volume {name} could not be created ({e}); restoring from the archive"),
                );
                return None;
            }
        }
    }
    Some(lease)
}

/// Takes the lock on a privileged project's /var/lib/docker volume; `None` (the build
/// gets a throwaway one) when another build of the project holds it.
pub(super) fn take_docker_volume(ctx: &Ctx<'_>, dir: &Path) -> Option<std::fs::File> {
    match try_lock(dir, &ctx.plan.project, "docker") {
        Ok(Some(lock)) => Some(lock),
        Ok(None) => {
            ctx.notice(
                Level::Info,
                format!(
                    "another build of {} is using its Docker layer cache; this one starts without it",
                    ctx.plan.project
                ),
            );
            None
        }
        Err(e) => {
            ctx.notice(
                Level::Warning,
                format!("the Docker layer cache cannot be used: {e}"),
            );
            None
        }
    }
}

/// Host directories behind the cache paths: the container's volumes and, in mount mode,
/// the source directory. Empty when the engine's paths are not reachable from here.
pub(super) async fn host_mounts(
    plan: &BuildPlan,
    container: &BuildContainer,
) -> Result<Vec<HostMount>, DockerError> {
    let mut mounts: Vec<HostMount> = container
        .volume_sources()
        .await?
        .into_iter()
        .map(|(prefix, host)| HostMount { prefix, host })
        .collect();
    if plan.source_mode == SourceMode::Mount {
        mounts.push(HostMount {
            prefix: plan.src_dir.clone(),
            host: Path::new(&plan.source_dir_host).to_path_buf(),
        });
    }
    Ok(mounts)
}

/// What restoring decided, for saving later.
pub(super) struct CacheState {
    /// The key after shell expansion.
    pub key: String,
    /// An entry with exactly this key was restored.
    pub exact_hit: bool,
}

/// Installs `codebuild-hash-files`, expands the keys in the build shell, and restores the
/// newest matching entry.
pub(super) async fn restore(
    ctx: &Ctx<'_>,
    shells: &mut Shells<'_>,
    (engine, container): (&DockerEngine, &BuildContainer),
    store: &Arc<dyn CacheStore>,
    cache: &CachePlan,
    mounts: &[HostMount],
    lease: Option<&mut VolumeLease>,
) -> Result<CacheState, DockerError> {
    if let Err(e) = container.upload_tar("/", helper_tar()).await {
        ctx.notice(
            Level::Warning,
            format!("codebuild-hash-files could not be installed: {e}"),
        );
    }
    let key = shells.expand(ctx, &cache.key).await?;
    let mut fallbacks = Vec::new();
    for f in &cache.fallback_keys {
        fallbacks.push(shells.expand(ctx, f).await?);
    }
    let mut state = CacheState {
        key: key.clone(),
        exact_hit: false,
    };
    if !cache.restore {
        return Ok(state);
    }
    let started = Instant::now();
    let mut summary = CacheSummary::new("restore", &key);
    // The store's lookup, when the volumes' decision needed it first (done once).
    let mut looked_up: Option<Result<Option<EntryHandle>, CacheError>> = None;
    if let Some(lease) = lease {
        let (store2, k, fb) = (store.clone(), key.clone(), fallbacks.clone());
        let lookup = tokio::task::spawn_blocking(move || store2.find(&k, &fb))
            .await
            .unwrap_or_else(|e| {
                Err(CacheError::Stream {
                    action: "look up the cache",
                    source: std::io::Error::other(e.to_string()),
                })
            });
        let found = lookup.as_ref().ok().and_then(Option::clone);
        looked_up = Some(lookup);
        match lease.decide(
            &key,
            &fallbacks,
            found.as_ref().map(|h| (h.key.as_str(), h.created)),
        ) {
            VolumeUse::Reuse { matched_key } => {
                // An exact hit skips the save only when the store has the entry too.
                state.exact_hit = matched_key == key
                    && found.as_ref().is_some_and(|h: &EntryHandle| h.key == key);
                let (files, bytes) = mounts
                    .iter()
                    .map(|m| tree_size(&m.host))
                    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                summary.hit = true;
                summary.matched_key = Some(matched_key);
                summary.source = Some("volume");
                summary.files = files;
                summary.bytes = bytes;
                summary.duration_ms = started.elapsed().as_millis() as u64;
                ctx.record_cache(summary);
                return Ok(state);
            }
            VolumeUse::Reset if lease.held().is_some() => {
                if let Err(e) = reset_volumes(ctx, engine, lease, mounts).await {
                    summary.note = Some(format!("the cache volumes could not be reset: {e}"));
                    summary.duration_ms = started.elapsed().as_millis() as u64;
                    ctx.record_cache(summary);
                    return Err(e);
                }
            }
            VolumeUse::Reset => {}
        }
    }
    let store2 = store.clone();
    let paths = cache.paths.clone();
    let (k, fb) = (key.clone(), fallbacks.clone());
    // Find, verify and validate off the async threads; nothing reaches the container
    // unless the whole entry checked out.
    let found = tokio::task::spawn_blocking(move || {
        let found = match looked_up {
            Some(lookup) => lookup?,
            None => store2.find(&k, &fb)?,
        };
        let Some(handle) = found else {
            return Ok(None);
        };
        let restored = store2.open(&handle).and_then(|reader| {
            let mut tar = Vec::new();
            validated_restore_tar(reader, &paths, &mut tar).map(|stats| (tar, stats))
        });
        match restored {
            Ok((tar, stats)) => Ok(Some((handle, tar, stats))),
            Err(e) if e.is_corrupt() => {
                let _ = store2.remove(&handle);
                Err(e)
            }
            Err(e) => Err(e),
        }
    })
    .await
    .unwrap_or_else(|e| {
        Err(CacheError::Stream {
            action: "restore the cache",
            source: std::io::Error::other(e.to_string()),
        })
    });
    match found {
        Ok(Some((handle, tar, stats))) => {
            // Straight into the volumes' host directories when every cache path has one
            // (much faster than extracting through the engine), else through the engine.
            if cache.paths.iter().all(|p| covered(mounts, p.prefix())) {
                let mounts = mounts.to_vec();
                tokio::task::spawn_blocking(move || extract_to_mounts(&tar[..], &mounts))
                    .await
                    .map_err(|e| DockerError::Shell(e.to_string()))?
                    .map_err(|e| DockerError::Shell(format!("restoring the cache: {e}")))?;
            } else {
                container.upload_tar("/", tar).await?;
            }
            state.exact_hit = handle.key == key;
            summary.hit = true;
            summary.source = Some("archive");
            summary.matched_key = Some(handle.key.clone());
            summary.files = stats.files;
            summary.bytes = stats.file_bytes;
            summary.compressed_bytes = handle.size;
        }
        Ok(None) => {}
        Err(e) => {
            let what = if e.is_corrupt() {
                "the cache entry was damaged and has been removed"
            } else {
                "the cache entry could not be restored"
            };
            summary.note = Some(format!("{what}: {e}"));
        }
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    ctx.record_cache(summary);
    Ok(state)
}

/// Puts the volumes back to the image's content at their paths: they held another key's
/// state, which must not leak into this build.
async fn reset_volumes(
    ctx: &Ctx<'_>,
    engine: &DockerEngine,
    lease: &mut VolumeLease,
    mounts: &[HostMount],
) -> Result<(), DockerError> {
    lease.forget();
    for (prefix, name) in lease.volumes() {
        let Some(mount) = mounts.iter().find(|m| &m.prefix == prefix) else {
            return Err(DockerError::Shell(format!(
                "cache volume {name} has no directory on this machine to reset"
            )));
        };
        let host = mount.host.clone();
        tokio::task::spawn_blocking(move || empty_dir(&host))
            .await
            .map_err(|e| DockerError::Shell(e.to_string()))?
            .map_err(|e| DockerError::Shell(format!("resetting a cache volume: {e}")))?;
        if let Some(tar) = engine
            .image_path_tar(&ctx.plan.image, prefix, &ctx.plan.build_id)
            .await?
        {
            let (prefix, mounts) = (prefix.clone(), mounts.to_vec());
            tokio::task::spawn_blocking(move || extract_engine_tar(&tar[..], &prefix, &mounts))
                .await
                .map_err(|e| DockerError::Shell(e.to_string()))?
                .map_err(|e| DockerError::Shell(format!("resetting a cache volume: {e}")))?;
        }
    }
    Ok(())
}

/// Records that the volumes hold what a successful build left under the key, and the
/// fingerprint of what the store holds for it when that came from these volumes.
pub(super) fn commit_volumes(
    ctx: &Ctx<'_>,
    lease: Option<&VolumeLease>,
    state: &CacheState,
    saved_fingerprint: Option<String>,
) {
    if let Some(lease) = lease {
        if let Err(e) = lease.commit(&state.key, saved_fingerprint) {
            ctx.notice(
                Level::Warning,
                format!("the cache volumes' state could not be written ({e}); the next build restores from the archive"),
            );
        }
    }
}

/// Saves the cache paths under the key (skipped when an entry with the user's own key was
/// restored: such keys are immutable, as with CodeBuild's and GitHub's caches; and when
/// the cache volumes are exactly as they were when the store's entry for the key was
/// saved from them). Returns the volumes' fingerprint when the store's entry for the key
/// is now theirs.
pub(super) async fn save(
    ctx: &Ctx<'_>,
    container: &BuildContainer,
    store: &Arc<dyn CacheStore>,
    cache: &CachePlan,
    state: &CacheState,
    (mounts, lease): (&[HostMount], Option<&VolumeLease>),
    scratch: &Path,
) -> Option<String> {
    if !cache.save {
        return None;
    }
    let started = Instant::now();
    let mut summary = CacheSummary::new("save", &state.key);
    if cache.user_key && state.exact_hit {
        summary.note = Some("an entry with this key exists; keys are immutable".into());
        ctx.record_cache(summary);
        return None;
    }
    // The volumes' directories, fingerprinted before they are read for the entry.
    let current = match lease {
        Some(lease) => {
            let dirs: Vec<std::path::PathBuf> = lease
                .volumes()
                .iter()
                .filter_map(|(prefix, _)| mounts.iter().find(|m| &m.prefix == prefix))
                .map(|m| m.host.clone())
                .collect();
            tokio::task::spawn_blocking(move || fingerprint(&dirs))
                .await
                .ok()
        }
        None => None,
    };
    let unchanged = match (lease.and_then(VolumeLease::held), &current) {
        (Some(held), Some(now)) => {
            held.key == state.key && held.saved_fingerprint.as_deref() == Some(now.as_str())
        }
        _ => false,
    };
    if unchanged {
        let (store2, key) = (store.clone(), state.key.clone());
        let stored = tokio::task::spawn_blocking(move || store2.lookup(&key))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        if stored.is_some() {
            summary.note =
                Some("unchanged since the entry was saved from the cache volumes".into());
            summary.duration_ms = started.elapsed().as_millis() as u64;
            ctx.record_cache(summary);
            return current;
        }
    }
    let mut saved = None;
    match save_entry(container, store, cache, &state.key, mounts, scratch).await {
        Ok(Some(stats)) => {
            saved = current;
            if stats.skipped > 0 {
                summary.note = Some(format!(
                    "{} entries left out: devices, fifos, sockets, or links a restore would refuse",
                    stats.skipped
                ));
            }
            summary.hit = true;
            summary.files = stats.files;
            summary.bytes = stats.file_bytes;
            summary.compressed_bytes = stats.bytes_compressed;
        }
        Ok(None) => summary.note = Some("none of the cache paths exist".into()),
        Err(e) => summary.note = Some(format!("the cache could not be saved: {e}")),
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    ctx.record_cache(summary);
    saved
}

/// Why the cache paths could not be saved (reported in the save's summary, never a
/// failed build).
#[derive(Debug, thiserror::Error)]
pub(super) enum SaveError {
    #[error("{}: {source} (runner's scratch directory; make the data directory writable or set RUNNER_DATA_DIR)", dir.display())]
    Scratch {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a temporary file in {}: {source} (is the disk full?)", dir.display())]
    TempFile {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot rewind a temporary file: {0}")]
    Rewind(#[source] std::io::Error),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The blocking task building the entry panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

async fn save_entry(
    container: &BuildContainer,
    store: &Arc<dyn CacheStore>,
    cache: &CachePlan,
    key: &str,
    mounts: &[HostMount],
    scratch: &Path,
) -> Result<Option<crate::cache::EntryStats>, SaveError> {
    std::fs::create_dir_all(scratch).map_err(|source| SaveError::Scratch {
        dir: scratch.to_path_buf(),
        source,
    })?;
    let mut inputs = Vec::new();
    for path in &cache.paths {
        let mut file = tempfile::tempfile_in(scratch).map_err(|source| SaveError::TempFile {
            dir: scratch.to_path_buf(),
            source,
        })?;
        let found = if covered(mounts, path.prefix()) {
            tar_from_mounts(path, mounts, &mut file)?
        } else {
            container.download_tar(path.prefix(), &mut file).await?
        };
        if !found {
            continue;
        }
        file.seek(SeekFrom::Start(0)).map_err(SaveError::Rewind)?;
        inputs.push((path.clone(), file));
    }
    if inputs.is_empty() {
        return Ok(None);
    }
    let store = store.clone();
    let key = key.to_string();
    let scratch = scratch.to_path_buf();
    let stats = tokio::task::spawn_blocking(move || -> Result<_, CacheError> {
        let mut entry = tempfile::tempfile_in(&scratch)
            .map_err(|e| CacheError::io("create a temporary file in", &scratch, e))?;
        let stats = build_entry(inputs, &mut entry)?;
        entry
            .seek(SeekFrom::Start(0))
            .map_err(|e| CacheError::io("rewind", &scratch, e))?;
        store.save(&key, &stats.sha256, &mut entry)?;
        Ok(stats)
    })
    .await??;
    Ok(Some(stats))
}

/// A tar holding `usr/local/bin/codebuild-hash-files` (mode 0755).
fn helper_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(HASH_FILES_SCRIPT.len() as u64);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let _ = b.append_data(
        &mut header,
        "usr/local/bin/codebuild-hash-files",
        HASH_FILES_SCRIPT.as_bytes(),
    );
    b.into_inner().unwrap_or_default()
}
