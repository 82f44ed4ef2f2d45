//! `requirements*.txt`: only exact pins (`name==1.2.3`, `name===1.2.3`, extras and
//! environment markers allowed) are packages; every other requirement (ranges, URLs,
//! `-e`, unpinned names) is reported as skipped. Options (`-r`, `--hash`, ...) and
//! comments are ignored; `\` continuations are joined.

use crate::scan::deps::lockfile::{line_no, ParseError, Parsed};

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut logical = String::new();
    let mut start = 0usize;
    for (i, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            start = i;
        }
        let line = match raw.find(" #").or_else(|| raw.starts_with('#').then_some(0)) {
            Some(c) => &raw[..c],
            None => raw,
        };
        if let Some(cont) = line.trim_end().strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        one(entry.trim(), path, Some(line_no(start)), &mut out);
    }
    if !logical.trim().is_empty() {
        one(logical.trim(), path, Some(line_no(start)), &mut out);
    }
    Ok(out)
}

fn one(entry: &str, path: &str, line: Option<u32>, out: &mut Parsed) {
    if entry.is_empty() {
        return;
    }
    if entry.starts_with('-') {
        if entry.starts_with("-e") || entry.starts_with("--editable") {
            out.skip(line, entry.to_string(), "editable install, no version");
        }
        return; // -r, -c, --index-url, ...
    }
    // Drop environment markers and per-requirement options.
    let req = entry.split(';').next().unwrap_or("");
    let req = req.split(" --").next().unwrap_or(req).trim();
    if req.contains("://") || req.contains(" @ ") {
        out.skip(line, entry.to_string(), "URL requirement, no version");
        return;
    }
    let (name, pin) = match req.split_once("===").or_else(|| req.split_once("==")) {
        Some((n, v)) => (n, Some(v)),
        None => (req, None),
    };
    let name = name.split('[').next().unwrap_or(name).trim();
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match pin.map(str::trim) {
        Some(v)
            if valid_name && !v.is_empty() && !v.contains([',', '*', '<', '>', '!', '=', ' ']) =>
        {
            out.push("PyPI", name, v, path, line)
        }
        _ => out.skip(line, entry.to_string(), "not pinned with =="),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pins_and_skips() {
        let text = "# comment\n-r base.txt\nJinja2==2.10 # old\nrequests[security]==2.19.0 ; python_version < \"3.8\"\nflask>=1.0\nnumpy\ndjango==2.2.0 \\\n    --hash=sha256:abc\n-e git+https://x/y.git#egg=y\nurllib3==1.24.*\npkg @ https://example.com/pkg.whl\n";
        let p = parse(text, "requirements.txt").unwrap();
        let got = p.triples();
        assert_eq!(
            got,
            [
                ("Jinja2", "2.10", Some(3)),
                ("requests", "2.19.0", Some(4)),
                ("django", "2.2.0", Some(7))
            ]
        );
        let skipped: Vec<_> = p.skipped.iter().map(|s| s.line).collect();
        assert_eq!(skipped, [Some(5), Some(6), Some(9), Some(10), Some(11)]);
    }

    #[test]
    fn garbage() {
        for t in ["==", "==1", "a==", "\\", "[]==1", "a===", "\u{0}==1"] {
            let p = parse(t, "requirements.txt").unwrap();
            assert!(p.packages.is_empty(), "{t}");
        }
    }
}
