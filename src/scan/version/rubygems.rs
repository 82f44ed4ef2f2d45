//! RubyGems (`Gem::Version`) ordering: segments of digits or letters; a letter segment
//! marks a pre-release and sorts before any number; trailing zeros are insignificant.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Num(u64),
    Str(String),
}

fn segments(v: &str) -> Option<Vec<Seg>> {
    let v = v.trim();
    if v.is_empty() || !v.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return None;
    }
    // Gem::Version treats `-` as `.pre.`.
    let v = v.replace('-', ".pre.");
    let mut segs = Vec::new();
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            segs.push(Seg::Num(v[start..i].parse().ok()?));
        } else if bytes[i].is_ascii_alphabetic() {
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            segs.push(Seg::Str(v[start..i].to_string()));
        } else {
            i += 1;
        }
    }
    // canonical_segments: drop trailing zeros of the release part and of the
    // pre-release part separately.
    let split = segs
        .iter()
        .position(|s| matches!(s, Seg::Str(_)))
        .unwrap_or(segs.len());
    let mut pre = segs.split_off(split);
    for part in [&mut segs, &mut pre] {
        while part.last() == Some(&Seg::Num(0)) {
            part.pop();
        }
    }
    segs.extend(pre);
    Some(segs)
}

/// Orders two RubyGems versions.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (segments(a)?, segments(b)?);
    let zero = Seg::Num(0);
    for i in 0..a.len().max(b.len()) {
        let (l, r) = (a.get(i).unwrap_or(&zero), b.get(i).unwrap_or(&zero));
        let ord = match (l, r) {
            (Seg::Num(x), Seg::Num(y)) => x.cmp(y),
            (Seg::Str(x), Seg::Str(y)) => x.cmp(y),
            (Seg::Str(_), Seg::Num(_)) => Ordering::Less,
            (Seg::Num(_), Seg::Str(_)) => Ordering::Greater,
        };
        if ord != Ordering::Equal {
            return Some(ord);
        }
    }
    Some(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn gem_version_examples() {
        // From RubyGems' test_gem_version.rb.
        assert_eq!(compare("1.0", "1"), Some(Equal));
        assert_eq!(compare("1.0.0", "1.0"), Some(Equal));
        assert_eq!(compare("1.8.2", "0.0.0"), Some(Greater));
        assert_eq!(compare("1.8.2", "1.8.2.a"), Some(Greater));
        assert_eq!(compare("1.8.2.b", "1.8.2.a"), Some(Greater));
        assert_eq!(compare("1.8.2.a10", "1.8.2.a9"), Some(Greater));
        assert_eq!(compare("1.0.0.a", "1.0.0"), Some(Less));
        assert_eq!(compare("1.0.a.2", "1.0.a.10"), Some(Less));
        assert_eq!(compare("0.beta.1", "0.0.beta.1"), Some(Equal));
        assert_eq!(compare("5.2.4.3", "5.2.4.rc1"), Some(Greater));
        assert_eq!(compare("1.0.0-rc1", "1.0.0.pre.rc1"), Some(Equal));
        assert_eq!(compare("1.10.4", "1.10.10"), Some(Less));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(compare("", "1"), None);
        assert_eq!(compare("a.1", "1"), None);
        assert_eq!(compare("1 2", "1"), None);
    }
}
