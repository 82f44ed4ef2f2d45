//! Errors of keys, signatures and attestations.

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read key {path}: {detail}")]
    Key { path: String, detail: String },

    #[error("cannot decrypt {path}: wrong password (COSIGN_PASSWORD) or not a cosign key")]
    Decrypt { path: String },

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} already exists; remove it or choose another --output-dir (runner never overwrites a key)")]
    Exists { path: String },

    /// A `.sig` or `.att` manifest lists more layers than runner reads.
    #[error("{reference} lists {layers} layers, more than the limit of {limit}; refusing to read them (a broken or hostile registry?)")]
    TooManyLayers {
        reference: String,
        layers: usize,
        limit: usize,
    },

    #[error("signing failed: {0}")]
    Crypto(String),

    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),

    /// Verification found nothing valid; `reasons` says why for each candidate.
    #[error("no valid {what} for {image}: {}", reasons.join("; "))]
    NotVerified {
        what: &'static str,
        image: String,
        reasons: Vec<String>,
    },
}
