use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::SecretsError;
use crate::scan::model::SecretFinding;

const BASELINE_VERSION: u32 = 1;

/// One accepted finding. Only `fingerprint` is used for matching; the rest helps a
/// reviewer see what was accepted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BaselineEntry {
    pub fingerprint: String,
    pub rule_id: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// Known, accepted findings (`--baseline FILE`): findings whose fingerprint is listed
/// are suppressed. Fingerprints hash `rule_id:path:secret`, so moving a secret to
/// another line keeps it suppressed while a new or changed secret is reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub version: u32,
    pub findings: Vec<BaselineEntry>,
    #[serde(skip)]
    index: BTreeSet<String>,
}

impl Baseline {
    pub fn from_findings(findings: &[SecretFinding]) -> Self {
        let mut entries: Vec<BaselineEntry> = findings
            .iter()
            .map(|f| BaselineEntry {
                fingerprint: f.fingerprint.clone(),
                rule_id: f.rule_id.clone(),
                path: f.location.path.clone(),
                line: f.location.line,
            })
            .collect();
        entries.sort_by(|a, b| (&a.path, a.line, &a.rule_id).cmp(&(&b.path, b.line, &b.rule_id)));
        entries.dedup_by(|a, b| a.fingerprint == b.fingerprint);
        let index = entries.iter().map(|e| e.fingerprint.clone()).collect();
        Self {
            version: BASELINE_VERSION,
            findings: entries,
            index,
        }
    }

    /// Parses a baseline from JSON text; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, SecretsError> {
        let mut b: Baseline = serde_json::from_str(text).map_err(|e| SecretsError::Baseline {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if b.version != BASELINE_VERSION {
            return Err(SecretsError::Baseline {
                path: path.to_path_buf(),
                message: format!(
                    "version {} is not supported (expected {BASELINE_VERSION})",
                    b.version
                ),
            });
        }
        if let Some(bad) = b.findings.iter().find(|e| {
            e.fingerprint.len() != 64 || !e.fingerprint.bytes().all(|c| c.is_ascii_hexdigit())
        }) {
            return Err(SecretsError::Baseline {
                path: path.to_path_buf(),
                message: format!("fingerprint `{}` is not a hex SHA-256", bad.fingerprint),
            });
        }
        b.index = b.findings.iter().map(|e| e.fingerprint.clone()).collect();
        Ok(b)
    }

    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn save(&self, path: &Path) -> Result<(), SecretsError> {
        std::fs::write(path, self.to_json()).map_err(|source| SecretsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn contains(&self, fingerprint: &str) -> bool {
        self.index.contains(fingerprint)
    }

    pub fn len(&self) -> usize {
        self.findings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// Removes baselined findings; returns how many were suppressed.
    pub fn apply(&self, findings: &mut Vec<SecretFinding>) -> usize {
        let before = findings.len();
        findings.retain(|f| !self.contains(&f.fingerprint));
        before - findings.len()
    }
}
