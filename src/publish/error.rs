//! Errors of building, pushing and addressing images.

use crate::http_limits::human;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Reference(#[from] super::reference::BadReference),

    /// The registry refused the credentials (after one refresh).
    #[error("registry {registry} refused the credentials ({status}); for ECR check the AWS credentials and region, for other registries RUNNER_REGISTRY_USER/RUNNER_REGISTRY_PASSWORD or `docker login`")]
    Unauthorized { registry: String, status: u16 },

    /// The registry could not be reached after all retries.
    #[error("cannot reach registry {registry} at {url} after {attempts} attempts: {detail}; is it running? (for a registry on another address, use --registry-endpoint HOST=URL)")]
    Unreachable {
        registry: String,
        url: String,
        attempts: u32,
        detail: String,
    },

    /// The registry is rate limiting or unavailable and asks for a longer wait than
    /// runner gives it.
    #[error("registry {registry} answered {status} to {what} and asks to retry after {seconds} s (Retry-After), longer than runner waits ({limit} s); try again later")]
    RetryAfter {
        registry: String,
        what: String,
        status: u16,
        seconds: u64,
        limit: u64,
    },

    /// The registry answered, but not as the distribution API says it should.
    #[error("registry {registry} answered {status} to {what}: {detail}")]
    Protocol {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },

    /// The registry sent more than runner reads for this kind of answer.
    #[error("registry {registry} sent {what} larger than the limit of {} bytes ({}); refusing to read it (a broken or hostile registry, or the wrong endpoint?)", limit, human(*limit))]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },

    /// The registry stopped answering (nothing for the idle timeout, or a small request
    /// not done within its deadline).
    #[error("registry {registry} did not answer {what} at {url} in time ({attempts} attempt(s); limits: {idle} s without a byte, {total} s per request); is it overloaded or on a slow link? raise the limit with RUNNER_REGISTRY_TIMEOUT=SECONDS")]
    Timeout {
        registry: String,
        what: String,
        url: String,
        attempts: u32,
        idle: f64,
        total: f64,
    },

    /// The manifest or tag does not exist.
    #[error("{reference} was not found in the registry")]
    NotFound { reference: String },

    /// An ECR repository with tag immutability already holds this tag.
    #[error("tag `{tag}` already exists in {repository} and the repository's tags are immutable; push with a new tag, or by digest only (--no-tag)")]
    TagImmutable { repository: String, tag: String },

    /// An ECR API call failed.
    #[error("ECR {operation} failed: {detail}")]
    Ecr {
        operation: &'static str,
        detail: String,
    },

    /// The local image cannot be read from the engine.
    #[error("cannot read image `{image}` from the Docker engine: {detail}")]
    LocalImage { image: String, detail: String },

    /// A blob's bytes did not hash to its digest.
    #[error("blob {digest} does not match its content (got {actual}); the registry or the download is corrupt")]
    DigestMismatch { digest: String, actual: String },

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("bad {origin} `{item}`: {reason}")]
    BadEndpoint {
        /// Where the item came from: a flag or a variable.
        origin: String,
        item: String,
        reason: super::registry::BadEndpoint,
    },

    #[error("bad {name}=`{value}`: write a number of seconds (at most a day), e.g. {name}=60")]
    BadTimeout { name: &'static str, value: String },

    #[error("image build failed: {0}")]
    Build(String),

    /// docker's credential helper (`credHelpers` / `credsStore` in config.json) failed.
    #[error("docker-credential-{helper} get for {registry} failed: {detail}; check the helper works (`echo {registry} | docker-credential-{helper} get`) or remove it from config.json's credHelpers/credsStore")]
    CredentialHelper {
        helper: String,
        registry: String,
        detail: String,
    },
}

/// `4194304` → `4 MiB`.
impl PublishError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
