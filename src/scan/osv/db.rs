//! `AdvisoryDb`: the set of advisory sources below one or more directories, queried per
//! package. Opening only lists the directory; an ecosystem's index is built the first
//! time a package of that ecosystem is queried (or `load` is called).

use crate::scan::model::{Package, Undecided, VulnFinding};
use crate::scan::osv::cvss::record_severity;
use crate::scan::osv::error::OsvError;
use crate::scan::osv::matching::{affected_verdict, ecosystem_matches, Verdict};
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

    /// Whether any source serves `ecosystem` (its folder, or `Alpine:vX.Y` secdb).
    pub fn has_ecosystem(&self, ecosystem: &str) -> bool {
        self.sources_for(ecosystem).next().is_some()
    }

    /// True when there is no advisory data at all ([`AdvisoryDb::empty`]).
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The advisories affecting `pkg`, one finding per advisory id, sorted by id. OS
    /// packages are looked up by `source_name` and by `name`.
    pub fn query(&self, pkg: &Package) -> Result<Vec<VulnFinding>, OsvError> {
        Ok(self.check(pkg)?.findings)
    }

    /// Like [`AdvisoryDb::query`], also naming the advisories that could not be decided
    /// for `pkg` (a range its version cannot be ordered against).
    pub fn check(&self, pkg: &Package) -> Result<Checked, OsvError> {
        let mut names = vec![pkg.name.as_str()];
        if let Some(src) = pkg.source_name.as_deref() {
            if src != pkg.name {
                names.insert(0, src);
            }
        }
        let mut out = Checked::default();
        for name in names {
            let key = normalize(&pkg.ecosystem, name);
            for vuln in self.records_for(&pkg.ecosystem, name)? {
                if out.findings.iter().any(|f| f.id == vuln.id) {
                    continue;
                }
                match match_record_checked(&vuln, pkg, &key) {
                    Matched::Hit(f) => {
                        out.undecided.retain(|id| *id != f.id);
                        out.findings.push(*f);
                    }
                    Matched::Undecided if !out.undecided.contains(&vuln.id) => {
                        out.undecided.push(vuln.id.clone())
                    }
                    _ => {}
                }
            }
        }
        out.findings.sort_by(|a, b| a.id.cmp(&b.id));
        out.undecided.sort();
        Ok(out)
    }

    /// Checks packages; returns the findings and the packages that could not be
    /// decided. With `require_data`, a package whose ecosystem the database has no
    /// source for is undecided too (OS packages: an image's distribution must have
    /// data); an empty database (no advisory data at all) is reported by the caller
    /// as "vulnerabilities were not checked" instead.
    pub fn check_all<'a>(
        &self,
        packages: impl IntoIterator<Item = &'a Package>,
        require_data: impl Fn(&Package) -> bool,
    ) -> Result<(Vec<VulnFinding>, Vec<Undecided>), OsvError> {
        let mut findings = Vec::new();
        let mut undecided = Vec::new();
        for p in packages {
            if require_data(p) && !self.is_empty() && !self.has_ecosystem(&p.ecosystem) {
                let base = base_ecosystem(&p.ecosystem);
                undecided.push(Undecided {
                    package: p.clone(),
                    reason: format!(
                        "the advisory data has no {eco:?} ecosystem, so {name}@{version} was not checked: add it (`runner db update`, or OSV records under <advisories>/{base}/), or accept it in the scan policy (allow id: undecided) or with fail-on-undecided: false",
                        eco = p.ecosystem,
                        name = p.name,
                        version = p.version,
                    ),
                    advisories: Vec::new(),
                });
                continue;
            }
            let c = self.check(p)?;
            findings.extend(c.findings);
            if !c.undecided.is_empty() {
                let base = base_ecosystem(&p.ecosystem);
                undecided.push(Undecided {
                    package: p.clone(),
                    reason: format!(
                        "version {version:?} of {name} cannot be ordered with {base} rules against the ranges of {n} advisories ({ids}): check them by hand, then accept it in the scan policy (allow id: undecided, package: {name}) or with fail-on-undecided: false",
                        version = p.version,
                        name = p.name,
                        n = c.undecided.len(),
                        ids = c.undecided.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                    ),
                    advisories: c.undecided,
                });
            }
        }
        Ok((findings, undecided))
    }
}

/// What the database says about one package.
#[derive(Debug, Default, Clone)]
pub struct Checked {
    /// The advisories affecting it, sorted by id.
    pub findings: Vec<VulnFinding>,
    /// Advisories naming it whose ranges its version could not be ordered against.
    pub undecided: Vec<String>,
}

/// One record against one package.
pub enum Matched {
    Hit(Box<VulnFinding>),
    Clear,
    Undecided,
}

/// Matches one record against a package; `key` is the package's normalised name.
pub fn match_record(vuln: &Vuln, pkg: &Package, key: &str) -> Option<VulnFinding> {
    match match_record_checked(vuln, pkg, key) {
        Matched::Hit(f) => Some(*f),
        Matched::Clear | Matched::Undecided => None,
    }
}

/// Like [`match_record`], telling a record that could not be decided from a clean one.
pub fn match_record_checked(vuln: &Vuln, pkg: &Package, key: &str) -> Matched {
    let mut first_hit = None;
    let mut undecided = false;
    let mut fixed: Option<String> = None;
    for (i, a) in vuln.affected.iter().enumerate() {
        if !ecosystem_matches(&a.package.ecosystem, &pkg.ecosystem)
            || normalize(&pkg.ecosystem, &a.package.name) != key
        {
            continue;
        }
        let hit = match affected_verdict(a, &pkg.ecosystem, &pkg.version) {
            Verdict::Hit(h) => h,
            Verdict::Undecided => {
                undecided = true;
                continue;
            }
            Verdict::Clear => continue,
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
    let Some(i) = first_hit else {
        return if undecided {
            Matched::Undecided
        } else {
            Matched::Clear
        };
    };
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
    Matched::Hit(Box::new(VulnFinding {
        id: vuln.id.clone(),
        aliases: vuln.aliases.clone(),
        summary,
        severity,
        cvss,
        package: pkg.clone(),
        fixed,
    }))
}
