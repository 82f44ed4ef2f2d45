//! Errors of the advisory database. Clonable so a failed lazy load can be reported to
//! every caller that asks for the same ecosystem.

use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OsvError {
    #[error("cannot read advisory data {path}: {source} (check the path given to --advisories, or run `runner db update`)")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("advisory dump {path} is not a readable zip: {source} (delete it and run `runner db update` again)")]
    Zip {
        path: PathBuf,
        #[source]
        source: Arc<zip::result::ZipError>,
    },
    #[error("advisory record {entry} in {path} is not valid OSV JSON: {source} (the dump may be truncated; run `runner db update` again)")]
    Json {
        path: PathBuf,
        entry: String,
        #[source]
        source: Arc<serde_json::Error>,
    },
    #[error("Alpine secdb file {path} cannot be read: {message} (expected the YAML layout of alpine-secdb: packages[].pkg.secfixes)")]
    Secdb { path: PathBuf, message: String },
    #[error("{path} holds no advisory data: expected `<ecosystem>/all.zip`, `<ecosystem>/*.json` or `alpine-secdb/v*/*.yaml` below it (run `runner db update --advisories {path}` first)")]
    NoData { path: PathBuf },
    #[error("downloading {url} failed: {message} (check the network or --base-url)")]
    Fetch { url: String, message: String },
    #[error("download of {url} is not a valid zip: {source} (the server returned something else; check --base-url)")]
    BadDownload {
        url: String,
        #[source]
        source: Arc<zip::result::ZipError>,
    },
}

impl OsvError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OsvError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }
    pub(crate) fn zip(path: impl Into<PathBuf>, source: zip::result::ZipError) -> Self {
        OsvError::Zip {
            path: path.into(),
            source: Arc::new(source),
        }
    }
    pub(crate) fn json(
        path: impl Into<PathBuf>,
        entry: impl Into<String>,
        source: serde_json::Error,
    ) -> Self {
        OsvError::Json {
            path: path.into(),
            entry: entry.into(),
            source: Arc::new(source),
        }
    }
}
