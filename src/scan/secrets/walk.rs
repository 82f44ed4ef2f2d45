use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::baseline::Baseline;
use super::error::SecretsError;
use super::scanner::{is_binary, SecretScanner};
use crate::scan::model::SecretFinding;

/// Files larger than this are skipped unless `ScanOptions::max_file_size` says otherwise.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// How `scan_dir` walks and filters.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Skip files larger than this many bytes.
    pub max_file_size: u64,
    /// Honour `.gitignore` / `.git/info/exclude` (also outside a git checkout).
    pub respect_gitignore: bool,
    /// Scanning threads; 0 means one per CPU.
    pub threads: usize,
    /// Findings whose fingerprints are in the baseline are suppressed.
    pub baseline: Option<Baseline>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            respect_gitignore: true,
            threads: 0,
            baseline: None,
        }
    }
}

/// The result of a directory scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanOutcome {
    /// Sorted by path, line, column, rule id.
    pub findings: Vec<SecretFinding>,
    pub files_scanned: u64,
    /// Binary, too large, unreadable or allow-listed files.
    pub skipped_files: u64,
    pub bytes_scanned: u64,
    /// Findings hidden because the baseline lists them.
    pub suppressed: u64,
    /// Non-fatal problems (unreadable files, rule pack warnings).
    pub warnings: Vec<String>,
}

struct WorkItem {
    path: PathBuf,
    label: String,
    size: u64,
}

fn label_for(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.is_empty() {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        parts.join("/")
    }
}

#[derive(Default)]
struct Partial {
    findings: Vec<SecretFinding>,
    files_scanned: u64,
    skipped_files: u64,
    bytes_scanned: u64,
    warnings: Vec<String>,
    /// Reused read buffer.
    buf: Vec<u8>,
}

/// A walker thread's results, merged into the shared outcome when the thread ends.
struct FlushOnDrop<'a> {
    part: Partial,
    shared: &'a Mutex<ScanOutcome>,
}

impl Drop for FlushOnDrop<'_> {
    fn drop(&mut self) {
        let part = std::mem::take(&mut self.part);
        match self.shared.lock() {
            Ok(mut o) => o.absorb(part),
            Err(poisoned) => poisoned.into_inner().absorb(part),
        }
    }
}

impl ScanOutcome {
    fn absorb(&mut self, p: Partial) {
        self.findings.extend(p.findings);
        self.files_scanned += p.files_scanned;
        self.skipped_files += p.skipped_files;
        self.bytes_scanned += p.bytes_scanned;
        self.warnings.extend(p.warnings);
    }
}

impl SecretScanner {
    /// Scans a directory tree (or a single file). Skips `.git`, gitignored files (when
    /// asked), binary files and files over `max_file_size`.
    pub fn scan_dir(&self, root: &Path, opts: &ScanOptions) -> Result<ScanOutcome, SecretsError> {
        let meta = std::fs::metadata(root).map_err(|source| SecretsError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let mut outcome = ScanOutcome {
            warnings: self.warnings().to_vec(),
            ..ScanOutcome::default()
        };
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if meta.is_file() {
            let label = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let item = WorkItem {
                path: root.to_path_buf(),
                label,
                size: meta.len(),
            };
            let mut part = Partial::default();
            self.scan_item(&item, opts, &mut part);
            outcome.absorb(part);
        } else if meta.is_dir() {
            let shared = Mutex::new(std::mem::take(&mut outcome));
            self.walk_parallel(root, opts, threads, &shared);
            outcome = shared.into_inner().unwrap_or_else(|p| p.into_inner());
        } else {
            return Err(SecretsError::NotFound {
                path: root.to_path_buf(),
            });
        }
        if let Some(b) = &opts.baseline {
            outcome.suppressed = b.apply(&mut outcome.findings) as u64;
        }
        outcome.findings.sort_by(|a, b| {
            (
                &a.location.path,
                a.location.line,
                a.location.column,
                &a.rule_id,
            )
                .cmp(&(
                    &b.location.path,
                    b.location.line,
                    b.location.column,
                    &b.rule_id,
                ))
        });
        Ok(outcome)
    }

    /// Walks and scans at once: each walker thread scans the files it finds.
    fn walk_parallel(
        &self,
        root: &Path,
        opts: &ScanOptions,
        threads: usize,
        shared: &Mutex<ScanOutcome>,
    ) {
        let walker = ignore::WalkBuilder::new(root)
            .hidden(false)
            .parents(opts.respect_gitignore)
            .ignore(false)
            .git_ignore(opts.respect_gitignore)
            .git_exclude(opts.respect_gitignore)
            .git_global(false)
            .require_git(false)
            .follow_links(false)
            .threads(threads)
            .filter_entry(|e| e.file_name() != ".git")
            .build_parallel();
        walker.run(|| {
            let mut part = FlushOnDrop {
                part: Partial::default(),
                shared,
            };
            Box::new(move |entry| {
                match entry {
                    Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => {
                        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                        let path = e.into_path();
                        let label = label_for(root, &path);
                        self.scan_item(&WorkItem { path, label, size }, opts, &mut part.part);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        part.part.skipped_files += 1;
                        part.part.warnings.push(format!("skipped: {err}"));
                    }
                }
                ignore::WalkState::Continue
            })
        });
    }

    fn scan_item(&self, item: &WorkItem, opts: &ScanOptions, part: &mut Partial) {
        if item.size > opts.max_file_size || self.path_allowed(&item.label) {
            part.skipped_files += 1;
            return;
        }
        // One buffer per thread: no allocation (and no fresh page faults) per file.
        let mut data = std::mem::take(&mut part.buf);
        data.clear();
        let read = std::fs::File::open(&item.path).and_then(|f| {
            f.take(opts.max_file_size.saturating_add(1))
                .read_to_end(&mut data)
        });
        let data = match read {
            Ok(_) => data,
            Err(e) => {
                part.skipped_files += 1;
                part.warnings
                    .push(format!("skipped {}: {e}", item.path.display()));
                return;
            }
        };
        if data.len() as u64 > opts.max_file_size || is_binary(&data) {
            part.skipped_files += 1;
            part.buf = data;
            return;
        }
        part.files_scanned += 1;
        part.bytes_scanned += data.len() as u64;
        part.findings
            .extend(self.scan_bytes(&item.label, &data, None));
        part.buf = data;
    }
}
