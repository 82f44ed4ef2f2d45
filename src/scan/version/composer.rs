//! Composer / Packagist ordering: the release is padded to four numbers (as Composer's
//! `VersionParser::normalize` does), then compared with PHP's `version_compare`:
//! `dev < alpha = a < beta = b < RC = rc < # (number) < pl = p`; other words sort first.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Num(u64),
    Word(String),
}

fn word_rank(w: &str) -> i32 {
    match w {
        "dev" => 0,
        "alpha" | "a" => 1,
        "beta" | "b" => 2,
        "rc" => 3,
        "#" => 4,
        "pl" | "p" | "patch" => 5,
        _ => -1,
    }
}

fn parts(v: &str) -> Option<Vec<Part>> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_prefix('v').unwrap_or(&v);
    if v.is_empty() || v.starts_with("dev-") || !v.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    {
        return None;
    }
    // Canonicalise like PHP: separators to '.', and a '.' between digit/letter changes.
    let mut out: Vec<Part> = Vec::new();
    let mut cur = String::new();
    let mut cur_digit = None;
    let flush = |cur: &mut String, out: &mut Vec<Part>, digit: Option<bool>| -> Option<()> {
        if !cur.is_empty() {
            out.push(if digit == Some(true) {
                Part::Num(cur.parse().ok()?)
            } else {
                Part::Word(std::mem::take(cur))
            });
            cur.clear();
        }
        Some(())
    };
    for c in v.chars() {
        if matches!(c, '.' | '-' | '_' | '+') {
            flush(&mut cur, &mut out, cur_digit)?;
            cur_digit = None;
            continue;
        }
        let d = c.is_ascii_digit();
        if cur_digit.is_some_and(|cd| cd != d) {
            flush(&mut cur, &mut out, cur_digit)?;
        }
        cur_digit = Some(d);
        cur.push(c);
    }
    flush(&mut cur, &mut out, cur_digit)?;
    // Pad the leading numeric release to four numbers.
    let release = out.iter().take_while(|p| matches!(p, Part::Num(_))).count();
    if release < 4 {
        let tail = out.split_off(release);
        out.extend(std::iter::repeat_n(Part::Num(0), 4 - release));
        out.extend(tail);
    }
    Some(out)
}

fn rank(p: &Part) -> i32 {
    match p {
        Part::Num(_) => word_rank("#"),
        Part::Word(w) => word_rank(w),
    }
}

/// Orders two Composer versions. `dev-*` branches have no order (`None`).
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parts(a)?, parts(b)?);
    for i in 0..a.len().max(b.len()) {
        let ord = match (a.get(i), b.get(i)) {
            (Some(Part::Num(x)), Some(Part::Num(y))) => x.cmp(y),
            (Some(x), Some(y)) => rank(x).cmp(&rank(y)),
            // PHP: a trailing number makes the longer version newer; a trailing word
            // compares against "#" (so `1.0.0.0-rc1` < `1.0.0.0`, `-p1` is newer).
            (Some(x), None) => rank(x).cmp(&word_rank("#")).then(Ordering::Greater),
            (None, Some(y)) => word_rank("#").cmp(&rank(y)).then(Ordering::Less),
            (None, None) => Ordering::Equal,
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
    fn composer_examples() {
        let chain = [
            "1.0.0-dev",
            "1.0.0-alpha1",
            "1.0.0-beta2",
            "1.0.0-RC1",
            "1.0.0",
            "1.0.0-p1",
            "1.0.1",
            "v1.2",
            "1.10.0",
        ];
        for w in chain.windows(2) {
            assert_eq!(compare(w[0], w[1]), Some(Less), "{} < {}", w[0], w[1]);
        }
        assert_eq!(compare("v5.4.3", "5.4.3.0"), Some(Equal));
        assert_eq!(compare("1.0", "1.0.0"), Some(Equal));
        assert_eq!(compare("dev-master", "1.0.0"), None);
    }
}
