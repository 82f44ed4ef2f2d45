//! RPM version ordering (AlmaLinux, Rocky Linux, Red Hat, SUSE, openSUSE, Amazon
//! Linux, ...): `[epoch:]version[-release]` split the way rpm's `parseEVR` does, each
//! part compared with `rpmvercmp` (rpm 4.18's rules, `~` sorting before everything and
//! `^` after the base version), an absent epoch being `0` and an absent release sorting
//! below any release (python3-rpm's `labelCompare` / `rpm.ver`).
//!
//! `tests/it/scan_os_families.rs` checks this against Debian's python3-rpm.

use std::cmp::Ordering;

/// `(epoch, version, release)` as rpm's `parseEVR` splits them: the epoch is a run of
/// leading digits ended by `:`, the release what follows the last `-`.
fn parse_evr(evr: &str) -> (&str, &str, Option<&str>) {
    let digits = evr.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = match evr.as_bytes().get(digits) {
        Some(b':') => (&evr[..digits], &evr[digits + 1..]),
        _ => ("", evr),
    };
    let epoch = if epoch.is_empty() { "0" } else { epoch };
    match rest.rsplit_once('-') {
        Some((v, r)) => (epoch, v, Some(r)),
        None => (epoch, rest, None),
    }
}

fn is_sep(c: u8) -> bool {
    !c.is_ascii_alphanumeric() && c != b'~' && c != b'^'
}

/// rpm's `rpmvercmp`: alternating numeric and alphabetic segments, anything else a
/// separator; `~` sorts before everything (even the end), `^` after the end only.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let at = |s: &[u8], k: usize| s.get(k).copied();
    while i < a.len() || j < b.len() {
        while at(a, i).is_some_and(is_sep) {
            i += 1;
        }
        while at(b, j).is_some_and(is_sep) {
            j += 1;
        }
        let (x, y) = (at(a, i), at(b, j));
        if x == Some(b'~') || y == Some(b'~') {
            if x != Some(b'~') {
                return Ordering::Greater;
            }
            if y != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if x == Some(b'^') || y == Some(b'^') {
            if x.is_none() {
                return Ordering::Less;
            }
            if y.is_none() {
                return Ordering::Greater;
            }
            if x != Some(b'^') {
                return Ordering::Greater;
            }
            if y != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(x), Some(_)) = (x, y) else {
            break;
        };
        let numeric = x.is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let ei = i + a[i..].iter().take_while(|&&c| class(c)).count();
        let ej = j + b[j..].iter().take_while(|&&c| class(c)).count();
        if ej == j {
            // Different kinds of segment: numeric is newer than alphabetic.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut sa, mut sb) = (&a[i..ei], &b[j..ej]);
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            other => return other,
        }
        i = ei;
        j = ej;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// Whether rpm could have produced `v` as an `[epoch:]version-release`: not empty, no
/// whitespace or control characters, a version part.
fn valid(v: &str) -> bool {
    !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control()) && {
        let (_, version, _) = parse_evr(v);
        !version.is_empty()
    }
}

/// Compares two `[epoch:]version[-release]` strings. `None` when either is empty, has
/// whitespace or control characters, or has no version part.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    if !valid(a) || !valid(b) {
        return None;
    }
    let (ea, va, ra) = parse_evr(a);
    let (eb, vb, rb) = parse_evr(b);
    let ord = rpmvercmp(ea, eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(x), Some(y)) => rpmvercmp(x, y),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        });
    Some(ord)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use Ordering::{Equal as E, Greater as G, Less as L};

    /// Cases from rpm's own test suite (tests/rpmvercmp.at).
    #[test]
    fn rpmvercmp_cases() {
        let cases = [
            ("1.0", "1.0", E),
            ("1.0", "2.0", L),
            ("2.0.1", "2.0.1", E),
            ("2.0", "2.0.1", L),
            ("2.0.1a", "2.0.1", G),
            ("5.5p1", "5.5p2", L),
            ("5.5p10", "5.5p1", G),
            ("10xyz", "10.1xyz", L),
            ("xyz10", "xyz10.1", L),
            ("xyz.4", "8", L),
            ("5.5p1", "5.5.p1", E),
            ("5.6p1", "5.5p1", G),
            ("6.0.rc1", "6.0", G),
            ("10b2", "10a1", G),
            ("1.0aa", "1.0a", G),
            ("10.0001", "10.1", E),
            ("10.0001", "10.0039", L),
            ("4.999.9", "5.0", L),
            ("20101121", "20101122", L),
            ("2_0", "2_0", E),
            ("2.0", "2_0", E),
            ("a", "a", E),
            ("a+", "a_", E),
            ("+", "_", E),
            ("1.0~rc1", "1.0", L),
            ("1.0~rc1", "1.0~rc2", L),
            ("1.0~rc1~git123", "1.0~rc1", L),
            ("1.0^", "1.0", G),
            ("1.0^git1", "1.0", G),
            ("1.0^git1", "1.0^git2", L),
            ("1.0^git1", "1.01", L),
            ("1.0^20160101", "1.0.1", L),
            ("1.0^20160101^git1", "1.0^20160101", G),
            ("1.0~rc1^git1", "1.0~rc1", G),
            ("1.0^git1~pre", "1.0^git1", L),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn epoch_version_release() {
        assert_eq!(compare("1:1.0-1", "2.0-1"), Some(G));
        assert_eq!(compare("0:1.0-1", "1.0-1"), Some(E));
        assert_eq!(compare("3.0.7-24.el9", "3.0.7-27.el9"), Some(L));
        assert_eq!(compare("6.4.1-9.el9_1", "6.4.1-9.el9"), Some(G));
        assert_eq!(compare("2.0", "2.0-5"), Some(L));
        assert_eq!(compare("", "1"), None);
        assert_eq!(compare("1:", "1"), None);
        assert_eq!(compare("1.0 -1", "1"), None);
    }
}
