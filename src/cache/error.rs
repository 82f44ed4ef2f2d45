//! Errors of the build cache.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A `cache.paths` pattern that cannot be used.
    #[error("cache path `{pattern}` is not usable: {reason}")]
    BadPath { pattern: String, reason: String },

    /// A cache key that cannot be stored (empty, control characters).
    #[error("cache key `{key}` is not usable: {reason}; use printable text such as `deps-<hash>`")]
    BadKey { key: String, reason: &'static str },

    /// A remote cache location (`s3://bucket/prefix`) that cannot be used.
    #[error("cache location `{location}` is not usable: {reason}")]
    BadLocation { location: String, reason: String },

    /// A Docker archive stream handed to `build_entry` that does not look like the
    /// archive of its cache path.
    #[error("the archive of cache path `{pattern}` is not usable: {reason}")]
    BadInput { pattern: String, reason: String },

    /// A cache entry that would write somewhere it must not (tar-slip, symlink escape,
    /// device file). Nothing was restored.
    #[error("cache entry refused: `{path}` {reason}; nothing was restored")]
    Unsafe { path: String, reason: String },

    /// A cache entry or blob that cannot be read back (truncated, bad checksum, missing).
    /// The caller treats it as a cache miss.
    #[error("cache entry is corrupt: {reason}")]
    Corrupt { reason: String },

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An I/O error on a stream (no file name to show).
    #[error("cannot {action}: {source}")]
    Stream {
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl CacheError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CacheError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        CacheError::Corrupt {
            reason: reason.into(),
        }
    }

    /// `true` for errors the caller should treat as a miss (after removing the entry).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, CacheError::Corrupt { .. })
    }
}
