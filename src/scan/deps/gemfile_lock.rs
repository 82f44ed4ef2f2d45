//! `Gemfile.lock`: the `specs:` of the `GEM` section (4-space indented `name (version)`
//! lines; 6-space lines are dependency constraints). A platform suffix
//! (`1.10.4-x86_64-linux`) is dropped. `GIT` and `PATH` sections are skipped.

use crate::scan::deps::lockfile::{line_no, ParseError, Parsed};

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut section = "";
    let mut in_specs = false;
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        if !raw.starts_with(' ') {
            section = raw.trim();
            in_specs = false;
            continue;
        }
        if raw.trim() == "specs:" {
            in_specs = true;
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if !in_specs || indent != 4 {
            continue;
        }
        let t = raw.trim();
        let Some((name, rest)) = t.split_once(" (") else {
            return Err(ParseError::new(
                path,
                Some(line_no(i)),
                format!("unexpected spec `{t}`"),
            ));
        };
        let version = rest.trim_end_matches(')');
        let version = version.split('-').next().unwrap_or(version);
        match section {
            "GEM" => out.push("RubyGems", name, version, path, Some(line_no(i))),
            other => out.skip(
                Some(line_no(i)),
                format!("{name} {version}"),
                format!("from a {other} source"),
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn gem_specs() {
        let text = "GIT\n  remote: https://example.com/x.git\n  specs:\n    x (0.1.0)\n\nGEM\n  remote: https://rubygems.org/\n  specs:\n    nokogiri (1.10.4-x86_64-linux)\n      mini_portile2 (~> 2.4.0)\n    rack (2.0.1)\n\nPLATFORMS\n  ruby\n\nBUNDLED WITH\n   2.1.4\n";
        let p = parse(text, "Gemfile.lock").unwrap();
        let got = p.triples();
        assert_eq!(
            got,
            [("nokogiri", "1.10.4", Some(9)), ("rack", "2.0.1", Some(11))]
        );
        assert_eq!(p.skipped.len(), 1);
        assert!(parse("GEM\n  specs:\n    broken\n", "Gemfile.lock").is_err());
    }
}
