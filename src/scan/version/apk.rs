//! Alpine (apk) version ordering: `digits(.digits)*[letter](_suffix[N])*[~hash][-rN]`.
//! Suffixes `_alpha < _beta < _pre < _rc < (none) < _cvs < _svn < _git < _hg < _p`.

use std::cmp::Ordering;

const NONE_RANK: u8 = 4;

#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    numbers: Vec<u64>,
    letter: Option<u8>,
    suffixes: Vec<(u8, u64)>,
    revision: u64,
}

fn suffix_rank(word: &str) -> Option<u8> {
    Some(match word {
        "alpha" => 0,
        "beta" => 1,
        "pre" => 2,
        "rc" => 3,
        "cvs" => 5,
        "svn" => 6,
        "git" => 7,
        "hg" => 8,
        "p" => 9,
        _ => return None,
    })
}

fn take_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

fn parse(v: &str) -> Option<Parsed> {
    let v = v.trim();
    let (main, revision) = match v.rsplit_once("-r") {
        Some((m, r)) => (m, r.parse::<u64>().ok()?),
        None => (v, 0),
    };
    let main = main.split_once('~').map_or(main, |(m, _)| m);
    let mut numbers = Vec::new();
    let mut rest = main;
    loop {
        let (d, r) = take_digits(rest);
        if d.is_empty() {
            return None;
        }
        numbers.push(d.parse::<u64>().ok()?);
        rest = r;
        match rest.strip_prefix('.') {
            Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => rest = r,
            _ => break,
        }
    }
    let mut letter = None;
    if let Some(c) = rest.bytes().next().filter(u8::is_ascii_lowercase) {
        letter = Some(c);
        rest = &rest[1..];
    }
    let mut suffixes = Vec::new();
    while let Some(r) = rest.strip_prefix('_') {
        let end = r.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(r.len());
        let rank = suffix_rank(&r[..end])?;
        let (d, r2) = take_digits(&r[end..]);
        let n = if d.is_empty() { 0 } else { d.parse().ok()? };
        suffixes.push((rank, n));
        rest = r2;
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Parsed {
        numbers,
        letter,
        suffixes,
        revision,
    })
}

/// Orders two apk versions.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    let mut ord = a.numbers.cmp(&b.numbers);
    if ord == Ordering::Equal {
        ord = a.letter.cmp(&b.letter);
    }
    if ord == Ordering::Equal {
        let n = a.suffixes.len().max(b.suffixes.len());
        for i in 0..n {
            let sa = a.suffixes.get(i).copied().unwrap_or((NONE_RANK, 0));
            let sb = b.suffixes.get(i).copied().unwrap_or((NONE_RANK, 0));
            ord = sa.cmp(&sb);
            if ord != Ordering::Equal {
                break;
            }
        }
    }
    Some(ord.then(a.revision.cmp(&b.revision)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn apk_ordering_examples() {
        // Cases in the spirit of apk-tools' test/version.data.
        let chain = [
            "1.0_alpha",
            "1.0_alpha2",
            "1.0_beta1",
            "1.0_pre1",
            "1.0_rc1",
            "1.0",
            "1.0-r1",
            "1.0_p1",
            "1.0a",
            "1.0.1",
            "1.2",
            "1.10",
        ];
        for w in chain.windows(2) {
            assert_eq!(compare(w[0], w[1]), Some(Less), "{} < {}", w[0], w[1]);
        }
        assert_eq!(compare("2.4.41-r0", "2.4.41"), Some(Equal));
        assert_eq!(compare("1.1.1d-r3", "1.1.1g-r0"), Some(Less));
        assert_eq!(compare("1.0_git20200101-r0", "1.0-r5"), Some(Greater));
        assert_eq!(compare("7.64.0-r5", "7.64.0-r10"), Some(Less));
        assert_eq!(compare("1.0~abc-r1", "1.0-r1"), Some(Equal));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "r1", "-r1", "1.0_foo", "1.0-rX", "1.0!", "_rc"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
