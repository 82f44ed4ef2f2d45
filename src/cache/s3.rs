//! [`S3Store`]: the cache store's layout (see `store.rs`) in an S3 bucket, under a
//! prefix:
//!
//! ```text
//! s3://bucket/prefix/blobs/sha256/<hex>       compressed cache entries (immutable)
//! s3://bucket/prefix/keys/<encoded key>.json  {"key", "blob", "size", "created", "last_used"}
//! ```
//!
//! Keys are encoded as in `LocalStore` (`key_stem`), so a prefix lookup is one
//! `ListObjectsV2` of `prefix/keys/<encoded prefix>`, then a read of the candidate
//! records (the [`MAX_CANDIDATES`] most recently modified) to pick the newest by
//! `created`.
//!
//! Writes: a blob is uploaded only when `HeadObject` does not find it, with
//! `If-None-Match: *` (a concurrent upload of the same blob answers 412, which counts as
//! stored); entries up to [`SINGLE_PUT_MAX`] are one `PutObject`, larger ones a multipart
//! upload of [`PART_SIZE`] parts read from the stream as they go, two uploading while
//! the next is read (about `SINGLE_PUT_MAX` + 2 parts in memory at most). The bytes are hashed while read; a stream that
//! does not hash to the announced sha256 stores nothing (the multipart upload is
//! aborted). The key record is written after its blob, as one whole-object `PutObject`:
//! concurrent saves of a key each leave a valid record and the last writer wins.
//!
//! Reads stream the blob, verifying its size and sha256 as `LocalStore` does; a mismatch
//! (or a missing blob) is [`CacheError::Corrupt`] and removes the entry: the key record
//! when it still names that blob, and the blob (a damaged blob must go, or the next save
//! of the same content would find it and skip the upload). A concurrent save that found
//! the blob just before it was removed leaves a key naming a missing blob: a miss later,
//! never wrong content. Unreferenced blobs are not collected by the runner; use a bucket
//! lifecycle rule on the prefix (expiring `keys/` and `blobs/` alike: a key whose blob
//! expired is a miss that heals itself).
//!
//! Lookups mark the entry used (`last_used`) by rewriting its record with `If-Match` on
//! the ETag read, so a concurrent re-save is never overwritten; that write is best
//! effort (a restore-only IAM role without `s3:PutObject` still restores).
//!
//! Threads: the trait is synchronous and called from `spawn_blocking` threads. The store
//! owns a small multi-threaded tokio runtime (2 workers) on which every SDK future runs;
//! a synchronous method spawns its future there and waits on a channel. That never
//! panics whatever the calling thread (no `block_on` inside a runtime), and the SDK's
//! connection pool always lives on the one runtime that drives it (a client shared
//! across runtimes breaks when the runtime that opened a pooled connection goes away).
//! Dropping the store shuts the runtime down in the background (never blocks, also safe
//! on an async worker thread).
//!
//! Endpoints: the SDK's chain (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, profile) or
//! `AwsSettings::endpoint_url`; with any endpoint override, path-style addressing is used
//! (`http://host/bucket/key`: what moto, MinIO and most S3-compatible servers need).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bytes::{Buf, Bytes};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::archive::hex;
use super::error::CacheError;
use super::store::{
    check_key, is_sha256_hex, key_stem, key_stem_prefix, now_ns, parse_record, CacheStore,
    EntryHandle,
};
use crate::aws_config::{classify, effective_endpoint, endpoint_override, load_sdk_config};
use crate::aws_config::{AwsSettings, Failure};

/// Entries up to this size are uploaded with one `PutObject`.
pub const SINGLE_PUT_MAX: usize = 64 << 20;
/// Part size of multipart uploads (S3: at least 5 MiB, at most 10,000 parts).
pub const PART_SIZE: usize = 16 << 20;
/// Parts uploading at once.
const PARTS_IN_FLIGHT: usize = 2;
const MAX_PARTS: i32 = 10_000;
/// Key records read by a prefix lookup: the most recently modified ones.
pub const MAX_CANDIDATES: usize = 100;
/// Key records listed by a prefix lookup at most.
const MAX_LISTED: usize = 10_000;
/// Records read at once by a prefix lookup.
const READ_CONCURRENCY: usize = 8;
/// Time limit of one attempt of a request moving a blob (uploads of up to 64 MiB,
/// downloads are also guarded by the SDK's stalled-stream protection).
const BULK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);

const CREDENTIALS_HINT: &str =
    "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`";

/// Where an [`S3Store`] keeps its objects: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket`, `s3://bucket/` or `s3://bucket/some/prefix[/]`.
    pub fn parse(url: &str) -> Result<S3Location, CacheError> {
        let bad = |reason: &str| CacheError::BadLocation {
            location: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected `s3://bucket` or `s3://bucket/prefix`"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is missing"));
        }
        check_bucket(bucket).map_err(|reason| bad(&reason.to_string()))?;
        if prefix.contains(['?', '#']) {
            return Err(bad("a prefix cannot contain `?` or `#`"));
        }
        if prefix.chars().any(char::is_control) {
            return Err(bad("a prefix cannot contain control characters"));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && prefix.split('/').any(|seg| seg.is_empty()) {
            return Err(bad("the prefix has an empty path segment (`//`)"));
        }
        if prefix.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(bad("the prefix cannot contain `.` or `..` segments"));
        }
        if prefix.len() > 512 {
            return Err(bad("the prefix is longer than 512 bytes"));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The object key of `rel` (`blobs/...`, `keys/...`) under the prefix.
    fn object_key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Why a name is not a usable bucket name (S3's rules for general purpose buckets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BucketNameError {
    #[error("bucket name `{0}` must be 3 to 63 characters long; give the bucket's exact name, as `aws s3 ls` lists it")]
    Length(String),
    #[error("bucket name `{0}` may only use lowercase letters, digits, `.` and `-`, and must start and end with a letter or digit; give the bucket's exact name, as `aws s3 ls` lists it")]
    Characters(String),
    #[error("bucket name `{0}` contains `..`, which S3 does not allow; give the bucket's exact name, as `aws s3 ls` lists it")]
    DoubleDot(String),
}

/// S3's rules for (general purpose) bucket names.
fn check_bucket(bucket: &str) -> Result<(), BucketNameError> {
    if !(3..=63).contains(&bucket.len()) {
        return Err(BucketNameError::Length(bucket.to_string()));
    }
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok_chars || !ends_ok(bucket.bytes().next()) || !ends_ok(bucket.bytes().last()) {
        return Err(BucketNameError::Characters(bucket.to_string()));
    }
    if bucket.contains("..") {
        return Err(BucketNameError::DoubleDot(bucket.to_string()));
    }
    Ok(())
}

/// Clients, location and endpoint: everything the SDK futures need (no runtime, so a
/// future holding it can never be the one dropping the runtime).
#[derive(Debug, Clone)]
struct Ctx {
    /// Metadata requests (records, listings, heads): the shared 30 s attempt timeout.
    client: Client,
    /// Requests moving blobs: [`BULK_ATTEMPT_TIMEOUT`].
    bulk: Client,
    location: S3Location,
    endpoint: String,
    conditional_writes: bool,
}

/// The store's own tokio runtime; shut down in the background when the last user goes.
#[derive(Debug)]
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Rt {
    fn new() -> Result<Rt, CacheError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("runner-s3-cache")
            .enable_all()
            .build()
            .map_err(|e| CacheError::Stream {
                action: "start the S3 client's runtime",
                source: e,
            })?;
        Ok(Rt(Some(rt)))
    }

    /// Runs `fut` on the store's runtime and waits for it (see the module documentation).
    fn run<F>(&self, fut: F) -> Result<F::Output, CacheError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rx = self.start(fut)?;
        rx.recv().map_err(|_| stopped())
    }

    /// Starts `fut` on the store's runtime, for async callers (a `JoinHandle` can be
    /// awaited from any runtime).
    fn spawn<F>(&self, fut: F) -> Result<tokio::task::JoinHandle<F::Output>, CacheError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(self.0.as_ref().ok_or_else(stopped)?.spawn(fut))
    }

    /// Starts `fut` on the store's runtime; its output arrives on the channel.
    fn start<F>(&self, fut: F) -> Result<std::sync::mpsc::Receiver<F::Output>, CacheError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.0.as_ref().ok_or_else(stopped)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        Ok(rx)
    }
}

fn stopped() -> CacheError {
    CacheError::Stream {
        action: "talk to S3",
        source: io::Error::other("the S3 client's runtime stopped"),
    }
}

/// A [`CacheStore`] in an S3 bucket (see the module documentation).
#[derive(Clone)]
pub struct S3Store {
    ctx: Arc<Ctx>,
    rt: Arc<Rt>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.ctx.location.to_string())
            .field("endpoint", &self.ctx.endpoint)
            .finish()
    }
}

impl S3Store {
    /// A store at `location` with the SDK's standard configuration and `settings` on top.
    /// Blocks while the configuration loads (call it from a blocking context, or use
    /// [`S3Store::connect`]). Sends no request: see [`S3Store::check`].
    pub fn new(location: S3Location, settings: AwsSettings) -> Result<S3Store, CacheError> {
        let rt = Rt::new()?;
        let config = rt.run(async move { load_sdk_config(&settings).await })?;
        Ok(Self::with_runtime(location, &config, rt))
    }

    /// [`S3Store::new`] for async callers.
    pub async fn connect(
        location: S3Location,
        settings: AwsSettings,
    ) -> Result<S3Store, CacheError> {
        let rt = Rt::new()?;
        let config = rt
            .spawn(async move { load_sdk_config(&settings).await })?
            .await
            .map_err(|_| stopped())?;
        Ok(Self::with_runtime(location, &config, rt))
    }

    fn with_runtime(location: S3Location, config: &SdkConfig, rt: Rt) -> S3Store {
        let mut builder = aws_sdk_s3::config::Builder::from(config);
        if endpoint_override(config, "S3").is_some() {
            builder = builder.force_path_style(true);
        }
        let client = Client::from_conf(builder.clone().build());
        let bulk_timeouts = match config.timeout_config() {
            Some(t) => {
                let mut b =
                    TimeoutConfig::builder().operation_attempt_timeout(BULK_ATTEMPT_TIMEOUT);
                if let Some(c) = t.connect_timeout() {
                    b = b.connect_timeout(c);
                }
                b.build()
            }
            None => TimeoutConfig::builder()
                .operation_attempt_timeout(BULK_ATTEMPT_TIMEOUT)
                .build(),
        };
        let bulk = Client::from_conf(builder.timeout_config(bulk_timeouts).build());
        S3Store {
            ctx: Arc::new(Ctx {
                client,
                bulk,
                endpoint: effective_endpoint(config, "S3", "s3"),
                location,
                conditional_writes: true,
            }),
            rt: Arc::new(rt),
        }
    }

    /// Whether blob uploads carry `If-None-Match: *` (default on; turn it off for an
    /// S3-compatible server that rejects conditional writes with 501).
    pub fn with_conditional_writes(mut self, on: bool) -> S3Store {
        let mut ctx = (*self.ctx).clone();
        ctx.conditional_writes = on;
        self.ctx = Arc::new(ctx);
        self
    }

    pub fn location(&self) -> &S3Location {
        &self.ctx.location
    }

    /// The endpoint requests go to (for messages).
    pub fn endpoint(&self) -> &str {
        &self.ctx.endpoint
    }

    /// Checks that the bucket exists and is reachable with these credentials
    /// (`HeadBucket`); the error names the bucket and the endpoint.
    pub fn check(&self) -> Result<(), CacheError> {
        self.rt.run(Arc::clone(&self.ctx).check())?
    }

    /// Marks `rec` (read with `etag`) used now, unless the record changed meanwhile.
    fn touch(&self, mut rec: EntryHandle, etag: Option<String>) -> EntryHandle {
        rec.last_used = now_ns().max(rec.last_used);
        if let Some(etag) = etag {
            // Best effort (see the module documentation).
            let _ = self
                .rt
                .run(Arc::clone(&self.ctx).put_record(rec.clone(), Some(etag)));
        }
        rec
    }

    /// Uploads the blob read from `entry`; its size.
    fn upload_blob(&self, sha256: &str, entry: &mut dyn Read) -> Result<u64, CacheError> {
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let eof = fill(entry, &mut head, SINGLE_PUT_MAX + 1, &mut hasher)?;
        if eof {
            check_sha(hasher, sha256)?;
            let size = head.len() as u64;
            self.rt
                .run(Arc::clone(&self.ctx).put_blob(sha256.to_string(), Bytes::from(head)))??;
            return Ok(size);
        }
        let ctx = Arc::clone(&self.ctx);
        let blob = sha256.to_string();
        let upload_id = self.rt.run(ctx.create_upload(blob.clone()))??;
        let result = self.upload_parts(&blob, &upload_id, Bytes::from(head), hasher, entry);
        if result.is_err() {
            let ctx = Arc::clone(&self.ctx);
            let _ = self.rt.run(ctx.abort_upload(blob, upload_id));
        }
        result
    }

    /// The parts of a multipart upload: `carry` (already read and hashed), then the rest
    /// of `entry`; completes the upload when everything hashes to `sha256`.
    fn upload_parts(
        &self,
        sha256: &str,
        upload_id: &str,
        carry: Bytes,
        mut hasher: Sha256,
        entry: &mut dyn Read,
    ) -> Result<u64, CacheError> {
        let mut in_flight = VecDeque::new();
        let result = self.send_parts(sha256, upload_id, carry, &mut hasher, entry, &mut in_flight);
        // On failure, let the parts under way finish before the caller aborts the upload
        // (a part arriving after the abort would be stored again).
        for rx in in_flight {
            let _ = rx.recv();
        }
        let (size, parts) = result?;
        check_sha(hasher, sha256)?;
        let ctx = Arc::clone(&self.ctx);
        self.rt
            .run(ctx.complete_upload(sha256.to_string(), upload_id.to_string(), parts))??;
        Ok(size)
    }

    /// Reads and uploads the parts; their size and list. Parts still uploading when it
    /// fails are left in `in_flight`.
    fn send_parts(
        &self,
        sha256: &str,
        upload_id: &str,
        mut carry: Bytes,
        hasher: &mut Sha256,
        entry: &mut dyn Read,
        in_flight: &mut VecDeque<PartReceiver>,
    ) -> Result<(u64, Vec<CompletedPart>), CacheError> {
        let mut parts = Vec::new();
        let mut size: u64 = 0;
        let mut number: i32 = 0;
        let mut eof = false;
        loop {
            let part = if carry.len() >= PART_SIZE {
                carry.split_to(PART_SIZE)
            } else if eof {
                std::mem::take(&mut carry)
            } else {
                let mut buf = Vec::with_capacity(PART_SIZE);
                buf.extend_from_slice(&carry);
                carry = Bytes::new();
                eof = fill(entry, &mut buf, PART_SIZE, hasher)?;
                Bytes::from(buf)
            };
            if part.is_empty() {
                break;
            }
            number += 1;
            if number > MAX_PARTS {
                return Err(CacheError::Stream {
                    action: "save the cache entry to S3",
                    source: io::Error::other(format!(
                        "the entry is larger than {MAX_PARTS} parts of {PART_SIZE} bytes"
                    )),
                });
            }
            size += part.len() as u64;
            if in_flight.len() >= PARTS_IN_FLIGHT {
                if let Some(rx) = in_flight.pop_front() {
                    parts.push(rx.recv().map_err(|_| stopped())??);
                }
            }
            let ctx = Arc::clone(&self.ctx);
            in_flight.push_back(self.rt.start(ctx.upload_part(
                sha256.to_string(),
                upload_id.to_string(),
                number,
                part,
            ))?);
        }
        while let Some(rx) = in_flight.pop_front() {
            parts.push(rx.recv().map_err(|_| stopped())??);
        }
        Ok((size, parts))
    }
}

type PartReceiver = std::sync::mpsc::Receiver<Result<CompletedPart, CacheError>>;

/// Reads from `entry` into `buf` until it holds `limit` bytes or the stream ends,
/// hashing what was read; `true` when the stream ended.
fn fill(
    entry: &mut dyn Read,
    buf: &mut Vec<u8>,
    limit: usize,
    hasher: &mut Sha256,
) -> Result<bool, CacheError> {
    let start = buf.len();
    let want = limit.saturating_sub(start);
    buf.reserve_exact(want);
    entry
        .take(want as u64)
        .read_to_end(buf)
        .map_err(|e| CacheError::Stream {
            action: "read the cache entry to save",
            source: e,
        })?;
    hasher.update(&buf[start..]);
    Ok(buf.len() < limit)
}

fn check_sha(hasher: Sha256, sha256: &str) -> Result<(), CacheError> {
    let actual = hex(&hasher.finalize());
    if actual != sha256 {
        return Err(CacheError::corrupt(format!(
            "the entry to save has sha256 {actual}, not {sha256} as announced"
        )));
    }
    Ok(())
}

/// A key record as read, with the ETag to make a conditional rewrite.
type Record = (EntryHandle, Option<String>);

fn is_credentials_rejected(code: &str) -> bool {
    matches!(
        code,
        "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "InvalidClientTokenId"
    )
}

impl Ctx {
    fn blob_key(&self, sha256: &str) -> String {
        self.location.object_key(&format!("blobs/sha256/{sha256}"))
    }

    fn record_key(&self, key: &str) -> String {
        self.location
            .object_key(&format!("keys/{}.json", key_stem(key)))
    }

    /// An SDK error as a [`CacheError::Io`] on `s3://bucket/<object>`, with a message
    /// naming the bucket and endpoint where that helps.
    fn error<E>(&self, action: &'static str, object: &str, err: &SdkError<E>) -> CacheError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let failure = classify(err, CREDENTIALS_HINT);
        self.failure(action, object, &failure)
    }

    fn failure(&self, action: &'static str, object: &str, failure: &Failure) -> CacheError {
        let endpoint = &self.endpoint;
        let bucket = &self.location.bucket;
        let (kind, detail) = match failure {
            Failure::Unreachable(d) => (
                if d == "timed out" {
                    io::ErrorKind::TimedOut
                } else {
                    io::ErrorKind::ConnectionRefused
                },
                format!("cannot reach S3 at {endpoint}: {d}"),
            ),
            Failure::Setup(d) => (io::ErrorKind::Other, format!("{d} (S3 at {endpoint})")),
            Failure::Service {
                code,
                message,
                status,
            } => {
                let code = code.as_deref();
                let said = match (code, message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_string(),
                    (None, _) => format!("HTTP {status}"),
                };
                match code {
                    Some("NoSuchBucket") => (
                        io::ErrorKind::NotFound,
                        format!("bucket `{bucket}` does not exist at {endpoint}"),
                    ),
                    Some(c) if is_credentials_rejected(c) => (
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "S3 at {endpoint} rejected the credentials ({said}) — {CREDENTIALS_HINT}"
                        ),
                    ),
                    _ if *status == 403 => (
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "access denied by S3 at {endpoint} ({said}); the cache needs s3:ListBucket on bucket `{bucket}` and s3:GetObject, s3:PutObject, s3:DeleteObject on {}/*",
                            self.location
                        ),
                    ),
                    _ => (
                        io::ErrorKind::Other,
                        format!("S3 at {endpoint} answered {said}"),
                    ),
                }
            }
            Failure::Response(status) => (
                io::ErrorKind::InvalidData,
                format!("unexpected response (HTTP {status}) from S3 at {endpoint}"),
            ),
        };
        CacheError::Io {
            action,
            path: if object.is_empty() {
                PathBuf::from(format!("s3://{bucket}"))
            } else {
                PathBuf::from(format!("s3://{bucket}/{object}"))
            },
            source: io::Error::new(kind, detail),
        }
    }

    async fn check(self: Arc<Self>) -> Result<(), CacheError> {
        let bucket = &self.location.bucket;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let failure = classify(&e, CREDENTIALS_HINT);
                // HeadBucket answers without a body: a 404 is a missing bucket.
                let failure = match failure {
                    Failure::Service {
                        status: 404,
                        message,
                        ..
                    } => Failure::Service {
                        code: Some("NoSuchBucket".to_string()),
                        status: 404,
                        message,
                    },
                    f => f,
                };
                Err(self.failure("use the cache bucket", "", &failure))
            }
        }
    }

    /// The record at object `object`; `None` when missing or unusable.
    async fn get_record(self: Arc<Self>, object: String) -> Result<Option<Record>, CacheError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&object)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_no_such_key(&e) => return Ok(None),
            Err(e) => return Err(self.error("read", &object, &e)),
        };
        let etag = out.e_tag().map(str::to_string);
        let bytes = out.body.collect().await.map_err(|e| CacheError::Io {
            action: "read",
            path: PathBuf::from(format!("s3://{}/{object}", self.location.bucket)),
            source: io::Error::other(e),
        })?;
        Ok(parse_record(&bytes.into_bytes()).map(|rec| (rec, etag)))
    }

    /// Writes a key record; with `if_match`, only over the record with that ETag (a
    /// changed record is left alone and is not an error).
    async fn put_record(
        self: Arc<Self>,
        rec: EntryHandle,
        if_match: Option<String>,
    ) -> Result<(), CacheError> {
        let object = self.record_key(&rec.key);
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| CacheError::Io {
            action: "encode",
            path: PathBuf::from(format!("s3://{}/{object}", self.location.bucket)),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&object)
            .content_type("application/json")
            .body(ByteStream::from(json));
        if let Some(etag) = if_match {
            req = req.if_match(etag);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_precondition_failed(&e) => Ok(()),
            Err(e) => Err(self.error("write", &object, &e)),
        }
    }

    /// The size of the stored blob, `None` when it is not stored.
    async fn head_blob(self: Arc<Self>, sha256: String) -> Result<Option<u64>, CacheError> {
        let object = self.blob_key(&sha256);
        match self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(&object)
            .send()
            .await
        {
            // Without a size (never from S3), upload again: the size comes from the upload.
            Ok(out) => Ok(out.content_length().and_then(|n| u64::try_from(n).ok())),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error("inspect", &object, &e)),
        }
    }

    async fn put_blob(self: Arc<Self>, sha256: String, body: Bytes) -> Result<(), CacheError> {
        let object = self.blob_key(&sha256);
        let mut req = self
            .bulk
            .put_object()
            .bucket(&self.location.bucket)
            .key(&object)
            .body(ByteStream::from(body));
        if self.conditional_writes {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(()),
            // Stored meanwhile by a concurrent save: the content is the same.
            Err(e) if is_precondition_failed(&e) => Ok(()),
            // S3's answer to racing conditional writes; fine if the other one stored it.
            Err(e) if is_conflict(&e) => match Arc::clone(&self).head_blob(sha256).await? {
                Some(_) => Ok(()),
                None => Err(self.error("store", &object, &e)),
            },
            Err(e) => Err(self.error("store", &object, &e)),
        }
    }

    async fn create_upload(self: Arc<Self>, sha256: String) -> Result<String, CacheError> {
        let object = self.blob_key(&sha256);
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.location.bucket)
            .key(&object)
            .send()
            .await
            .map_err(|e| self.error("start uploading", &object, &e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| self.failure("start uploading", &object, &Failure::Response(200)))
    }

    async fn upload_part(
        self: Arc<Self>,
        sha256: String,
        upload_id: String,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, CacheError> {
        let object = self.blob_key(&sha256);
        let out = self
            .bulk
            .upload_part()
            .bucket(&self.location.bucket)
            .key(&object)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("upload a part of", &object, &e))?;
        Ok(CompletedPart::builder()
            .set_e_tag(out.e_tag().map(str::to_string))
            .part_number(number)
            .build())
    }

    async fn complete_upload(
        self: Arc<Self>,
        sha256: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
    ) -> Result<(), CacheError> {
        let object = self.blob_key(&sha256);
        let mut req = self
            .bulk
            .complete_multipart_upload()
            .bucket(&self.location.bucket)
            .key(&object)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if self.conditional_writes {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_precondition_failed(&e) || is_conflict(&e) => {
                // Stored meanwhile by a concurrent save; drop our parts.
                let _ = Arc::clone(&self)
                    .abort_upload(sha256.clone(), upload_id)
                    .await;
                match self.head_blob(sha256).await {
                    Ok(Some(_)) => Ok(()),
                    _ => Err(CacheError::Stream {
                        action: "complete the multipart upload",
                        source: io::Error::other("the upload was refused and no blob is stored"),
                    }),
                }
            }
            // An answer with status 200 the SDK cannot parse: moto 5 names the result
            // element `CompleteMultipartUploadResponse`, and S3 itself may send an error
            // document with 200. The object tells which.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => {
                match Arc::clone(&self).head_blob(sha256).await? {
                    Some(_) => Ok(()),
                    None => Err(self.error("complete uploading", &object, &e)),
                }
            }
            Err(e) => Err(self.error("complete uploading", &object, &e)),
        }
    }

    async fn abort_upload(
        self: Arc<Self>,
        sha256: String,
        upload_id: String,
    ) -> Result<(), CacheError> {
        let object = self.blob_key(&sha256);
        self.client
            .abort_multipart_upload()
            .bucket(&self.location.bucket)
            .key(&object)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("abort uploading", &object, &e))
    }

    /// The blob's body; `None` when the blob is missing.
    async fn get_blob(self: Arc<Self>, sha256: String) -> Result<Option<ByteStream>, CacheError> {
        let object = self.blob_key(&sha256);
        match self
            .bulk
            .get_object()
            .bucket(&self.location.bucket)
            .key(&object)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.body)),
            Err(e) if is_no_such_key(&e) => Ok(None),
            Err(e) => Err(self.error("read", &object, &e)),
        }
    }

    async fn delete(self: Arc<Self>, object: String) -> Result<(), CacheError> {
        self.client
            .delete_object()
            .bucket(&self.location.bucket)
            .key(&object)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("remove", &object, &e))
    }

    /// Removes the key record of `entry` if it still names `entry.blob` (or cannot be
    /// read as a record), and the blob.
    async fn remove_entry(self: Arc<Self>, entry: EntryHandle) -> Result<(), CacheError> {
        let record = self.record_key(&entry.key);
        let current = Arc::clone(&self).get_record(record.clone()).await?;
        if current.is_none_or(|(rec, _)| rec.blob == entry.blob || rec.key != entry.key) {
            Arc::clone(&self).delete(record).await?;
        }
        if is_sha256_hex(&entry.blob) {
            let blob = self.blob_key(&entry.blob);
            self.delete(blob).await?;
        }
        Ok(())
    }

    /// Key records under `keys/<stem_prefix>`: (object key, stem), the
    /// [`MAX_CANDIDATES`] most recently modified of the first [`MAX_LISTED`].
    async fn list_candidates(
        self: Arc<Self>,
        stem_prefix: String,
    ) -> Result<Vec<(String, String)>, CacheError> {
        let keys_dir = self.location.object_key("keys/");
        let list_prefix = format!("{keys_dir}{stem_prefix}");
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.location.bucket)
                .prefix(&list_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("list", &list_prefix, &e))?;
            for obj in out.contents() {
                let Some(key) = obj.key() else { continue };
                let Some(stem) = key
                    .strip_prefix(&keys_dir)
                    .and_then(|name| name.strip_suffix(".json"))
                else {
                    continue;
                };
                if stem.contains('/') {
                    continue;
                }
                let modified = obj
                    .last_modified()
                    .map(|t| (t.secs(), t.subsec_nanos()))
                    .unwrap_or((0, 0));
                found.push((modified, key.to_string(), stem.to_string()));
            }
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() || found.len() >= MAX_LISTED {
                break;
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found.truncate(MAX_CANDIDATES);
        Ok(found
            .into_iter()
            .map(|(_, key, stem)| (key, stem))
            .collect())
    }

    /// The newest record (by `created`) of a key starting with `prefix`.
    async fn newest_with_prefix(
        self: Arc<Self>,
        prefix: String,
    ) -> Result<Option<Record>, CacheError> {
        let candidates = Arc::clone(&self)
            .list_candidates(key_stem_prefix(&prefix))
            .await?;
        let records: Vec<Option<Record>> =
            stream::iter(candidates.into_iter().map(|(object, stem)| {
                let ctx = Arc::clone(&self);
                let prefix = &prefix;
                async move {
                    let rec = ctx.get_record(object).await?;
                    // A record whose key does not encode to its name is ignored.
                    Ok::<_, CacheError>(rec.filter(|(r, _)| {
                        key_stem(&r.key) == stem && r.key.starts_with(prefix.as_str())
                    }))
                }
            }))
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(records
            .into_iter()
            .flatten()
            .max_by(|(a, _), (b, _)| (a.created, &a.key).cmp(&(b.created, &b.key))))
    }
}

fn is_no_such_key(e: &SdkError<GetObjectError>) -> bool {
    e.as_service_error().is_some_and(|s| s.is_no_such_key())
}

fn is_precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    match e {
        SdkError::ServiceError(s) => {
            s.raw().status().as_u16() == 412 || s.err().code() == Some("PreconditionFailed")
        }
        _ => false,
    }
}

fn is_conflict<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    match e {
        SdkError::ServiceError(s) => {
            s.raw().status().as_u16() == 409 || s.err().code() == Some("ConditionalRequestConflict")
        }
        _ => false,
    }
}

/// Streams a blob from S3, checking its size and sha256; removes the entry when they
/// are wrong.
struct BlobReader {
    ctx: Arc<Ctx>,
    rt: Arc<Rt>,
    body: Option<ByteStream>,
    chunk: Bytes,
    hasher: Sha256,
    read: u64,
    entry: EntryHandle,
    failed: Option<String>,
}

impl BlobReader {
    fn fail(&mut self, reason: String) -> io::Error {
        if self.failed.is_none() {
            self.body = None;
            let _ = self
                .rt
                .run(Arc::clone(&self.ctx).remove_entry(self.entry.clone()));
            self.failed = Some(reason.clone());
        }
        io::Error::new(io::ErrorKind::InvalidData, CacheError::corrupt(reason))
    }

    /// The next non-empty chunk of the body into `self.chunk`; `false` at the end.
    fn next_chunk(&mut self) -> io::Result<bool> {
        while self.chunk.is_empty() {
            let Some(mut body) = self.body.take() else {
                return Ok(false);
            };
            let (body, next) = self
                .rt
                .run(async move {
                    let next = body.next().await;
                    (body, next)
                })
                .map_err(io::Error::other)?;
            match next {
                None => return Ok(false),
                Some(Ok(bytes)) => {
                    self.body = Some(body);
                    self.chunk = bytes;
                }
                // A network failure, not a damaged blob: the entry stays.
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        Ok(true)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(reason) = &self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                CacheError::corrupt(reason.clone()),
            ));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = if self.next_chunk()? {
            let n = buf.len().min(self.chunk.len());
            buf[..n].copy_from_slice(&self.chunk[..n]);
            self.chunk.advance(n);
            n
        } else {
            0
        };
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        let expected_size = self.entry.size;
        if self.read > expected_size {
            let reason = format!(
                "blob {} is larger than its recorded {expected_size} bytes",
                self.entry.blob
            );
            return Err(self.fail(reason));
        }
        if n == 0 {
            if self.read != expected_size {
                let reason = format!(
                    "blob {} has {} bytes, {expected_size} were recorded",
                    self.entry.blob, self.read
                );
                return Err(self.fail(reason));
            }
            let actual = hex(&self.hasher.clone().finalize());
            if actual != self.entry.blob {
                let reason = format!(
                    "blob {} has sha256 {actual}; it was damaged in the bucket",
                    self.entry.blob
                );
                return Err(self.fail(reason));
            }
        }
        Ok(n)
    }
}

impl CacheStore for S3Store {
    fn lookup(&self, key: &str) -> Result<Option<EntryHandle>, CacheError> {
        check_key(key)?;
        let object = self.ctx.record_key(key);
        let rec = self.rt.run(Arc::clone(&self.ctx).get_record(object))??;
        Ok(rec
            .filter(|(r, _)| r.key == key)
            .map(|(rec, etag)| self.touch(rec, etag)))
    }

    fn lookup_prefix(&self, prefix: &str) -> Result<Option<EntryHandle>, CacheError> {
        let newest = self
            .rt
            .run(Arc::clone(&self.ctx).newest_with_prefix(prefix.to_string()))??;
        Ok(newest.map(|(rec, etag)| self.touch(rec, etag)))
    }

    fn open(&self, entry: &EntryHandle) -> Result<Box<dyn Read + Send>, CacheError> {
        if !is_sha256_hex(&entry.blob) {
            return Err(CacheError::corrupt(format!(
                "key `{}` names an invalid blob `{}`",
                entry.key, entry.blob
            )));
        }
        let body = self
            .rt
            .run(Arc::clone(&self.ctx).get_blob(entry.blob.clone()))??;
        let Some(body) = body else {
            let _ = self
                .rt
                .run(Arc::clone(&self.ctx).remove_entry(entry.clone()));
            return Err(CacheError::corrupt(format!(
                "blob {} of key `{}` is missing",
                entry.blob, entry.key
            )));
        };
        Ok(Box::new(BlobReader {
            ctx: Arc::clone(&self.ctx),
            rt: Arc::clone(&self.rt),
            body: Some(body),
            chunk: Bytes::new(),
            hasher: Sha256::new(),
            read: 0,
            entry: entry.clone(),
            failed: None,
        }))
    }

    fn save(
        &self,
        key: &str,
        sha256: &str,
        entry: &mut dyn Read,
    ) -> Result<EntryHandle, CacheError> {
        check_key(key)?;
        if !is_sha256_hex(sha256) {
            return Err(CacheError::corrupt(format!(
                "`{sha256}` is not a lowercase hex sha256"
            )));
        }
        let existing = self
            .rt
            .run(Arc::clone(&self.ctx).head_blob(sha256.to_string()))??;
        let size = match existing {
            Some(size) => size,
            None => self.upload_blob(sha256, entry)?,
        };
        let now = now_ns();
        let rec = EntryHandle {
            key: key.to_string(),
            blob: sha256.to_string(),
            size,
            created: now,
            last_used: now,
        };
        self.rt
            .run(Arc::clone(&self.ctx).put_record(rec.clone(), None))??;
        Ok(rec)
    }

    fn remove(&self, entry: &EntryHandle) -> Result<(), CacheError> {
        self.rt
            .run(Arc::clone(&self.ctx).remove_entry(entry.clone()))?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parse_locations() {
        let p = |s: &str| S3Location::parse(s).map(|l| (l.bucket, l.prefix));
        assert_eq!(
            p("s3://my-bucket").unwrap(),
            ("my-bucket".into(), "".into())
        );
        assert_eq!(
            p("s3://my-bucket/").unwrap(),
            ("my-bucket".into(), "".into())
        );
        assert_eq!(
            p("s3://my.bucket-1/ci/cache/").unwrap(),
            ("my.bucket-1".into(), "ci/cache".into())
        );
        assert_eq!(
            S3Location::parse("s3://b-1/x/y").unwrap().to_string(),
            "s3://b-1/x/y"
        );
        assert_eq!(
            S3Location::parse("s3://b-1").unwrap().to_string(),
            "s3://b-1"
        );
        for bad in [
            "",
            "my-bucket",
            "https://my-bucket/x",
            "s3://",
            "s3:///prefix",
            "s3://ab",
            "s3://My-Bucket",
            "s3://-bucket",
            "s3://bucket-",
            "s3://bu..cket",
            "s3://bu_cket",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "s3://bucket/a?x=1",
            "s3://bucket/a#x",
            "s3://bucket/a\nb",
        ] {
            let err = S3Location::parse(bad).unwrap_err();
            assert!(
                matches!(&err, CacheError::BadLocation { location, .. } if location == bad),
                "{bad}: {err}"
            );
        }
        let msg = S3Location::parse("s3://ab").unwrap_err().to_string();
        assert!(msg.contains("3 to 63"), "{msg}");
    }

    #[test]
    fn bad_bucket_names_are_told_apart_and_say_what_to_do() {
        let long = "a".repeat(64);
        assert_eq!(
            check_bucket("ab"),
            Err(BucketNameError::Length("ab".into()))
        );
        assert_eq!(
            check_bucket(&long),
            Err(BucketNameError::Length(long.clone()))
        );
        for bad in ["My-Bucket", "-bucket", "bucket-", "buck_et"] {
            assert_eq!(
                check_bucket(bad),
                Err(BucketNameError::Characters(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            check_bucket("a..b"),
            Err(BucketNameError::DoubleDot("a..b".into()))
        );
        assert_eq!(check_bucket("my.bucket-1"), Ok(()));
        let msg = S3Location::parse("s3://a..b/x").unwrap_err().to_string();
        assert!(
            msg.contains("contains `..`") && msg.contains("aws s3 ls"),
            "{msg}"
        );
    }

    #[test]
    fn failure_messages_name_bucket_endpoint_and_cause() {
        let client = Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build(),
        );
        let ctx = Ctx {
            client: client.clone(),
            bulk: client,
            location: S3Location::parse("s3://bkt/ci").unwrap(),
            endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
            conditional_writes: true,
        };
        let service = |code: Option<&str>, status| Failure::Service {
            code: code.map(str::to_string),
            message: Some("msg".into()),
            status,
        };
        let msg = |f: &Failure| {
            let e = ctx.failure("read", "ci/keys/k.json", f);
            let kind = match &e {
                CacheError::Io { source, .. } => source.kind(),
                _ => panic!("{e:?}"),
            };
            (kind, e.to_string())
        };
        let (kind, m) = msg(&service(Some("NoSuchBucket"), 404));
        assert_eq!(kind, io::ErrorKind::NotFound);
        assert_eq!(
            m,
            "cannot read s3://bkt/ci/keys/k.json: bucket `bkt` does not exist at https://s3.eu-west-1.amazonaws.com"
        );
        let (kind, m) = msg(&service(Some("InvalidAccessKeyId"), 403));
        assert_eq!(kind, io::ErrorKind::PermissionDenied);
        assert!(
            m.contains("rejected the credentials (InvalidAccessKeyId: msg)"),
            "{m}"
        );
        let (kind, m) = msg(&service(Some("AccessDenied"), 403));
        assert_eq!(kind, io::ErrorKind::PermissionDenied);
        assert!(
            m.contains("access denied") && m.contains("s3://bkt/ci/*"),
            "{m}"
        );
        let (_, m) = msg(&service(None, 500));
        assert!(m.ends_with("answered HTTP 500"), "{m}");
        let (kind, m) = msg(&Failure::Unreachable("timed out".into()));
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(m.ends_with("cannot reach S3 at https://s3.eu-west-1.amazonaws.com: timed out"));
        let m = ctx.failure(
            "use the cache bucket",
            "",
            &service(Some("NoSuchBucket"), 404),
        );
        assert!(
            m.to_string()
                .starts_with("cannot use the cache bucket s3://bkt: "),
            "{m}"
        );
    }

    #[test]
    fn object_keys() {
        let l = S3Location::parse("s3://bucket/a/b").unwrap();
        assert_eq!(l.object_key("keys/x.json"), "a/b/keys/x.json");
        let l = S3Location::parse("s3://bucket").unwrap();
        assert_eq!(l.object_key("keys/x.json"), "keys/x.json");
    }

    #[test]
    fn fill_reads_up_to_the_limit_and_hashes() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut r = &data[..];
        let mut h = Sha256::new();
        let mut buf = Vec::new();
        assert!(!fill(&mut r, &mut buf, 600, &mut h).unwrap());
        assert_eq!(buf.len(), 600);
        let mut buf2 = buf[500..].to_vec();
        assert!(fill(&mut r, &mut buf2, 600, &mut h).unwrap());
        assert_eq!(buf2.len(), 500);
        assert_eq!(hex(&h.finalize()), hex(&Sha256::digest(&data)));
    }
}
