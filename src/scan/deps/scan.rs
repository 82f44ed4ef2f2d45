//! `scan_dir`: find lockfiles, parse them, and match every package against the
//! advisory database. Unreadable or unparsable lockfiles are reported in `skipped`; the
//! policy judges them (`fail-on-unreadable`).

use crate::scan::deps::discover::find_lockfiles;
use crate::scan::deps::lockfile::{LockfileKind, SkippedEntry};
use crate::scan::model::{Package, Undecided, VulnFinding};
use crate::scan::osv::{AdvisoryDb, OsvError};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lockfiles larger than this are not read (no real lockfile comes close); they are
/// reported as unreadable.
pub const MAX_LOCKFILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepsOutcome {
    pub root: PathBuf,
    pub lockfiles: Vec<LockfileReport>,
    /// Sorted by lockfile path, line, advisory id.
    pub findings: Vec<VulnFinding>,
    pub skipped: Vec<SkippedLockfile>,
    /// Packages whose version could not be ordered against an advisory's ranges.
    pub undecided: Vec<Undecided>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockfileReport {
    /// Relative to the scanned root, `/`-separated.
    pub path: String,
    pub kind: LockfileKind,
    pub ecosystem: String,
    pub packages: Vec<Package>,
    /// Entries that are not registry packages or not pinned.
    pub skipped_entries: Vec<SkippedEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedLockfile {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("cannot scan {path}: {source} (check that the path exists and is readable)")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Advisories(#[from] OsvError),
}

impl DepsOutcome {
    /// All packages of all lockfiles.
    pub fn packages(&self) -> impl Iterator<Item = &Package> {
        self.lockfiles.iter().flat_map(|l| l.packages.iter())
    }
}

/// Scans a directory (or a single lockfile) against `db`.
pub fn scan_dir(root: &Path, db: &AdvisoryDb) -> Result<DepsOutcome, DepsError> {
    std::fs::metadata(root).map_err(|source| DepsError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let (found, walk_errors) = find_lockfiles(root);
    let mut skipped: Vec<SkippedLockfile> = walk_errors
        .into_iter()
        .map(|(path, reason)| SkippedLockfile { path, reason })
        .collect();
    let mut lockfiles = Vec::new();
    for f in found {
        match std::fs::metadata(&f.path) {
            Ok(m) if m.len() > MAX_LOCKFILE_BYTES => {
                skipped.push(SkippedLockfile {
                    path: f.rel,
                    reason: format!(
                        "{} bytes, larger than the {} MiB runner reads (is it really a lockfile?)",
                        m.len(),
                        MAX_LOCKFILE_BYTES >> 20
                    ),
                });
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                skipped.push(SkippedLockfile {
                    path: f.rel,
                    reason: e.to_string(),
                });
                continue;
            }
        }
        let text = match std::fs::read(&f.path) {
            // Every real lockfile is UTF-8 text: anything else is corrupt (or not a
            // lockfile), and guessing would hide that. Used as it is, without a copy.
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    let at = crate::buildspec::yaml::utf8_text(e.as_bytes())
                        .err()
                        .map(|d| format!(" at line {}, column {}", d.line, d.col))
                        .unwrap_or_default();
                    skipped.push(SkippedLockfile {
                        path: f.rel,
                        reason: format!(
                            "not UTF-8 text (invalid byte{at}); is it a corrupt lockfile?"
                        ),
                    });
                    continue;
                }
            },
            Err(e) => {
                skipped.push(SkippedLockfile {
                    path: f.rel,
                    reason: format!("cannot read it: {e}"),
                });
                continue;
            }
        };
        match f.kind.parse(&text, &f.rel) {
            Ok(parsed) => lockfiles.push(LockfileReport {
                path: f.rel,
                kind: f.kind,
                ecosystem: f.kind.ecosystem().to_string(),
                packages: parsed.packages,
                skipped_entries: parsed.skipped,
            }),
            Err(e) => skipped.push(SkippedLockfile {
                path: f.rel,
                reason: e.to_string(),
            }),
        }
    }
    let (findings, undecided) =
        match_packages_checked(lockfiles.iter().flat_map(|l| l.packages.iter()), db)?;
    Ok(DepsOutcome {
        root: root.to_path_buf(),
        lockfiles,
        findings,
        skipped,
        undecided,
    })
}

/// Matches packages against `db`, loading the ecosystems involved in parallel first.
pub fn match_packages<'a>(
    packages: impl Iterator<Item = &'a Package> + Clone,
    db: &AdvisoryDb,
) -> Result<Vec<VulnFinding>, OsvError> {
    Ok(match_packages_checked(packages, db)?.0)
}

/// Like [`match_packages`], also returning the packages that could not be decided (a
/// version the ecosystem's ordering cannot place against an advisory's ranges).
/// Lockfile ecosystems without advisory data are not undecided: the data covers the
/// ecosystems users download.
pub fn match_packages_checked<'a>(
    packages: impl Iterator<Item = &'a Package> + Clone,
    db: &AdvisoryDb,
) -> Result<(Vec<VulnFinding>, Vec<Undecided>), OsvError> {
    let ecosystems: BTreeSet<&str> = packages.clone().map(|p| p.ecosystem.as_str()).collect();
    if ecosystems.len() > 1 {
        let results: Vec<Result<(), OsvError>> = std::thread::scope(|s| {
            let handles: Vec<_> = ecosystems
                .iter()
                .map(|e| s.spawn(move || db.load(e)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Ok(())))
                .collect()
        });
        for r in results {
            r?;
        }
    }
    let (mut findings, undecided) = db.check_all(packages, |_| false)?;
    findings.sort_by(|a, b| {
        (&a.package.location.path, a.package.location.line, &a.id).cmp(&(
            &b.package.location.path,
            b.package.location.line,
            &b.id,
        ))
    });
    Ok((findings, undecided))
}
