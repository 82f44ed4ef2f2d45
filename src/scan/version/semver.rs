//! Semantic versioning (crates.io, npm, Go, and OSV `SEMVER` ranges). Lenient: a
//! leading `v`/`=` is dropped, missing minor/patch count as 0, build metadata (Go's
//! `+incompatible`) is ignored for ordering, as SemVer 2.0 requires.

use std::cmp::Ordering;

/// Parses leniently; `None` when it is not a semantic version at all.
pub fn parse(v: &str) -> Option<::semver::Version> {
    let v = v.trim();
    let v = v
        .strip_prefix('v')
        .or_else(|| v.strip_prefix('='))
        .unwrap_or(v);
    if let Ok(parsed) = ::semver::Version::parse(v) {
        return Some(parsed);
    }
    // Pad `1` / `1.2` (with optional `-pre`/`+build`) to three components.
    let split = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut padded = parts.join(".");
    for _ in parts.len()..3 {
        padded.push_str(".0");
    }
    padded.push_str(rest);
    ::semver::Version::parse(&padded).ok()
}

/// Orders two semantic versions by precedence (build metadata ignored).
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(
        (a.major, a.minor, a.patch)
            .cmp(&(b.major, b.minor, b.patch))
            .then_with(|| a.pre.cmp(&b.pre)),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn semver_spec_examples() {
        // SemVer 2.0 §11 example chain.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in chain.windows(2) {
            assert_eq!(compare(w[0], w[1]), Some(Less), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn lenient_forms() {
        assert_eq!(compare("v1.2", "1.2.0"), Some(Equal));
        assert_eq!(compare("1", "0.9.9"), Some(Greater));
        assert_eq!(compare("v2.0.0+incompatible", "2.0.0"), Some(Equal));
        assert_eq!(compare("0.0.0-0", "0.0.0"), Some(Less));
        assert_eq!(
            compare("v0.0.0-20200101000000-abcdef012345", "v0.1.0"),
            Some(Less)
        );
        assert_eq!(compare("x", "1.0.0"), None);
        assert_eq!(compare("1.2.3.4", "1.0.0"), None);
    }
}
