//! Content-addressed blobs (source archives, artifacts): a local directory or S3.
//! Names are lower-case hex SHA-256; a blob is stored under `sha256/<first two>/<hex>`.
//!
//! Nothing is held in memory whole: an upload is streamed into a temporary file while it
//! is hashed and counted ([`BlobStore::receive`], refused past its cap), checked from that
//! file, then renamed into place (or sent to S3 from it); a download streams from the file
//! or from S3 ([`BlobStore::open`]).

use crate::pool::archive::is_sha256_hex;
use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Why a blob could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("`{0}` is not a SHA-256 (64 lower-case hex digits)")]
    BadName(String),
    #[error("blob store `{path}`: {source}; check that the directory exists and is writable")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("S3 blob store s3://{bucket}/{key}: {detail}")]
    S3 {
        bucket: String,
        key: String,
        detail: String,
    },
}

/// Why an upload was not received.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the upload is larger than {limit} bytes; the server refuses it")]
    TooLarge { limit: u64 },
    #[error("the upload was interrupted: {0}; send it again")]
    Body(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// An upload received into a temporary file (removed when dropped unless stored).
#[derive(Debug)]
pub struct Incoming {
    pub sha256: String,
    pub size: u64,
    file: tempfile::NamedTempFile,
}

impl Incoming {
    /// A new handle on the received bytes, from their start.
    pub fn reader(&self) -> std::io::Result<std::fs::File> {
        self.file.reopen()
    }
}

/// A stored blob opened for reading.
pub struct BlobRead {
    pub size: u64,
    pub body: Body,
}

/// Where blobs live.
#[derive(Clone)]
pub enum BlobStore {
    Local(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
        /// Where uploads are received before they go to S3.
        staging: PathBuf,
    },
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobStore::Local(p) => write!(f, "BlobStore::Local({})", p.display()),
            BlobStore::S3 { bucket, prefix, .. } => {
                write!(f, "BlobStore::S3(s3://{bucket}/{prefix})")
            }
        }
    }
}

fn rel(sha: &str) -> Result<String, BlobError> {
    if !is_sha256_hex(sha) {
        return Err(BlobError::BadName(sha.to_string()));
    }
    Ok(format!("sha256/{}/{sha}", &sha[..2]))
}

impl BlobStore {
    fn s3_key(prefix: &str, rel: &str) -> String {
        let p = prefix.trim_matches('/');
        if p.is_empty() {
            rel.to_string()
        } else {
            format!("{p}/{rel}")
        }
    }

    /// Checks the store can be used (at start-up): the directory can be created, or the
    /// S3 bucket exists and answers.
    pub async fn check(&self) -> Result<(), BlobError> {
        match self {
            BlobStore::Local(root) => {
                tokio::fs::create_dir_all(root)
                    .await
                    .map_err(|source| BlobError::Io {
                        path: root.clone(),
                        source,
                    })
            }
            BlobStore::S3 {
                client,
                bucket,
                prefix,
                ..
            } => match client.head_bucket().bucket(bucket).send().await {
                Ok(_) => Ok(()),
                Err(e) => Err(BlobError::S3 {
                    bucket: bucket.clone(),
                    key: prefix.clone(),
                    detail: format!(
                        "the bucket cannot be used ({}); create it, or fix --blobs, \
                         --s3-endpoint and the AWS credentials",
                        crate::aws_config::error_chain(&e)
                    ),
                }),
            },
        }
    }

    pub async fn exists(&self, sha: &str) -> Result<bool, BlobError> {
        let rel = rel(sha)?;
        match self {
            BlobStore::Local(root) => {
                let path = root.join(&rel);
                match tokio::fs::metadata(&path).await {
                    Ok(m) => Ok(m.is_file()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(source) => Err(BlobError::Io { path, source }),
                }
            }
            BlobStore::S3 {
                client,
                bucket,
                prefix,
                ..
            } => {
                let key = Self::s3_key(prefix, &rel);
                match client.head_object().bucket(bucket).key(&key).send().await {
                    Ok(_) => Ok(true),
                    Err(e) => {
                        if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                            Ok(false)
                        } else {
                            Err(BlobError::S3 {
                                bucket: bucket.clone(),
                                key,
                                detail: crate::aws_config::error_chain(&e),
                            })
                        }
                    }
                }
            }
        }
    }

    /// Where uploads are received: inside the blob directory (so a rename stores them),
    /// or the S3 store's staging directory.
    fn staging(&self) -> PathBuf {
        match self {
            BlobStore::Local(root) => root.join(".incoming"),
            BlobStore::S3 { staging, .. } => staging.clone(),
        }
    }

    /// Streams `body` into a temporary file while hashing it; refuses more than `limit`
    /// bytes (the file is removed).
    pub async fn receive(&self, body: Body, limit: u64) -> Result<Incoming, ReceiveError> {
        let dir = self.staging();
        let io = |path: &Path, source| BlobError::Io {
            path: path.to_path_buf(),
            source,
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io(&dir, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&dir)
            .map_err(|e| io(&dir, e))?;
        let path = tmp.path().to_path_buf();
        let std_file = tmp.as_file().try_clone().map_err(|e| io(&path, e))?;
        let mut file =
            tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(std_file));
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk.map_err(|e| ReceiveError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ReceiveError::TooLarge { limit });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| io(&path, e))?;
        }
        file.flush().await.map_err(|e| io(&path, e))?;
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Incoming {
            sha256,
            size,
            file: tmp,
        })
    }

    /// Stores a received upload under its SHA-256 (atomically: a rename, or one S3 put).
    pub async fn store(&self, incoming: Incoming) -> Result<(), BlobError> {
        let rel = rel(&incoming.sha256)?;
        match self {
            BlobStore::Local(root) => {
                let path = root.join(&rel);
                let dir = path.parent().unwrap_or(root).to_path_buf();
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|source| BlobError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                let target = path.clone();
                tokio::task::spawn_blocking(move || {
                    incoming
                        .file
                        .persist(&target)
                        .map(|_| ())
                        .map_err(|e| e.error)
                })
                .await
                .map_err(|e| BlobError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?
                .map_err(|source| BlobError::Io { path, source })
            }
            BlobStore::S3 {
                client,
                bucket,
                prefix,
                ..
            } => {
                let key = Self::s3_key(prefix, &rel);
                let s3err = |detail: String| BlobError::S3 {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    detail,
                };
                let body = aws_sdk_s3::primitives::ByteStream::from_path(incoming.file.path())
                    .await
                    .map_err(|e| s3err(e.to_string()))?;
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_length(i64::try_from(incoming.size).unwrap_or(i64::MAX))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| s3err(crate::aws_config::error_chain(&e)))?;
                Ok(())
            }
        }
    }

    /// Stores `bytes` (whose SHA-256 the caller checked) atomically.
    pub async fn put(&self, sha: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let mut incoming = self
            .receive(Body::from(bytes.to_vec()), u64::MAX)
            .await
            .map_err(|e| match e {
                ReceiveError::Blob(b) => b,
                other => BlobError::Io {
                    path: self.staging(),
                    source: std::io::Error::other(other.to_string()),
                },
            })?;
        incoming.sha256 = sha.to_string();
        self.store(incoming).await
    }

    /// The blob as a stream, or `None` when it is not stored.
    pub async fn open(&self, sha: &str) -> Result<Option<BlobRead>, BlobError> {
        let rel = rel(sha)?;
        match self {
            BlobStore::Local(root) => {
                let path = root.join(&rel);
                let file = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(BlobError::Io { path, source }),
                };
                let size = file
                    .metadata()
                    .await
                    .map_err(|source| BlobError::Io { path, source })?
                    .len();
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
                Ok(Some(BlobRead {
                    size,
                    body: Body::from_stream(stream),
                }))
            }
            BlobStore::S3 {
                client,
                bucket,
                prefix,
                ..
            } => {
                let key = Self::s3_key(prefix, &rel);
                match client.get_object().bucket(bucket).key(&key).send().await {
                    Ok(out) => {
                        let size = out
                            .content_length()
                            .and_then(|l| u64::try_from(l).ok())
                            .unwrap_or(0);
                        let stream = tokio_util::io::ReaderStream::with_capacity(
                            out.body.into_async_read(),
                            256 * 1024,
                        );
                        Ok(Some(BlobRead {
                            size,
                            body: Body::from_stream(stream),
                        }))
                    }
                    Err(e) => {
                        if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                            Ok(None)
                        } else {
                            Err(BlobError::S3 {
                                bucket: bucket.clone(),
                                key,
                                detail: crate::aws_config::error_chain(&e),
                            })
                        }
                    }
                }
            }
        }
    }

    /// The blob as a file to read from (the stored file itself, or a temporary copy of
    /// an S3 object), or `None` when it is not stored.
    pub async fn local(&self, sha: &str) -> Result<Option<LocalBlob>, BlobError> {
        let rel = rel(sha)?;
        match self {
            BlobStore::Local(root) => {
                let path = root.join(&rel);
                match std::fs::File::open(&path) {
                    Ok(file) => {
                        let size = file
                            .metadata()
                            .map_err(|source| BlobError::Io { path, source })?
                            .len();
                        Ok(Some(LocalBlob {
                            file,
                            size,
                            _temp: None,
                        }))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(BlobError::Io { path, source }),
                }
            }
            BlobStore::S3 { .. } => {
                let Some(read) = self.open(sha).await? else {
                    return Ok(None);
                };
                let incoming = self
                    .receive(read.body, u64::MAX)
                    .await
                    .map_err(|e| match e {
                        ReceiveError::Blob(b) => b,
                        other => BlobError::Io {
                            path: self.staging(),
                            source: std::io::Error::other(other.to_string()),
                        },
                    })?;
                let file = incoming.reader().map_err(|source| BlobError::Io {
                    path: incoming.file.path().to_path_buf(),
                    source,
                })?;
                Ok(Some(LocalBlob {
                    file,
                    size: incoming.size,
                    _temp: Some(incoming),
                }))
            }
        }
    }

    /// The blob's bytes, or `None` when it is not stored (small blobs and tests only).
    pub async fn get(&self, sha: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let Some(read) = self.open(sha).await? else {
            return Ok(None);
        };
        let bytes = axum::body::to_bytes(read.body, usize::MAX)
            .await
            .map_err(|e| BlobError::Io {
                path: PathBuf::from(sha),
                source: std::io::Error::other(e),
            })?;
        Ok(Some(bytes.to_vec()))
    }
}

/// A blob readable as a file.
pub struct LocalBlob {
    pub file: std::fs::File,
    pub size: u64,
    _temp: Option<Incoming>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn local_blobs_round_trip_and_refuse_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::Local(dir.path().to_path_buf());
        let data = b"hello";
        let sha = crate::pool::archive::sha256_hex(data);
        assert!(!store.exists(&sha).await.unwrap());
        store.put(&sha, data).await.unwrap();
        assert!(store.exists(&sha).await.unwrap());
        assert_eq!(store.get(&sha).await.unwrap().unwrap(), data);
        assert!(dir
            .path()
            .join("sha256")
            .join(&sha[..2])
            .join(&sha)
            .is_file());
        assert!(matches!(
            store.get("../../etc/passwd").await,
            Err(BlobError::BadName(_))
        ));
    }

    #[tokio::test]
    async fn uploads_stream_to_a_temp_file_capped_and_renamed_into_place() {
        use futures_util::stream;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::Local(dir.path().to_path_buf());
        let chunks = || {
            stream::iter((0..4u8).map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![i; 100_000]))))
        };
        let whole: Vec<u8> = (0..4u8).flat_map(|i| vec![i; 100_000]).collect();
        // Over the cap: refused while streaming; no file is left.
        let over = store
            .receive(Body::from_stream(chunks()), 250_000)
            .await
            .unwrap_err();
        assert!(matches!(over, ReceiveError::TooLarge { limit: 250_000 }));
        let staged = || {
            std::fs::read_dir(dir.path().join(".incoming"))
                .unwrap()
                .count()
        };
        assert_eq!(staged(), 0);
        // Within it: hashed as it streamed, stored by a rename, read back as a stream.
        let incoming = store
            .receive(Body::from_stream(chunks()), 400_000)
            .await
            .unwrap();
        assert_eq!(incoming.size, 400_000);
        let sha = crate::pool::archive::sha256_hex(&whole);
        assert_eq!(incoming.sha256, sha);
        assert_eq!(staged(), 1);
        store.store(incoming).await.unwrap();
        assert_eq!(staged(), 0);
        let read = store.open(&sha).await.unwrap().unwrap();
        assert_eq!(read.size, 400_000);
        let back = axum::body::to_bytes(read.body, usize::MAX).await.unwrap();
        assert_eq!(back.as_ref(), whole.as_slice());
        assert!(store.open(&"0".repeat(64)).await.unwrap().is_none());
    }
}
