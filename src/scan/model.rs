//! The scanners' shared vocabulary: what a finding is, where it is, how bad it is.
//! Every scanner (secrets, deps, image) produces these; the policy, SARIF and JSON
//! outputs consume only these. No IO here.

use serde::{Deserialize, Serialize};

/// Severity, ordered: `Unknown < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

/// Where a finding is: a file (relative to the scanned root, `/`-separated) and a
/// 1-based line/column, or a package inside an image layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Location {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// Image layer digest (`sha256:...`) when the file came from an image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// A secret found in a file. `redacted` never holds the secret: at most its first
/// 4 characters followed by `***`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFinding {
    /// Rule id from the rule pack, e.g. `aws-access-key-id`.
    pub rule_id: String,
    pub description: String,
    pub location: Location,
    pub redacted: String,
    /// Stable fingerprint for baselines: hex SHA-256 of `rule_id:path:secret`.
    pub fingerprint: String,
    pub severity: Severity,
    /// True when the rule checks the token's own format (prefix, checksum, length):
    /// e.g. `ghp_...`, `AKIA...`, a PEM block. Generic entropy rules are false.
    pub verified_format: bool,
}

/// One installed or locked package.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Package {
    /// OSV ecosystem name: `crates.io`, `PyPI`, `npm`, `Go`, `RubyGems`, `Packagist`,
    /// `Debian:12`, `Alpine:v3.19`, ...
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    /// For OS packages: the source package advisories are filed under (dpkg `Source:`,
    /// apk `o:`). `None` when it equals `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// Package URL (purl), e.g. `pkg:cargo/serde@1.0.0`, `pkg:deb/debian/bash@5.2.15-2?distro=debian-12`.
    pub purl: String,
    /// The lockfile, or the file in the image the package was read from.
    pub location: Location,
}

/// A package matched by an advisory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnFinding {
    /// OSV id, e.g. `RUSTSEC-2020-0105`, `PYSEC-2021-335`, `GHSA-...`.
    pub id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    pub severity: Severity,
    /// CVSS vector string when the record has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvss: Option<String>,
    pub package: Package,
    /// The lowest fixed version above the installed one, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

/// The id an undecided package goes by in verdicts, allow entries and SARIF.
pub const UNDECIDED_ID: &str = "undecided";

/// A package the advisory check could not decide: its ecosystem is absent from the
/// advisory data (an OS family OSV does not publish, or data not downloaded), or its
/// version cannot be ordered against an advisory's ranges. Not known to be clean, so
/// the policy sees it (`fail-on-undecided`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Undecided {
    pub package: Package,
    /// What could not be decided and what to do about it.
    pub reason: String,
    /// The advisories whose ranges could not be evaluated (empty when the ecosystem
    /// has no data at all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
}

/// The id an unreadable input goes by in verdicts, allow entries and SARIF.
pub const UNREADABLE_ID: &str = "unreadable-input";

/// An input a scanner could not read (a lockfile it could not open, that is too large or
/// that does not parse): nothing in it was checked, so the policy sees it
/// (`fail-on-unreadable`). `reason` says what is wrong, never the file's content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unreadable {
    /// Relative to the scanned root, `/`-separated.
    pub path: String,
    pub reason: String,
}
