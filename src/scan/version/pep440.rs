//! PEP 440 version ordering (PyPI): epoch, release, pre (`a`/`b`/`rc`), post, dev and
//! local segments, with the normalisations PEP 440 allows (`alpha`, `c`, `-1` post,
//! `_`/`-` separators, leading `v`, case-insensitive).

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalPart {
    // Strings sort before numbers (PEP 440: alphanumeric < numeric).
    Str(String),
    Num(u64),
}

/// A parsed PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    /// (phase 0=a 1=b 2=rc, number)
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalPart>,
}

/// Comparison key, mirroring `packaging.version._cmpkey`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bound<T> {
    NegInf,
    Val(T),
    PosInf,
}

impl Version {
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        u64,
        Vec<u64>,
        Bound<(u8, u64)>,
        Bound<u64>,
        Bound<u64>,
        Bound<Vec<LocalPart>>,
    ) {
        let mut release = self.release.clone();
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        let pre = match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => Bound::NegInf,
            (None, _, _) => Bound::PosInf,
            (Some(p), _, _) => Bound::Val(p),
        };
        let post = self.post.map_or(Bound::NegInf, Bound::Val);
        let dev = self.dev.map_or(Bound::PosInf, Bound::Val);
        let local = if self.local.is_empty() {
            Bound::NegInf
        } else {
            Bound::Val(self.local.clone())
        };
        (self.epoch, release, pre, post, dev, local)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat_sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }
    /// Consumes one of `words` (longest first) and returns its index.
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        let (idx, w) = words
            .iter()
            .enumerate()
            .filter(|(_, w)| rest.starts_with(w.as_bytes()))
            .max_by_key(|(_, w)| w.len())?;
        self.i += w.len();
        Some(idx)
    }
}

/// Parses a PEP 440 version; `None` when it is not one.
pub fn parse(input: &str) -> Option<Version> {
    let lower = input.trim().to_ascii_lowercase();
    let lower = lower.strip_prefix('v').unwrap_or(&lower);
    let (public, local) = match lower.split_once('+') {
        Some((p, l)) => (p, Some(l)),
        None => (lower, None),
    };
    let mut c = Cursor {
        s: public.as_bytes(),
        i: 0,
    };
    let mut epoch = 0;
    let mut release = vec![c.number()?];
    if c.peek() == Some(b'!') {
        c.i += 1;
        epoch = release[0];
        release = vec![c.number()?];
    }
    while c.peek() == Some(b'.') && matches!(c.s.get(c.i + 1), Some(b'0'..=b'9')) {
        c.i += 1;
        release.push(c.number()?);
    }
    // Pre-release.
    let mut pre = None;
    let save = c.i;
    c.eat_sep();
    const PRE: [&str; 7] = ["a", "alpha", "b", "beta", "rc", "c", "preview"];
    const PRE_EXTRA: [&str; 1] = ["pre"];
    let phase = c
        .word(&PRE)
        .map(|i| [0u8, 0, 1, 1, 2, 2, 2][i])
        .or_else(|| c.word(&PRE_EXTRA).map(|_| 2));
    match phase {
        Some(phase) => {
            c.eat_sep();
            pre = Some((phase, c.number().unwrap_or(0)));
        }
        None => c.i = save,
    }
    // Post-release: `.post1`, `-1`, `.rev1`, `r1`.
    let mut post = None;
    let save = c.i;
    let had_sep = c.eat_sep();
    if c.word(&["post", "rev", "r"]).is_some() {
        c.eat_sep();
        post = Some(c.number().unwrap_or(0));
    } else if had_sep && c.s.get(save) == Some(&b'-') {
        match c.number() {
            Some(n) => post = Some(n),
            None => c.i = save,
        }
    } else {
        c.i = save;
    }
    // Dev release.
    let mut dev = None;
    let save = c.i;
    c.eat_sep();
    if c.word(&["dev"]).is_some() {
        c.eat_sep();
        dev = Some(c.number().unwrap_or(0));
    } else {
        c.i = save;
    }
    if c.i != c.s.len() {
        return None;
    }
    let mut local_parts = Vec::new();
    if let Some(l) = local {
        for part in l.split(['.', '-', '_']) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            local_parts.push(match part.parse::<u64>() {
                Ok(n) => LocalPart::Num(n),
                Err(_) => LocalPart::Str(part.to_string()),
            });
        }
    }
    Some(Version {
        epoch,
        release,
        pre,
        post,
        dev,
        local: local_parts,
    })
}

/// Orders two PEP 440 versions.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn pep440_summary_of_permitted_suffixes_order() {
        // The ordering example from PEP 440 ("Summary of permitted suffixes and
        // relative ordering") plus epoch and local versions.
        let chain = [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
            "1!0.1",
        ];
        for w in chain.windows(2) {
            assert_eq!(compare(w[0], w[1]), Some(Less), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn normalisations() {
        assert_eq!(compare("1.0", "1.0.0"), Some(Equal));
        assert_eq!(compare("1.0ALPHA1", "1.0a1"), Some(Equal));
        assert_eq!(compare("1.0-c1", "1.0rc1"), Some(Equal));
        assert_eq!(compare("1.0-1", "1.0.post1"), Some(Equal));
        assert_eq!(compare("v2.0", "2.0"), Some(Equal));
        assert_eq!(compare("1.0.dev", "1.0.dev0"), Some(Equal));
        assert_eq!(compare("1.0-preview2", "1.0rc2"), Some(Equal));
        assert_eq!(compare("0!1.0", "1.0"), Some(Equal));
        assert_eq!(compare("2.2.28", "2.2.3"), Some(Greater));
    }

    #[test]
    fn rejects_non_versions() {
        for bad in [
            "",
            "abc",
            "1.0+",
            "1.0+a..b",
            "1.0x",
            "1!",
            "1.0.post.x",
            "..1",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
