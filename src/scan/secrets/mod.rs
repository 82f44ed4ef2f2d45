//! Secret scanner: finds credentials (cloud keys, tokens, private keys, passwords in
//! config) in a directory tree or in single files (e.g. files from image layers).
//!
//! Rules come from a rule pack in gitleaks' TOML format (`scanners/secrets/rules.toml`
//! is embedded as the default); a cheap case-insensitive keyword pass (Aho-Corasick)
//! decides which rules' regexes run on which lines.

mod allow;
mod baseline;
mod encoding;
mod entropy;
mod error;
mod gitleaks;
mod report;
mod rules;
mod scanner;
mod walk;

pub use allow::{Allowlist, Condition, RegexTarget};
pub use baseline::{Baseline, BaselineEntry};
pub use entropy::shannon_entropy;
pub use error::SecretsError;
pub use report::{render_json, render_table};
pub use rules::{Rule, RuleMeta, RulePack, Validator};
pub use scanner::SecretScanner;
pub use walk::{ScanOptions, ScanOutcome, DEFAULT_MAX_FILE_SIZE};

/// The default rule pack, embedded at build time.
pub const DEFAULT_RULES_TOML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scanners/secrets/rules.toml"
));

#[cfg(test)]
mod tests;
