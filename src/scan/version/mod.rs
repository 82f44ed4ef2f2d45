//! Version orderings, one per OSV ecosystem family. `compare` returns `None` when the
//! ecosystem has no known ordering or either version does not parse.

pub mod apk;
pub mod composer;
pub mod dpkg;
pub mod pep440;
pub mod rpm;
pub mod rubygems;
pub mod semver;

use std::cmp::Ordering;

/// The ecosystem without its release suffix: `Debian:12` -> `Debian`.
pub fn base_ecosystem(ecosystem: &str) -> &str {
    ecosystem.split(':').next().unwrap_or(ecosystem)
}

/// Compares two versions with the ordering of `ecosystem` (OSV name, a `:release`
/// suffix is allowed). `None`: unknown ecosystem or a version that does not parse.
pub fn compare(ecosystem: &str, a: &str, b: &str) -> Option<Ordering> {
    match base_ecosystem(ecosystem) {
        "crates.io" | "npm" | "Go" | "Hex" | "Pub" | "SwiftURL" => semver::compare(a, b),
        "PyPI" => pep440::compare(a, b),
        "Debian" | "Ubuntu" => dpkg::compare(a, b),
        "Alpine" | "Wolfi" | "Chainguard" => apk::compare(a, b),
        "AlmaLinux" | "Rocky Linux" | "Red Hat" | "SUSE" | "openSUSE" | "Amazon Linux"
        | "CentOS" | "Fedora" | "Oracle Linux" | "Mageia" | "Photon OS" | "openEuler"
        | "Azure Linux" => rpm::compare(a, b),
        "RubyGems" => rubygems::compare(a, b),
        "Packagist" => composer::compare(a, b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn dispatches_by_base_ecosystem() {
        assert_eq!(compare("Debian:12", "1.0-1", "1.0-2"), Some(Ordering::Less));
        assert_eq!(
            compare("Alpine:v3.19", "1.0-r1", "1.0-r0"),
            Some(Ordering::Greater)
        );
        assert_eq!(compare("PyPI", "1.0.dev1", "1.0"), Some(Ordering::Less));
        assert_eq!(compare("Go", "v1.2.3", "v1.10.0"), Some(Ordering::Less));
        assert_eq!(compare("Maven", "1", "2"), None);
        // RPM families: epoch:version-release with rpmvercmp; Wolfi/Chainguard: apk.
        for eco in [
            "AlmaLinux:9",
            "Rocky Linux:9",
            "Red Hat:enterprise_linux:9::appstream",
            "SUSE:Linux Enterprise Server 15 SP5",
            "openSUSE:Leap 15.5",
            "Amazon Linux:2",
        ] {
            assert_eq!(
                compare(eco, "1:1.0-1.el9", "2.0-1.el9"),
                Some(Ordering::Greater),
                "{eco}"
            );
            assert_eq!(compare(eco, "1.0~rc1-1", "1.0-1"), Some(Ordering::Less));
        }
        for eco in ["Wolfi", "Chainguard"] {
            assert_eq!(
                compare(eco, "1.2.3-r10", "1.2.3-r9"),
                Some(Ordering::Greater)
            );
            assert_eq!(
                compare(eco, "1.2.3_rc1-r0", "1.2.3-r0"),
                Some(Ordering::Less)
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let junk = [
            "",
            " ",
            ":",
            "-",
            "~",
            "!!",
            "1!",
            "\u{0}",
            "v",
            "..",
            "1..2",
            "-r",
            "_rc",
            "999999999999999999999999999999",
            "1:",
            ":1",
            "1-",
            "a-b-c",
            "\u{1F600}",
            "+",
            "1.0+",
            "dev-",
            "1.0.0-",
            "1_",
            "=",
            "1.0a1.post.dev",
            "é1.0",
        ];
        for eco in [
            "crates.io",
            "PyPI",
            "Debian",
            "Alpine",
            "RubyGems",
            "Packagist",
            "Go",
            "AlmaLinux:9",
            "Wolfi",
        ] {
            for a in junk {
                for b in junk {
                    let _ = compare(eco, a, b);
                }
            }
        }
    }
}
