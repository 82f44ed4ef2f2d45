//! The scans of a build, shared by `runner build` and `runner scan`: secrets and
//! lockfiles in the source, packages and secrets in an image; the policy judges them.

use super::emit::{self, Stage};
use crate::event::{Level, Reporter};
use crate::scan::image::{scan_image_archive, ImageInventory};
use crate::scan::model::{SecretFinding, Undecided, Unreadable, VulnFinding};
use crate::scan::osv::AdvisoryDb;
use crate::scan::policy::{self, Policy, Verdict};
use crate::scan::secrets::{ScanOptions, SecretScanner};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a scan could not run, or why its policy refused the findings.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Secrets(#[from] crate::scan::secrets::SecretsError),
    #[error(transparent)]
    Deps(#[from] crate::scan::deps::DepsError),
    #[error(transparent)]
    Image(#[from] crate::scan::image::ImageError),
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a file in {}: {source}", dir.display())]
    CreateFile {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Writing the saved image archive failed.
    #[error(transparent)]
    Write(std::io::Error),
    /// The blocking scan task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The policy refused the findings; the summary lists the violations.
    #[error("{summary}")]
    PolicyViolated { summary: String },
    #[error("cannot read policy {}: {source}", path.display())]
    PolicyUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} is not a valid policy:\n{diagnostics}")]
    PolicyInvalid { name: String, diagnostics: String },
}

/// What the scans found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Findings {
    pub secrets: Vec<SecretFinding>,
    pub vulnerabilities: Vec<VulnFinding>,
    /// Inputs that could not be read (lockfiles that do not parse, are too large...):
    /// the policy judges them (`fail-on-unreadable`).
    pub unreadable: Vec<Unreadable>,
    /// Packages the advisory check could not decide (an OS ecosystem without advisory
    /// data, a version that cannot be ordered): the policy judges them
    /// (`fail-on-undecided`); never counted as clean.
    pub undecided: Vec<Undecided>,
    /// Packages looked up (lockfile entries or image packages).
    pub packages: usize,
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    /// Why a part could not be scanned (no advisory data, an unreadable lockfile...).
    pub notes: Vec<String>,
    /// How old the advisory data the vulnerabilities were matched against is.
    pub advisory_data: Option<crate::scan::osv::DataAge>,
}

impl Findings {
    pub fn extend(&mut self, other: Findings) {
        self.secrets.extend(other.secrets);
        self.vulnerabilities.extend(other.vulnerabilities);
        self.unreadable.extend(other.unreadable);
        self.undecided.extend(other.undecided);
        self.packages += other.packages;
        self.files_scanned += other.files_scanned;
        self.bytes_scanned += other.bytes_scanned;
        self.notes.extend(other.notes);
    }
}

/// Where the OSV dumps are: `explicit` (the caller's choice: a flag, the project file,
/// RUNNER_ADVISORIES read at the edge), else `<data>/advisories`. `None` when the
/// directory does not exist.
pub fn advisories_dir(explicit: Option<&Path>, data: &Path) -> Option<PathBuf> {
    let dir = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data.join("advisories"));
    dir.is_dir().then_some(dir)
}

/// Opens the advisory database, or an empty one with a note saying how to get data.
pub fn open_advisories(dir: Option<&Path>) -> (AdvisoryDb, Option<String>) {
    match dir {
        Some(d) => match AdvisoryDb::open(d) {
            Ok(db) => (db, None),
            Err(e) => (AdvisoryDb::empty(), Some(format!("advisory data unusable ({e}); vulnerabilities were not checked"))),
        },
        None => (
            AdvisoryDb::empty(),
            Some("no advisory data: run `runner db update` (or set RUNNER_ADVISORIES); vulnerabilities were not checked".into()),
        ),
    }
}

/// Secrets in a directory (honouring .gitignore).
pub fn scan_secrets(dir: &Path, scanner: &SecretScanner) -> Result<Findings, ScanError> {
    let out = scanner.scan_dir(dir, &ScanOptions::default())?;
    Ok(Findings {
        secrets: out.findings,
        files_scanned: out.files_scanned,
        bytes_scanned: out.bytes_scanned,
        notes: out.warnings,
        ..Default::default()
    })
}

/// Vulnerable packages in the lockfiles under `dir`.
pub fn scan_deps(dir: &Path, db: &AdvisoryDb) -> Result<Findings, ScanError> {
    let out = crate::scan::deps::scan_dir(dir, db)?;
    Ok(Findings {
        vulnerabilities: out.findings,
        packages: out.lockfiles.iter().map(|l| l.packages.len()).sum(),
        files_scanned: out.lockfiles.len() as u64,
        unreadable: out
            .skipped
            .into_iter()
            .map(|s| Unreadable {
                path: s.path,
                reason: s.reason,
            })
            .collect(),
        undecided: out.undecided,
        ..Default::default()
    })
}

/// Packages (matched against advisories) and secrets in an image's files.
pub fn scan_inventory(
    inv: &ImageInventory,
    db: &AdvisoryDb,
    scanner: &SecretScanner,
) -> Result<Findings, ScanError> {
    let mut f = Findings::default();
    match crate::scan::image::match_inventory(inv, db) {
        Ok((vulns, undecided)) => {
            f.vulnerabilities = vulns;
            f.undecided = undecided;
        }
        Err(e) => f.notes.push(format!("advisories: {e}")),
    }
    f.packages = inv.packages.len();
    let stats = inv.for_each_file(
        crate::scan::secrets::DEFAULT_MAX_FILE_SIZE,
        |path, layer, bytes| {
            if scanner.path_allowed(path) {
                f.secrets
                    .extend(scanner.scan_bytes(path, bytes, Some(layer)));
            }
        },
    )?;
    f.files_scanned = stats.files;
    f.bytes_scanned = stats.bytes;
    f.notes.extend(inv.warnings.iter().cloned());
    Ok(f)
}

/// An image's inventory and the saved archive it reads file contents from (deleted when
/// this is dropped).
pub struct SavedImage {
    pub inventory: ImageInventory,
    archive: tempfile::TempPath,
}

impl SavedImage {
    /// The `docker save` archive the inventory was read from (removed with this value).
    pub fn archive(&self) -> &Path {
        &self.archive
    }
}

/// Saves an image from the engine to a file and reads its inventory.
pub async fn image_inventory(
    engine: &crate::docker::DockerEngine,
    image: &str,
    work: &Path,
) -> Result<SavedImage, ScanError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    std::fs::create_dir_all(work).map_err(|source| ScanError::CreateDir {
        path: work.to_path_buf(),
        source,
    })?;
    let tmp = tempfile::Builder::new()
        .prefix("runner-image-")
        .suffix(".tar")
        .tempfile_in(work)
        .map_err(|source| ScanError::CreateFile {
            dir: work.to_path_buf(),
            source,
        })?;
    let archive = tmp.into_temp_path();
    let path = archive.to_path_buf();
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(ScanError::Write)?;
    let mut stream = engine.export_image(image);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        file.write_all(&chunk).await.map_err(ScanError::Write)?;
    }
    file.flush().await.map_err(ScanError::Write)?;
    drop(file);
    let inventory = tokio::task::spawn_blocking(move || scan_image_archive(&path)).await??;
    Ok(SavedImage { inventory, archive })
}

/// Today as `YYYY-MM-DD` (UTC), for allow-list expiry.
pub fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Judges `findings` and reports one `scan` stage; `Err` when the policy fails.
pub fn judge(
    reporter: &dyn Reporter,
    what: &str,
    findings: &Findings,
    policy: &Policy,
    started: Instant,
) -> Result<Verdict, ScanError> {
    let verdict = policy::evaluate_all(
        policy,
        &findings.secrets,
        &findings.vulnerabilities,
        &findings.unreadable,
        &findings.undecided,
        &today(),
    );
    let warn = |message: String| emit::notice(reporter, Level::Warning, message);
    for u in &findings.unreadable {
        warn(format!(
            "scan {what}: could not read {}: {}",
            u.path, u.reason
        ));
    }
    for u in &findings.undecided {
        warn(format!(
            "scan {what}: not decided: {}@{} ({}): {}",
            u.package.name, u.package.version, u.package.ecosystem, u.reason
        ));
    }
    for note in &findings.notes {
        warn(format!("scan {what}: {note}"));
    }
    for e in &verdict.expired {
        warn(format!("scan policy: allow entry {e} no longer applies"));
    }
    let mut message = format!(
        "Scan of {what}: {} secrets, {} vulnerabilities in {} packages ({} not decided), {} files, {} unreadable; {} accepted by the allow-list",
        findings.secrets.len(),
        findings.vulnerabilities.len(),
        findings.packages,
        findings.undecided.len(),
        findings.files_scanned,
        findings.unreadable.len(),
        verdict.allowed.len()
    );
    if !verdict.passed() {
        message.push_str(&format!(
            "; policy violated by {}",
            verdict
                .violations
                .iter()
                .map(|v| format!("{} ({}, {:?})", v.id, v.subject, v.severity))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Stage::since(reporter, "scan", started).report(
        verdict.passed(),
        message.clone(),
        serde_json::json!({
            "target": what,
            "secrets": findings.secrets,
            "vulnerabilities": findings.vulnerabilities,
            "unreadable": findings.unreadable,
            "undecided": findings.undecided,
            "verdict": verdict,
        }),
    );
    if verdict.passed() {
        Ok(verdict)
    } else {
        Err(ScanError::PolicyViolated { summary: message })
    }
}

/// A policy file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read policy {}: {source}", path.display())]
pub struct PolicyUnreadable {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A policy file (or the built-in policy) read and parsed.
pub struct PolicyFile {
    /// How the diagnostics name it: the path as given, or `scanners/policy.yml`.
    pub name: String,
    /// `None`: the file is not a valid policy (the diagnostics say why).
    pub policy: Option<Policy>,
    pub diagnostics: Vec<crate::buildspec::Diagnostic>,
}

/// Reads and parses a policy file, or the built-in policy when `path` is `None`: the one
/// loader behind `runner scan` ([`load_policy`]) and the build's gates
/// (`pipeline::prepare`), which render the diagnostics each their own way.
pub fn read_policy(path: Option<&Path>) -> Result<PolicyFile, PolicyUnreadable> {
    let (text, name) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| PolicyUnreadable {
                path: p.to_path_buf(),
                source,
            })?,
            p.display().to_string(),
        ),
        None => (
            policy::DEFAULT_POLICY.to_string(),
            "scanners/policy.yml".to_string(),
        ),
    };
    let (policy, diagnostics) = policy::parse(&text);
    Ok(PolicyFile {
        name,
        policy,
        diagnostics,
    })
}

/// Loads a policy file (or the built-in one) with its warnings rendered; errors name the
/// file and position.
pub fn load_policy(path: Option<&Path>) -> Result<(Policy, Vec<String>), ScanError> {
    let file = read_policy(path).map_err(|e| ScanError::PolicyUnreadable {
        path: e.path,
        source: e.source,
    })?;
    let rendered: Vec<String> = file
        .diagnostics
        .iter()
        .map(|d| crate::buildspec::render(&file.name, d))
        .collect();
    match file.policy {
        Some(p) => Ok((p, rendered)),
        None => Err(ScanError::PolicyInvalid {
            diagnostics: rendered.join("\n"),
            name: file.name,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn policy_errors_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yml");
        let e = load_policy(Some(&missing)).unwrap_err();
        assert!(matches!(e, ScanError::PolicyUnreadable { .. }), "{e:?}");
        assert!(e.to_string().starts_with("cannot read policy "), "{e}");

        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "fail-on: [[[\n").unwrap();
        let e = load_policy(Some(&bad)).unwrap_err();
        assert!(matches!(e, ScanError::PolicyInvalid { .. }), "{e:?}");
        assert!(e.to_string().contains("is not a valid policy:"), "{e}");

        assert!(load_policy(None).is_ok());
    }

    #[test]
    fn one_loader_reads_the_builtin_and_invalid_policies() {
        let builtin = read_policy(None).unwrap();
        assert_eq!(builtin.name, "scanners/policy.yml");
        assert!(builtin.policy.is_some() && builtin.diagnostics.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "fail-on: [[[\n").unwrap();
        let file = read_policy(Some(&bad)).unwrap();
        assert_eq!(file.name, bad.display().to_string());
        assert!(file.policy.is_none() && !file.diagnostics.is_empty());

        let e = read_policy(Some(&dir.path().join("missing.yml")))
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("cannot read policy "), "{e}");
    }
}
