//! `AdvisoryDb`: the set of advisory sources below one or more directories, queried per
//! package. Opening only lists the directory; an ecosystem's index is built the first
//! time a package of that ecosystem is queried (or `load` is called).

use crate::scan::model::{Package, VulnFinding};
use crate::scan::osv::cvss::record_severity;
use crate::scan::osv::error::OsvError;
use crate::scan::osv::matching::{affected_hit, ecosystem_matches};
use crate::scan::osv::names::normalize;
use crate::scan::osv::record::Vuln;
use crate::scan::osv::source::{discover, Source, SourceKind};
use crate::scan::version::{self, base_ecosystem};
use serde::Serialize;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct AdvisoryDb {
    sources: Vec<Source>,
}

/// Per loaded source: what the index holds and how long building it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EcosystemStats {
    pub ecosystem: String,
    pub path: PathBuf,
    pub records: usize,
    pub withdrawn: usize,
    pub invalid: usize,
    pub load_ms: f64,
}

impl AdvisoryDb {
    /// Lists the sources below `dir` (`<ecosystem>/all.zip`, `<ecosystem>/*.json`,
    /// `alpine-secdb/vX.Y/*.yaml`). Nothing is decompressed or parsed yet.
    pub fn open(dir: &Path) -> Result<AdvisoryDb, OsvError> {
        Self::open_dirs(&[dir.to_path_buf()])
    }

    /// Like `open`, for several directories (e.g. the downloaded dumps plus local
    /// records). Fails if none of them holds any advisory data.
    pub fn open_dirs(dirs: &[PathBuf]) -> Result<AdvisoryDb, OsvError> {
        let mut sources = Vec::new();
        for dir in dirs {
            sources.extend(discover(dir)?);
        }
        if sources.is_empty() {
            let path = dirs.first().cloned().unwrap_or_default();
            return Err(OsvError::NoData { path });
        }
        Ok(AdvisoryDb { sources })
    }

    /// A database with no advisories (every query is empty).
    pub fn empty() -> AdvisoryDb {
        AdvisoryDb {
            sources: Vec::new(),
        }
    }

    /// The ecosystems (folder names, `Alpine:vX.Y`) data is available for.
    pub fn ecosystems(&self) -> Vec<String> {
        let mut v: Vec<String> = self.sources.iter().map(|s| s.ecosystem.clone()).collect();
        v.dedup();
        v
    }

    fn sources_for<'a>(&'a self, ecosystem: &'a str) -> impl Iterator<Item = &'a Source> + 'a {
        let base = base_ecosystem(ecosystem);
        self.sources
            .iter()
            .filter(move |s| s.ecosystem == ecosystem || s.ecosystem == base)
    }

    /// Builds the index of every source serving `ecosystem` now (e.g. to time it, or
    /// to load ecosystems in parallel before querying).
    pub fn load(&self, ecosystem: &str) -> Result<(), OsvError> {
        for s in self.sources_for(ecosystem) {
            s.loaded()?;
        }
        Ok(())
    }

    /// Statistics of the sources loaded so far.
    pub fn stats(&self) -> Vec<EcosystemStats> {
        self.sources
            .iter()
            .filter_map(|s| {
                let l = s.loaded_if_ready()?;
                let path = match &s.kind {
                    SourceKind::Zip(p) => p.clone(),
                    SourceKind::Loose(f) | SourceKind::Secdb(f) => f
                        .first()
                        .and_then(|p| p.parent())
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                };
                Some(EcosystemStats {
                    ecosystem: s.ecosystem.clone(),
                    path,
                    records: l.records,
                    withdrawn: l.withdrawn,
                    invalid: l.invalid,
                    load_ms: l.load_time.as_secs_f64() * 1000.0,
                })
            })
            .collect()
    }

    /// The (non-withdrawn) records naming `name` in `ecosystem`.
    pub fn records_for(&self, ecosystem: &str, name: &str) -> Result<Vec<Arc<Vuln>>, OsvError> {
        let mut out: Vec<Arc<Vuln>> = Vec::new();
        for s in self.sources_for(ecosystem) {
            for v in s.records_for(ecosystem, name)? {
                if v.withdrawn.is_none() && !out.iter().any(|o| o.id == v.id) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// The advisories affecting `pkg`, one finding per advisory id, sorted by id. OS
    /// packages are looked up by `source_name` and by `name`.
    pub fn query(&self, pkg: &Package) -> Result<Vec<VulnFinding>, OsvError> {
        let mut names = vec![pkg.name.as_str()];
        if let Some(src) = pkg.source_name.as_deref() {
            if src != pkg.name {
                names.insert(0, src);
            }
        }
        let mut findings: Vec<VulnFinding> = Vec::new();
        for name in names {
            let key = normalize(&pkg.ecosystem, name);
            for vuln in self.records_for(&pkg.ecosystem, name)? {
                if findings.iter().any(|f| f.id == vuln.id) {
                    continue;
                }
                if let Some(f) = match_record(&vuln, pkg, &key) {
                    findings.push(f);
                }
            }
        }
        findings.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(findings)
    }
}

/// Matches one record against a package; `key` is the package's normalised name.
pub fn match_record(vuln: &Vuln, pkg: &Package, key: &str) -> Option<VulnFinding> {
    let mut first_hit = None;
    let mut fixed: Option<String> = None;
    for (i, a) in vuln.affected.iter().enumerate() {
        if !ecosystem_matches(&a.package.ecosystem, &pkg.ecosystem)
            || normalize(&pkg.ecosystem, &a.package.name) != key
        {
            continue;
        }
        let Some(hit) = affected_hit(a, &pkg.ecosystem, &pkg.version) else {
            continue;
        };
        first_hit.get_or_insert(i);
        if let Some(f) = hit.fixed {
            let lower = match &fixed {
                None => true,
                Some(cur) => version::compare(&pkg.ecosystem, &f, cur) == Some(Ordering::Less),
            };
            if lower {
                fixed = Some(f);
            }
        }
    }
    let i = first_hit?;
    // OSV Go versions have no `v`; report the fix the way go.mod spells versions.
    if pkg.ecosystem == "Go" && pkg.version.starts_with('v') {
        fixed = fixed.map(|f| {
            if f.starts_with('v') {
                f
            } else {
                format!("v{f}")
            }
        });
    }
    let (severity, cvss) = record_severity(vuln, Some(i));
    let summary = if vuln.summary.trim().is_empty() {
        let line = vuln.details.lines().next().unwrap_or("").trim();
        line.chars().take(200).collect()
    } else {
        vuln.summary.trim().to_string()
    };
    Some(VulnFinding {
        id: vuln.id.clone(),
        aliases: vuln.aliases.clone(),
        summary,
        severity,
        cvss,
        package: pkg.clone(),
        fixed,
    })
}
