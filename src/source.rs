//! Facts about the source directory, read from git at the edge (plain `git` commands).

use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// The commit checked out (`CODEBUILD_RESOLVED_SOURCE_VERSION`).
    pub commit: Option<String>,
    /// The branch, when one is checked out (`CODEBUILD_SOURCE_VERSION` falls back to it).
    pub branch: Option<String>,
    /// `remote.origin.url` (`CODEBUILD_SOURCE_REPO_URL`).
    pub origin: Option<String>,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Reads what git knows about `dir`; all `None` when it is not a repository (or git is
/// not installed).
pub fn git_info(dir: &Path) -> GitInfo {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD"]);
    if commit.is_none() {
        return GitInfo::default();
    }
    GitInfo {
        commit,
        branch: git(dir, &["symbolic-ref", "--short", "-q", "HEAD"]),
        origin: git(dir, &["config", "--get", "remote.origin.url"]),
    }
}
