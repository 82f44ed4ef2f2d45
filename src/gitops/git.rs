//! The real `git` CLI, driven through `tokio::process`.
//!
//! Authentication: the token never goes into argv, the remote URL or `.git/config`. It is
//! handed to the child `git` in an environment variable read by an inline credential
//! helper configured through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n` (also environment), so
//! it works for every HTTPS remote (GitHub, GitHub Enterprise, GitLab, Gitea). Every
//! message taken from git is passed through [`Redactor`] before it reaches an error.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::gitops::error::GitopsError;

const HELPER: &str = "!f() { test \"$1\" = get || exit 0; echo \"username=${RUNNER_GITOPS_GIT_USERNAME}\"; echo \"password=${RUNNER_GITOPS_GIT_PASSWORD}\"; }; f";

/// HTTPS credentials for the remote.
#[derive(Clone)]
pub struct GitAuth {
    pub username: String,
    pub token: crate::secrets::Secret,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitAuth {{ username: {:?}, token: *** }}", self.username)
    }
}

/// Removes secrets and URL user-info from text that may be shown.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<crate::secrets::Secret>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = impl Into<crate::secrets::Secret>>) -> Redactor {
        Redactor {
            secrets: secrets
                .into_iter()
                .map(Into::into)
                .filter(|s| s.len() >= 4)
                .collect(),
        }
    }

    pub fn redact(&self, s: &str) -> String {
        let mut out = strip_userinfo(s);
        for sec in &self.secrets {
            out = out.replace(sec.expose(), "***");
        }
        out
    }
}

/// `scheme://user:pass@host/...` -> `scheme://***@host/...` everywhere in `s`.
pub fn strip_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Result of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushResult {
    Pushed,
    /// The remote moved (non-fast-forward, stale lease, lost ref race) or a hook refused:
    /// fetch, re-apply and try again.
    Rejected(String),
}

/// Commit identity.
#[derive(Debug, Clone)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// A working clone.
#[derive(Debug, Clone)]
pub struct Git {
    pub dir: PathBuf,
    auth: Option<GitAuth>,
    redactor: Redactor,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// Local paths become `file://` URLs so that `--depth` works.
pub fn clone_url(repo: &str) -> String {
    if repo.contains("://") || repo.contains('@') && repo.contains(':') {
        return repo.to_string();
    }
    let p = Path::new(repo);
    match p.canonicalize() {
        Ok(abs) => format!("file://{}", abs.display()),
        Err(_) => repo.to_string(),
    }
}

fn auth_failure(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("authentication failed")
        || s.contains("could not read username")
        || s.contains("could not read password")
        || s.contains("returned error: 401")
        || s.contains("returned error: 403")
        || s.contains("http 401")
        || s.contains("http 403")
        || s.contains("permission denied")
        || s.contains("access denied")
}

impl Git {
    fn command(&self, cwd: Option<&Path>) -> Command {
        let mut c = Command::new("git");
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        c.env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_COUNT", "4")
            .env("GIT_CONFIG_KEY_0", "credential.helper")
            .env("GIT_CONFIG_VALUE_0", "")
            .env("GIT_CONFIG_KEY_1", "credential.helper")
            .env(
                "GIT_CONFIG_VALUE_1",
                if self.auth.is_some() { HELPER } else { "" },
            )
            .env("GIT_CONFIG_KEY_2", "commit.gpgsign")
            .env("GIT_CONFIG_VALUE_2", "false")
            .env("GIT_CONFIG_KEY_3", "advice.detachedHead")
            .env("GIT_CONFIG_VALUE_3", "false")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(a) = &self.auth {
            c.env("RUNNER_GITOPS_GIT_USERNAME", &a.username)
                // The one hand-off of the token: to the credential helper above.
                .env("RUNNER_GITOPS_GIT_PASSWORD", a.token.expose());
        }
        c
    }

    async fn output(
        &self,
        args: &[&str],
        cwd: Option<&Path>,
        envs: &[(&str, &str)],
    ) -> Result<(i32, String, String), GitopsError> {
        let mut c = self.command(cwd);
        c.args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().await.map_err(GitopsError::GitSpawn)?;
        let code = out.status.code().unwrap_or(-1);
        let stdout = self.redactor.redact(&String::from_utf8_lossy(&out.stdout));
        let stderr = self.redactor.redact(&String::from_utf8_lossy(&out.stderr));
        Ok((code, stdout, stderr))
    }

    fn describe(&self, args: &[&str]) -> String {
        self.redactor.redact(&args.join(" "))
    }

    /// Run git in the clone; error on a non-zero exit.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitopsError> {
        self.run_env(args, &[]).await
    }

    async fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Result<String, GitopsError> {
        let (code, stdout, stderr) = self.output(args, Some(&self.dir), envs).await?;
        if code == 0 {
            return Ok(stdout);
        }
        let command = self.describe(args);
        let stderr = stderr.trim().to_string();
        if auth_failure(&stderr) {
            Err(GitopsError::GitAuth { command, stderr })
        } else {
            Err(GitopsError::Git {
                command,
                code,
                stderr,
            })
        }
    }

    /// Shallow clone of `branch` into `dir`.
    pub async fn clone_repo(
        repo: &str,
        dir: &Path,
        branch: &str,
        auth: Option<GitAuth>,
    ) -> Result<Git, GitopsError> {
        let redactor = Redactor::new(auth.iter().map(|a| a.token.clone()));
        let git = Git {
            dir: dir.to_path_buf(),
            auth,
            redactor,
        };
        let url = clone_url(repo);
        let dir_s = dir.to_string_lossy().to_string();
        let args = [
            "clone",
            "--quiet",
            "--depth",
            "1",
            "--single-branch",
            "--no-tags",
            "--branch",
            branch,
            url.as_str(),
            dir_s.as_str(),
        ];
        let (code, _, stderr) = git.output(&args, None, &[]).await?;
        if code != 0 {
            let command = format!("clone {}", git.redactor.redact(repo));
            let stderr = stderr.trim().to_string();
            if auth_failure(&stderr) {
                return Err(GitopsError::GitAuth { command, stderr });
            }
            let hint =
                if stderr.contains("not found in upstream") || stderr.contains("Remote branch") {
                    format!("{stderr}; the base branch `{branch}` does not exist: set --base")
                } else {
                    stderr
                };
            return Err(GitopsError::Git {
                command,
                code,
                stderr: hint,
            });
        }
        Ok(git)
    }

    /// Commit sha of `refs/heads/<branch>` on origin, if it exists.
    pub async fn remote_branch(&self, branch: &str) -> Result<Option<String>, GitopsError> {
        let refname = format!("refs/heads/{branch}");
        let out = self
            .run(&["ls-remote", "--heads", "origin", refname.as_str()])
            .await?;
        Ok(out
            .lines()
            .find(|l| l.ends_with(&refname))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string))
    }

    /// Fetch `branch` from origin (shallow) and return its commit.
    pub async fn fetch_branch(&self, branch: &str) -> Result<String, GitopsError> {
        let spec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        self.run(&[
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            "origin",
            spec.as_str(),
        ])
        .await?;
        let r = format!("refs/remotes/origin/{branch}");
        Ok(self
            .run(&["rev-parse", r.as_str()])
            .await?
            .trim()
            .to_string())
    }

    /// Make the working branch `work` point at `commit` with a clean tree.
    pub async fn reset_to(&self, commit: &str) -> Result<(), GitopsError> {
        self.run(&[
            "checkout",
            "--quiet",
            "-f",
            "-B",
            "runner-gitops-work",
            commit,
        ])
        .await?;
        self.run(&["clean", "-fdq"]).await?;
        Ok(())
    }

    /// Current HEAD commit.
    pub async fn head(&self) -> Result<String, GitopsError> {
        Ok(self.run(&["rev-parse", "HEAD"]).await?.trim().to_string())
    }

    /// Stage `files` and commit; `None` when there is nothing to commit.
    pub async fn commit(
        &self,
        files: &[String],
        author: &Author,
        message: &str,
    ) -> Result<Option<String>, GitopsError> {
        if files.is_empty() {
            return Ok(None);
        }
        let mut args = vec!["add", "--"];
        args.extend(files.iter().map(String::as_str));
        self.run(&args).await?;
        let (code, _, _) = self
            .output(&["diff", "--cached", "--quiet"], Some(&self.dir), &[])
            .await?;
        if code == 0 {
            return Ok(None);
        }
        let envs = [
            ("GIT_AUTHOR_NAME", author.name.as_str()),
            ("GIT_AUTHOR_EMAIL", author.email.as_str()),
            ("GIT_COMMITTER_NAME", author.name.as_str()),
            ("GIT_COMMITTER_EMAIL", author.email.as_str()),
        ];
        self.run_env(&["commit", "--quiet", "--no-verify", "-m", message], &envs)
            .await?;
        Ok(Some(self.head().await?))
    }

    /// Push HEAD to `refs/heads/<branch>`. `lease`: `Some(expected)` force-pushes with
    /// `--force-with-lease` (`Some("")`: the branch must not exist yet); `None` never forces.
    pub async fn push(&self, branch: &str, lease: Option<&str>) -> Result<PushResult, GitopsError> {
        let dst = format!("HEAD:refs/heads/{branch}");
        let lease_arg = lease.map(|l| format!("--force-with-lease=refs/heads/{branch}:{l}"));
        let mut args = vec!["push", "--porcelain", "origin"];
        if let Some(l) = &lease_arg {
            args.insert(1, l.as_str());
        }
        args.push(dst.as_str());
        let (code, stdout, stderr) = self.output(&args, Some(&self.dir), &[]).await?;
        if code == 0 {
            return Ok(PushResult::Pushed);
        }
        let all = format!("{stdout}\n{stderr}");
        let rejected = [
            "[rejected]",
            "[remote rejected]",
            "non-fast-forward",
            "fetch first",
            "stale info",
            "cannot lock ref",
            "failed to update ref",
        ]
        .iter()
        .any(|m| all.contains(m));
        let msg = all
            .lines()
            .filter(|l| {
                !l.trim().is_empty()
                    && !l.starts_with("To ")
                    && !l.starts_with("hint:")
                    && *l != "Done"
            })
            .collect::<Vec<_>>()
            .join(" | ");
        if rejected && !auth_failure(&stderr) {
            return Ok(PushResult::Rejected(msg));
        }
        let command = self.describe(&args);
        if auth_failure(&stderr) {
            Err(GitopsError::GitAuth {
                command,
                stderr: msg,
            })
        } else {
            Err(GitopsError::Git {
                command,
                code,
                stderr: msg,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_secret_redaction() {
        let r = Redactor::new(["ghp_secret123".to_string()]);
        let s = r.redact(
            "fatal: https://x-access-token:ghp_secret123@github.com/o/r.git and ghp_secret123",
        );
        assert!(!s.contains("ghp_secret123"));
        assert!(s.contains("https://***@github.com/o/r.git"));
    }
}
