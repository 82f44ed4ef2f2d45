//! `cache:` — CodeBuild-compatible build caches: cache path patterns, content-addressed
//! zstd tar entries built from Docker archive streams, validated restore tars, and the
//! key → entry store.

mod archive;
mod error;
mod key;
mod mounts;
mod paths;
mod s3;
mod store;
mod volumes;

pub use archive::{build_entry, validated_restore_tar, EntryStats, RestoreStats};
pub use error::CacheError;
pub use key::{default_key, HASH_FILES_SCRIPT};
pub use mounts::{covered, extract_engine_tar, extract_to_mounts, tar_from_mounts, HostMount};
pub use paths::CachePath;
pub use s3::{S3Location, S3Store};
pub use store::{CacheStore, EntryHandle, EvictStats, LocalStore, DEFAULT_MAX_BYTES};
pub use volumes::{
    empty_dir, fingerprint, invalidate, tree_size, try_lock, volume_name, volume_prefix,
    VolumeLease, VolumeState, VolumeUse,
};
