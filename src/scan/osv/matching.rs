//! OSV matching semantics: `affected[].versions`, and `ranges` of type `SEMVER` and
//! `ECOSYSTEM` with `introduced` (`"0"` = since forever), `fixed`, `last_affected` and
//! `limit` events. `GIT` ranges are ignored (no commit data for installed packages).

use crate::scan::osv::record::{Affected, Range};
use crate::scan::version::{self, base_ecosystem};
use std::cmp::Ordering;

/// The outcome for one `affected` entry that matches an installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The lowest `fixed` version above the installed one in this entry, if any.
    pub fixed: Option<String>,
}

/// Whether the record's ecosystem applies to the package's: equal, or the record names
/// the bare ecosystem (`Debian`) and the package a release of it (`Debian:12`).
/// A `Debian:12` record never matches a `Debian:11` or bare `Debian` package.
/// Two OSV families scope records more finely than an image can tell:
/// - Ubuntu Pro (ESM) fixes are filed under `Ubuntu:Pro:22.04:LTS`; an image of
///   `Ubuntu:22.04:LTS` without them is affected, so those records apply too;
/// - Red Hat records name a product stream and repository
///   (`Red Hat:enterprise_linux:9::appstream`); a RHEL 9 image
///   (`Red Hat:enterprise_linux:9`) matches every repository of its release;
/// - SUSE files SLE fixes under the module shipping the package (`SUSE:Linux
///   Enterprise Module for Basesystem 15 SP5`) and support channels (`...15 SP5-LTSS`),
///   which os-release does not name: an SLE image (`SUSE:Linux Enterprise Server 15
///   SP5`) matches every `Linux Enterprise` product and channel of its release.
pub fn ecosystem_matches(record_ecosystem: &str, package_ecosystem: &str) -> bool {
    if record_ecosystem == package_ecosystem
        || (!record_ecosystem.contains(':')
            && record_ecosystem == base_ecosystem(package_ecosystem))
    {
        return true;
    }
    if let Some(release) = package_ecosystem.strip_prefix("Ubuntu:") {
        return record_ecosystem
            .strip_prefix("Ubuntu:Pro:")
            .is_some_and(|r| r == release);
    }
    if package_ecosystem.starts_with("Red Hat:") {
        return record_ecosystem
            .strip_prefix(package_ecosystem)
            .is_some_and(|rest| rest.starts_with("::"));
    }
    if let (Some(record), Some(package)) = (
        sle_release(record_ecosystem),
        sle_release(package_ecosystem),
    ) {
        return record == package;
    }
    false
}

/// The release of a `SUSE:Linux Enterprise ...` ecosystem, a channel suffix
/// dropped: `15 SP5` from `SUSE:Linux Enterprise Module for Basesystem 15 SP5-LTSS`,
/// `15` from `SUSE:Linux Enterprise Server 15`, `5.5` from `... Micro 5.5`.
fn sle_release(ecosystem: &str) -> Option<String> {
    let rest = ecosystem.strip_prefix("SUSE:Linux Enterprise ")?;
    let words: Vec<&str> = rest.split(' ').collect();
    let (&last, head) = words.split_last()?;
    let last = last.split_once('-').map_or(last, |(core, _channel)| core);
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if let Some(sp) = last.strip_prefix("SP").filter(|sp| number(sp)) {
        let major = head.last().filter(|m| number(m))?;
        return Some(format!("{major} SP{sp}"));
    }
    number(last).then(|| last.to_string())
}

fn cmp_for(kind: &str, ecosystem: &str, a: &str, b: &str) -> Option<Ordering> {
    if kind == "SEMVER" {
        version::semver::compare(a, b)
    } else {
        version::compare(ecosystem, a, b)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

/// Evaluates one range. `None` when it cannot be decided (GIT/unknown type, or a
/// version the ecosystem's ordering cannot parse).
pub fn range_affects(range: &Range, ecosystem: &str, version: &str) -> Option<bool> {
    if range.kind != "SEMVER" && range.kind != "ECOSYSTEM" {
        return None;
    }
    let mut events: Vec<(Kind, &str)> = Vec::new();
    for e in &range.events {
        let ev = if let Some(v) = &e.introduced {
            (Kind::Introduced, v.as_str())
        } else if let Some(v) = &e.fixed {
            (Kind::Fixed, v.as_str())
        } else if let Some(v) = &e.last_affected {
            (Kind::LastAffected, v.as_str())
        } else if let Some(v) = &e.limit {
            (Kind::Limit, v.as_str())
        } else {
            continue;
        };
        events.push(ev);
    }
    // Order the events; "0" is below everything, "*" (limit) above everything.
    let cmp_ev = |a: &str, b: &str| -> Option<Ordering> {
        match (a, b) {
            ("0", "0") | ("*", "*") => Some(Ordering::Equal),
            ("0", _) | (_, "*") => Some(Ordering::Less),
            (_, "0") | ("*", _) => Some(Ordering::Greater),
            _ => cmp_for(&range.kind, ecosystem, a, b),
        }
    };
    // Insertion sort with a fallible comparator (event lists are tiny).
    for i in 1..events.len() {
        let mut j = i;
        while j > 0 && cmp_ev(events[j - 1].1, events[j].1)? == Ordering::Greater {
            events.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut affected = false;
    let mut limits = Vec::new();
    for (kind, ev) in &events {
        let c = cmp_ev(version, ev)?; // installed vs event
        match kind {
            Kind::Introduced if c != Ordering::Less || *ev == "0" => affected = true,
            Kind::Fixed if c != Ordering::Less => affected = false,
            Kind::LastAffected if c == Ordering::Greater => affected = false,
            Kind::Limit => limits.push(c),
            _ => {}
        }
    }
    if affected && !limits.is_empty() && limits.iter().all(|c| *c != Ordering::Less) {
        affected = false;
    }
    Some(affected)
}

/// What one `affected` entry says about an installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Hit(Hit),
    /// Not affected: every range could be decided (or only the explicit list applies).
    Clear,
    /// Not matched, but a `SEMVER`/`ECOSYSTEM` range could not be evaluated (the
    /// ecosystem has no ordering, or a version does not parse): not known to be clean.
    Undecided,
}

/// Matches one `affected` entry against an installed version.
pub fn affected_hit(affected: &Affected, ecosystem: &str, version: &str) -> Option<Hit> {
    match affected_verdict(affected, ecosystem, version) {
        Verdict::Hit(h) => Some(h),
        Verdict::Clear | Verdict::Undecided => None,
    }
}

/// Matches one `affected` entry against an installed version, saying when it could not
/// be decided. `GIT` ranges never make an entry undecided (they carry commits, not
/// versions, and OSV records pair them with version ranges or lists).
pub fn affected_verdict(affected: &Affected, ecosystem: &str, version: &str) -> Verdict {
    let mut hit = false;
    let mut decided = false;
    let mut undecided = false;
    let mut fixed: Option<(&str, &str)> = None; // (range kind, version)
    for range in &affected.ranges {
        let verdict = range_affects(range, ecosystem, version);
        decided |= verdict.is_some();
        undecided |= verdict.is_none() && (range.kind == "SEMVER" || range.kind == "ECOSYSTEM");
        if verdict == Some(true) {
            hit = true;
            for e in &range.events {
                let Some(f) = e.fixed.as_deref() else {
                    continue;
                };
                if cmp_for(&range.kind, ecosystem, f, version) != Some(Ordering::Greater) {
                    continue;
                }
                let lower = match fixed {
                    None => true,
                    Some((k, cur)) => cmp_for(k, ecosystem, f, cur) == Some(Ordering::Less),
                };
                if lower {
                    fixed = Some((&range.kind, f));
                }
            }
        }
    }
    // The explicit list: exact strings first; equal-by-ordering (`2.10` == `2.10.0`)
    // only when no range could decide, as parsing long PyPI lists costs per query.
    if !hit {
        hit = affected.versions.iter().any(|v| v == version)
            || (!decided
                && affected
                    .versions
                    .iter()
                    .any(|v| version::compare(ecosystem, v, version) == Some(Ordering::Equal)));
    }
    if hit {
        Verdict::Hit(Hit {
            fixed: fixed.map(|(_, f)| f.to_string()),
        })
    } else if undecided {
        Verdict::Undecided
    } else {
        Verdict::Clear
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::scan::osv::record::Event;

    fn ev(kind: &str, v: &str) -> Event {
        let mut e = Event::default();
        let s = Some(v.to_string());
        match kind {
            "i" => e.introduced = s,
            "f" => e.fixed = s,
            "l" => e.last_affected = s,
            _ => e.limit = s,
        }
        e
    }

    fn range(kind: &str, events: &[(&str, &str)]) -> Range {
        Range {
            kind: kind.into(),
            events: events.iter().map(|(k, v)| ev(k, v)).collect(),
        }
    }

    #[test]
    fn introduced_fixed_multiple_intervals_out_of_order() {
        let r = range(
            "ECOSYSTEM",
            &[("f", "2.5"), ("i", "2.0"), ("i", "0"), ("f", "1.5")],
        );
        let at = |v| range_affects(&r, "PyPI", v);
        assert_eq!(at("1.0"), Some(true));
        assert_eq!(at("1.5"), Some(false));
        assert_eq!(at("1.9"), Some(false));
        assert_eq!(at("2.0"), Some(true));
        assert_eq!(at("2.4.9"), Some(true));
        assert_eq!(at("2.5"), Some(false));
        assert_eq!(at("not a version"), None);
    }

    #[test]
    fn last_affected_and_limit() {
        let r = range("SEMVER", &[("i", "1.0.0"), ("l", "1.2.0")]);
        assert_eq!(range_affects(&r, "npm", "1.2.0"), Some(true));
        assert_eq!(range_affects(&r, "npm", "1.2.1"), Some(false));
        assert_eq!(range_affects(&r, "npm", "0.9.0"), Some(false));
        let r = range("SEMVER", &[("i", "0"), ("lim", "2.0.0")]);
        assert_eq!(range_affects(&r, "npm", "1.9.9"), Some(true));
        assert_eq!(range_affects(&r, "npm", "2.0.0"), Some(false));
        let git = range("GIT", &[("i", "0")]);
        assert_eq!(range_affects(&git, "npm", "1.0.0"), None);
    }

    #[test]
    fn fixed_is_lowest_above_installed() {
        let a = Affected {
            ranges: vec![range(
                "ECOSYSTEM",
                &[("i", "0"), ("f", "1.2"), ("i", "2.0"), ("f", "2.3")],
            )],
            ..Default::default()
        };
        assert_eq!(
            affected_hit(&a, "PyPI", "2.1"),
            Some(Hit {
                fixed: Some("2.3".into())
            })
        );
        assert_eq!(
            affected_hit(&a, "PyPI", "1.0"),
            Some(Hit {
                fixed: Some("1.2".into())
            })
        );
        assert_eq!(affected_hit(&a, "PyPI", "2.3"), None);
        let listed = Affected {
            versions: vec!["3.0".into()],
            ..Default::default()
        };
        assert_eq!(
            affected_hit(&listed, "PyPI", "3.0.0"),
            Some(Hit { fixed: None })
        );
    }

    /// A range the ecosystem's ordering cannot evaluate is undecided, never clean; a
    /// GIT range beside a decided one changes nothing.
    #[test]
    fn undecided_ranges() {
        let a = Affected {
            ranges: vec![range("ECOSYSTEM", &[("i", "0"), ("f", "1.2")])],
            ..Default::default()
        };
        assert_eq!(affected_verdict(&a, "Maven", "1.0"), Verdict::Undecided);
        assert_eq!(
            affected_verdict(&a, "PyPI", "not a version"),
            Verdict::Undecided
        );
        assert_eq!(affected_verdict(&a, "PyPI", "1.3"), Verdict::Clear);
        assert_eq!(
            affected_verdict(&a, "AlmaLinux:9", "1.3-1.el9"),
            Verdict::Clear
        );
        let with_git = Affected {
            ranges: vec![
                range("GIT", &[("i", "0")]),
                range("ECOSYSTEM", &[("i", "0"), ("f", "1.2")]),
            ],
            ..Default::default()
        };
        assert_eq!(affected_verdict(&with_git, "PyPI", "1.3"), Verdict::Clear);
        assert!(matches!(
            affected_verdict(&with_git, "PyPI", "1.1"),
            Verdict::Hit(_)
        ));
    }

    /// OSV files SLE 15 fixes under the module that ships the package
    /// (`SUSE:Linux Enterprise Module for Basesystem 15 SP5`), not the product an
    /// image's os-release names (`SUSE:Linux Enterprise Server 15 SP5`).
    #[test]
    fn suse_products_match_the_modules_and_channels_of_their_release() {
        let sles = "SUSE:Linux Enterprise Server 15 SP5";
        let table = [
            (
                "SUSE:Linux Enterprise Module for Basesystem 15 SP5",
                sles,
                true,
            ),
            (
                "SUSE:Linux Enterprise Module for Server Applications 15 SP5",
                sles,
                true,
            ),
            ("SUSE:Linux Enterprise Server 15 SP5", sles, true),
            ("SUSE:Linux Enterprise Server 15 SP5-LTSS", sles, true),
            (
                "SUSE:Linux Enterprise High Performance Computing 15 SP5-ESPOS",
                sles,
                true,
            ),
            (
                "SUSE:Linux Enterprise Module for Basesystem 15 SP4",
                sles,
                false,
            ),
            (
                "SUSE:Linux Enterprise Module for Basesystem 15",
                sles,
                false,
            ),
            ("SUSE:Linux Enterprise Server 12 SP5", sles, false),
            (
                "SUSE:Linux Enterprise Module for Basesystem 15 SP5",
                "SUSE:Linux Enterprise Desktop 15 SP5",
                true,
            ),
            (
                "SUSE:Linux Enterprise Module for Basesystem 15",
                "SUSE:Linux Enterprise Server 15",
                true,
            ),
            (
                "SUSE:Linux Enterprise Module for Basesystem 15 SP1",
                "SUSE:Linux Enterprise Server 15",
                false,
            ),
            (
                "SUSE:Linux Enterprise Micro 5.5",
                "SUSE:Linux Enterprise Micro 5.5",
                true,
            ),
            (
                "SUSE:Linux Enterprise Micro 5.4",
                "SUSE:Linux Enterprise Micro 5.5",
                false,
            ),
            (
                "SUSE:Manager Server 4.3",
                "SUSE:Linux Enterprise Server 15 SP5",
                false,
            ),
            ("openSUSE:Leap 15.5", sles, false),
            (
                "SUSE:Linux Enterprise Module for Basesystem 15 SP5",
                "openSUSE:Leap 15.5",
                false,
            ),
            ("openSUSE:Leap 15.5", "openSUSE:Leap 15.5", true),
            ("openSUSE:Leap 15.4", "openSUSE:Leap 15.5", false),
            ("openSUSE:Tumbleweed", "openSUSE:Tumbleweed", true),
        ];
        for (record, package, want) in table {
            assert_eq!(
                ecosystem_matches(record, package),
                want,
                "{record} ~ {package}"
            );
        }
    }

    #[test]
    fn ecosystem_suffixes() {
        assert!(ecosystem_matches("Debian:12", "Debian:12"));
        assert!(!ecosystem_matches("Debian:12", "Debian:11"));
        assert!(!ecosystem_matches("Debian:12", "Debian"));
        assert!(ecosystem_matches("Debian", "Debian:12"));
        assert!(!ecosystem_matches("npm", "PyPI"));
        assert!(ecosystem_matches("Ubuntu:22.04:LTS", "Ubuntu:22.04:LTS"));
        assert!(ecosystem_matches(
            "Ubuntu:Pro:22.04:LTS",
            "Ubuntu:22.04:LTS"
        ));
        assert!(!ecosystem_matches(
            "Ubuntu:Pro:20.04:LTS",
            "Ubuntu:22.04:LTS"
        ));
        assert!(!ecosystem_matches("Ubuntu:22.04", "Ubuntu:22.04:LTS"));
        let rhel9 = "Red Hat:enterprise_linux:9";
        assert!(ecosystem_matches(
            "Red Hat:enterprise_linux:9::appstream",
            rhel9
        ));
        assert!(ecosystem_matches(
            "Red Hat:enterprise_linux:9::baseos",
            rhel9
        ));
        assert!(!ecosystem_matches(
            "Red Hat:enterprise_linux:8::baseos",
            rhel9
        ));
        assert!(!ecosystem_matches(
            "Red Hat:enterprise_linux:90::baseos",
            rhel9
        ));
        assert!(!ecosystem_matches("Red Hat:rhel_eus:9.2::baseos", rhel9));
    }
}
