//! Reading the answers of HTTP servers that may be broken or hostile (registries, forges):
//! a body is read up to a cap, refused up front when its Content-Length says more and as
//! soon as more arrives (the header is never trusted), and never held beyond the cap.

use reqwest::Response;
use std::time::Duration;

/// Why a capped read stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CappedReadError {
    /// The body is larger than the cap (by its Content-Length or by what arrived).
    #[error("the answer is larger than the limit")]
    TooLarge,
    /// The connection broke or timed out while the body was read.
    #[error(transparent)]
    Transfer(reqwest::Error),
}

/// The whole body of `resp`, at most `limit` bytes.
pub(crate) async fn read_capped(
    resp: &mut Response,
    limit: u64,
) -> Result<Vec<u8>, CappedReadError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(CappedReadError::TooLarge);
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let hint = resp.content_length().map_or(0, |n| n.min(1 << 20));
    let mut out = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if chunk.len() > cap - out.len() {
                    return Err(CappedReadError::TooLarge);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(CappedReadError::Transfer(e)),
        }
    }
}

/// The first `limit` bytes of the body of `resp`, read for at most `within` (for quoting
/// an error answer); the rest is left unread. Whatever goes wrong reading it (including
/// running out of time) gives what arrived until then.
pub(crate) async fn read_prefix(resp: &mut Response, limit: u64, within: Duration) -> Vec<u8> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::new();
    let read = async {
        while out.len() < cap {
            let Ok(Some(chunk)) = resp.chunk().await else {
                break;
            };
            let room = cap - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    out
}

/// `bytes` for a message: `8 MiB`, `64 KiB`, `100 B`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {name}", bytes / size);
        }
    }
    format!("{bytes} B")
}
