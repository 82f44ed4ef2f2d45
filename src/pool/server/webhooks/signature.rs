//! GitHub's `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body
//! keyed with the webhook's secret (RFC 2104 over SHA-256), compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `message` under `key` (RustCrypto's `hmac`). Shared by the webhook
/// check here and the notifications' signatures (`server::notify`).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Equal bytes, in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `header` (the `X-Hub-Signature-256` value) signs `body` under `secret`.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=").and_then(unhex) else {
        return false;
    };
    constant_time_eq(&hmac_sha256(secret, body), &given)
}

/// The header value for `body` (for tests and clients).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mac = hmac_sha256(secret, body);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_githubs_documented_example_and_rfc_4231() {
        // docs.github.com, "Validating webhook deliveries".
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        // RFC 4231 test case 6 (a key longer than the block).
        assert_eq!(
            sign(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        let good = sign(b"s", b"body");
        assert!(verify(b"s", b"body", &good));
        assert!(!verify(b"s", b"body2", &good));
        assert!(!verify(b"t", b"body", &good));
        assert!(!verify(b"s", b"body", "sha1=00"));
        assert!(!verify(b"s", b"body", "sha256=zz"));
        assert!(!verify(b"s", b"body", ""));
    }
}
