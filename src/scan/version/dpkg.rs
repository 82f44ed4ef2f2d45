//! Debian (dpkg) version ordering: `[epoch:]upstream[-revision]`, compared with
//! dpkg's `verrevcmp` (`~` sorts before everything, even the end of the string;
//! letters sort before non-letters).

use std::cmp::Ordering;

struct Parsed<'a> {
    epoch: u64,
    upstream: &'a str,
    revision: &'a str,
}

fn parse(v: &str) -> Option<Parsed<'_>> {
    let v = v.trim();
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return None;
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => (e.parse::<u64>().ok()?, rest),
        None => (0, v),
    };
    let (upstream, revision) = match rest.rfind('-') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if upstream.is_empty() || !upstream.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(Parsed {
        epoch,
        upstream,
        revision,
    })
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` on one part (upstream or revision).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Digit run: skip leading zeros, longer run wins, then first difference.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        let sj = j;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Orders two Debian versions.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(
        a.epoch
            .cmp(&b.epoch)
            .then_with(|| verrevcmp(a.upstream.as_bytes(), b.upstream.as_bytes()))
            .then_with(|| verrevcmp(a.revision.as_bytes(), b.revision.as_bytes())),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn tilde_rules_from_debian_policy() {
        // Debian Policy §5.6.12: `~~ < ~~a < ~ < (empty) < a`.
        let chain = ["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"];
        for w in chain.windows(2) {
            assert_eq!(compare(w[0], w[1]), Some(Less), "{} < {}", w[0], w[1]);
        }
        assert_eq!(compare("1.0~rc1-1", "1.0-1"), Some(Less));
    }

    #[test]
    fn dpkg_test_suite_cases() {
        // From dpkg's lib/dpkg/t/t-version.c.
        assert_eq!(compare("0", "0"), Some(Equal));
        assert_eq!(compare("0", "00"), Some(Equal));
        assert_eq!(compare("1:0", "0:0"), Some(Greater));
        assert_eq!(compare("1.2.3", "1.2.3"), Some(Equal));
        assert_eq!(compare("1.2.3-1", "1.2.3-2"), Some(Less));
        assert_eq!(compare("0:1.2.3", "1.2.3"), Some(Equal));
        assert_eq!(compare("1.10", "1.9"), Some(Greater));
        assert_eq!(compare("1.0+dfsg", "1.0"), Some(Greater));
        assert_eq!(compare("1.0a", "1.0+"), Some(Less));
        assert_eq!(compare("2.36-9+deb12u4", "2.36-9+deb12u10"), Some(Less));
        assert_eq!(compare("5.2.15-2+b2", "5.2.15-2"), Some(Greater));
        assert_eq!(compare("1:1.2-1", "2.0-1"), Some(Greater));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(compare("", "1"), None);
        assert_eq!(compare("x:1", "1"), None);
        assert_eq!(compare("a1", "1"), None);
        assert_eq!(compare("1 2", "1"), None);
    }
}
