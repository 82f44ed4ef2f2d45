//! Package URLs (<https://github.com/package-url/purl-spec>) for locked packages.

use crate::scan::osv::names::pep503;

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The purl of a package, e.g. `pkg:cargo/serde@1.0.0`, `pkg:npm/%40babel/core@7.0.0`,
/// `pkg:pypi/jinja2@2.10`, `pkg:golang/github.com/gin-gonic/gin@v1.6.0`,
/// `pkg:gem/rack@2.0.1`, `pkg:composer/symfony/http-kernel@v4.4.0`.
pub fn purl(ecosystem: &str, name: &str, version: &str) -> String {
    let (kind, name) = match ecosystem {
        "crates.io" => ("cargo", encode(name, false)),
        "PyPI" => ("pypi", encode(&pep503(name), false)),
        "npm" => match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
            Some((scope, n)) => (
                "npm",
                format!("%40{}/{}", encode(scope, false), encode(n, false)),
            ),
            None => ("npm", encode(name, false)),
        },
        "Go" => ("golang", encode(name, true)),
        "RubyGems" => ("gem", encode(name, false)),
        "Packagist" => ("composer", encode(&name.to_ascii_lowercase(), true)),
        other => ("generic", encode(&format!("{other}/{name}"), true)),
    };
    format!("pkg:{kind}/{name}@{}", encode(version, false))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn purls() {
        assert_eq!(purl("crates.io", "serde", "1.0.0"), "pkg:cargo/serde@1.0.0");
        assert_eq!(
            purl("npm", "@babel/core", "7.0.0"),
            "pkg:npm/%40babel/core@7.0.0"
        );
        assert_eq!(purl("PyPI", "Jinja2", "2.10"), "pkg:pypi/jinja2@2.10");
        assert_eq!(
            purl("PyPI", "zope.interface", "5.0"),
            "pkg:pypi/zope-interface@5.0"
        );
        assert_eq!(
            purl("Go", "github.com/gin-gonic/gin", "v1.6.0"),
            "pkg:golang/github.com/gin-gonic/gin@v1.6.0"
        );
        assert_eq!(
            purl("Packagist", "Symfony/http-kernel", "v4.4.0"),
            "pkg:composer/symfony/http-kernel@v4.4.0"
        );
        assert_eq!(
            purl("crates.io", "x", "1.0.0+build"),
            "pkg:cargo/x@1.0.0%2Bbuild"
        );
    }
}
