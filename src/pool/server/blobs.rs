//! Content-addressed blobs (source archives, artifacts): a local directory or S3.
//! Names are lower-case hex SHA-256; a blob is stored under `sha256/<first two>/<hex>`.

use crate::pool::archive::is_sha256_hex;
use std::path::{Path, PathBuf};

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

/// Where blobs live.
#[derive(Clone)]
pub enum BlobStore {
    Local(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
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

    /// Stores `bytes` (whose SHA-256 the caller checked) atomically.
    pub async fn put(&self, sha: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let rel = rel(sha)?;
        match self {
            BlobStore::Local(root) => {
                let path = root.join(&rel);
                let dir = path.parent().unwrap_or(root).to_path_buf();
                let io = |path: &Path, source| BlobError::Io {
                    path: path.to_path_buf(),
                    source,
                };
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| io(&dir, e))?;
                let tmp = dir.join(format!(
                    ".{sha}.{}.{}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                tokio::fs::write(&tmp, bytes)
                    .await
                    .map_err(|e| io(&tmp, e))?;
                if let Err(e) = tokio::fs::rename(&tmp, &path).await {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(io(&path, e));
                }
                Ok(())
            }
            BlobStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = Self::s3_key(prefix, &rel);
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(bytes.to_vec().into())
                    .send()
                    .await
                    .map_err(|e| BlobError::S3 {
                        bucket: bucket.clone(),
                        key,
                        detail: crate::aws_config::error_chain(&e),
                    })?;
                Ok(())
            }
        }
    }

    /// The blob's bytes, or `None` when it is not stored.
    pub async fn get(&self, sha: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let rel = rel(sha)?;
        match self {
            BlobStore::Local(root) => {
                let path = root.join(&rel);
                match tokio::fs::read(&path).await {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(BlobError::Io { path, source }),
                }
            }
            BlobStore::S3 {
                client,
                bucket,
                prefix,
            } => {
                let key = Self::s3_key(prefix, &rel);
                let s3err = |detail: String| BlobError::S3 {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    detail,
                };
                match client.get_object().bucket(bucket).key(&key).send().await {
                    Ok(out) => {
                        let data = out.body.collect().await.map_err(|e| s3err(e.to_string()))?;
                        Ok(Some(data.into_bytes().to_vec()))
                    }
                    Err(e) => {
                        if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                            Ok(None)
                        } else {
                            Err(s3err(crate::aws_config::error_chain(&e)))
                        }
                    }
                }
            }
        }
    }
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
}
