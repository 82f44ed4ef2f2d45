//! Errors of artifact collection.

use std::path::PathBuf;

use super::glob::GlobError;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(
        "path `{path}` escapes the source directory; write `files`, `base-directory` and \
         `exclude-paths` relative to the source root without `..` or a leading `/`"
    )]
    Escapes { path: String },

    #[error(
        "invalid artifact name `{name}`: {reason}; use a plain name such as `app` or \
         `build-output`"
    )]
    InvalidName { name: String, reason: &'static str },

    #[error(
        "two artifacts would both be written to `{identifier}`; give the primary artifact a \
         `name` that differs from every secondary artifact identifier"
    )]
    DuplicateOutput { identifier: String },

    #[error(
        "the artifacts directory {} is the directory the files are collected from ({}) or \
         contains it, so nothing could be collected; pass --artifacts a directory outside \
         the source directory",
        out.display(),
        base.display()
    )]
    OutputContainsBase { out: PathBuf, base: PathBuf },

    #[error("artifact `{identifier}` has no `files`; list at least one pattern such as `**/*`")]
    NoFiles { identifier: String },

    #[error(
        "no matching artifact paths found for {pattern} under {}{detail}; check `files` and \
         `base-directory`",
        base.display()
    )]
    NoMatch {
        /// The `files:` patterns, comma separated.
        pattern: String,
        /// The base directory the patterns were matched under.
        base: PathBuf,
        /// Extra explanation (exclusions, skipped symlinks, directory patterns), possibly empty.
        detail: String,
    },

    #[error(
        "base-directory {} does not exist or is not a directory; check `base-directory` (it \
         is relative to the source root) and that the build produced it",
        path.display()
    )]
    BaseDirectoryMissing { path: PathBuf },

    #[error("invalid glob pattern `{pattern}`: {reason}; fix the pattern in the buildspec")]
    BadPattern { pattern: String, reason: String },

    #[error(
        "discard-paths would write both {} and {} as `{name}`; rename one of them, narrow \
         `files`, or turn off `discard-paths`",
        first.display(),
        second.display()
    )]
    NameCollision {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    #[error(
        "refusing to write {}: the destination would leave the artifact directory",
        path.display()
    )]
    UnsafeDestination { path: PathBuf },

    #[error(
        "cannot store {} in a zip file: the path is not valid UTF-8; rename the file or \
         collect without zip",
        path.display()
    )]
    NonUtf8Path { path: PathBuf },

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write zip file {}: {source}", path.display())]
    Zip {
        path: PathBuf,
        #[source]
        source: ::zip::result::ZipError,
    },
}

impl ArtifactError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ArtifactError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<GlobError> for ArtifactError {
    fn from(e: GlobError) -> Self {
        match e {
            GlobError::Escapes { path } => ArtifactError::Escapes { path },
            GlobError::BadPattern { pattern, reason } => {
                ArtifactError::BadPattern { pattern, reason }
            }
            GlobError::BaseDirectoryMissing { path } => {
                ArtifactError::BaseDirectoryMissing { path }
            }
            GlobError::Io {
                action,
                path,
                source,
            } => ArtifactError::Io {
                action,
                path,
                source,
            },
        }
    }
}
