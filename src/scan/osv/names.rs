//! Package name normalisation per ecosystem, so lockfile names and advisory names meet.

use crate::scan::version::base_ecosystem;

/// The name as the index keys it. PyPI: PEP 503 (lowercase, runs of `-_.` -> `-`);
/// Packagist and crates.io: lowercase (both registries are case-insensitive);
/// crates.io also treats `-` and `_` alike. Others unchanged.
pub fn normalize(ecosystem: &str, name: &str) -> String {
    match base_ecosystem(ecosystem) {
        "PyPI" => pep503(name),
        "crates.io" => name.to_ascii_lowercase().replace('_', "-"),
        "Packagist" => name.to_ascii_lowercase(),
        _ => name.to_string(),
    }
}

/// PEP 503 normalised name.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_sep = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pep503_examples() {
        assert_eq!(pep503("Friendly-Bard"), "friendly-bard");
        assert_eq!(pep503("FRIENDLY-BARD"), "friendly-bard");
        assert_eq!(pep503("friendly.bard"), "friendly-bard");
        assert_eq!(pep503("friendly_bard"), "friendly-bard");
        assert_eq!(pep503("friendly--bard"), "friendly-bard");
        assert_eq!(pep503("FrIeNdLy-._.-bArD"), "friendly-bard");
        assert_eq!(normalize("PyPI", "Jinja2"), "jinja2");
        assert_eq!(normalize("npm", "Foo"), "Foo");
        assert_eq!(normalize("crates.io", "Serde_JSON"), "serde-json");
    }
}
