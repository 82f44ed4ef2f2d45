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

/// A commit's facts for the delivery metrics: its committer time (RFC 3339), its
/// subject, and whether it is on a side branch (the branch checked out is not
/// `origin`'s default branch; `false` when either is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitFacts {
    pub time: String,
    pub subject: String,
    pub side_branch: bool,
}

/// The facts of `revision` (default `HEAD`) in the repository at `dir`; `None` when it
/// is not a repository or has no such commit.
pub fn commit_facts(dir: &Path, revision: Option<&str>) -> Option<CommitFacts> {
    let rev = revision.unwrap_or("HEAD");
    let rev_arg = format!("{rev}^{{commit}}");
    let line = git(dir, &["log", "-1", "--format=%cI%x00%s", &rev_arg, "--"])?;
    let (time, subject) = line.split_once('\0')?;
    let side_branch = if revision.is_none() {
        let branch = git(dir, &["symbolic-ref", "--short", "-q", "HEAD"]);
        let default = git(
            dir,
            &["symbolic-ref", "--short", "-q", "refs/remotes/origin/HEAD"],
        );
        match (branch, default) {
            (Some(b), Some(d)) => d.strip_prefix("origin/").unwrap_or(&d) != b,
            _ => false,
        }
    } else {
        false
    };
    Some(CommitFacts {
        time: time.to_string(),
        subject: subject.to_string(),
        side_branch,
    })
}

#[cfg(test)]
mod commit_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05+01:00")
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn commit_facts_come_from_git() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(commit_facts(d.path(), None), None);
        run(d.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(d.path().join("f"), "x").unwrap();
        run(d.path(), &["add", "f"]);
        run(d.path(), &["commit", "-qm", "Revert \"f\"\n\nbody"]);
        let f = commit_facts(d.path(), None).unwrap();
        assert_eq!(f.time, "2026-01-02T03:04:05+01:00");
        assert_eq!(f.subject, "Revert \"f\"");
        assert!(!f.side_branch);
        assert_eq!(commit_facts(d.path(), Some("main")).unwrap().time, f.time);
        assert_eq!(commit_facts(d.path(), Some("nope")), None);
        // origin's default branch is main; topic is a side branch.
        run(
            d.path(),
            &["update-ref", "refs/remotes/origin/main", "HEAD"],
        );
        run(
            d.path(),
            &[
                "symbolic-ref",
                "refs/remotes/origin/HEAD",
                "refs/remotes/origin/main",
            ],
        );
        assert!(!commit_facts(d.path(), None).unwrap().side_branch);
        run(d.path(), &["checkout", "-qb", "topic"]);
        assert!(commit_facts(d.path(), None).unwrap().side_branch);
    }
}
