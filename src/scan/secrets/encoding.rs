//! Small helpers for validators: lenient base64 (standard and URL-safe alphabets).

fn b64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decodes base64 or base64url, with or without padding. `None` on any other byte.
pub(crate) fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    let trimmed = input
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(&input[..0], |i| &input[..=i]);
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in trimmed {
        acc = (acc << 6) | b64_value(b)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn decodes_both_alphabets() {
        assert_eq!(
            decode_base64(b"dXNlcjpwYXNz").as_deref(),
            Some(&b"user:pass"[..])
        );
        assert_eq!(
            decode_base64(b"dXNlcjpwYXM=").as_deref(),
            Some(&b"user:pas"[..])
        );
        assert_eq!(
            decode_base64(b"-_-_").as_deref(),
            Some(&[0xfb, 0xff, 0xbf][..])
        );
        assert_eq!(decode_base64(b"ab$c"), None);
    }
}
