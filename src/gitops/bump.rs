//! The orchestration: clone → edit → commit on a deterministic branch → push (re-applying
//! the edit on top of whatever the remote has when the push is rejected) → open or update
//! the pull request.
//!
//! Guarantees:
//! - nothing to change (the base, or the existing bump branch, already pins the digest):
//!   no commit, no push, no new PR;
//! - one branch per target (`runner/bump/<image>-<hash>`, from the image and files), so a
//!   later build updates the same PR instead of opening another;
//! - no lost updates: a rejected push (non-fast-forward, lost ref race, hook) fetches the
//!   branch again and re-applies the edit on top of it, up to `max_push_attempts`; the
//!   other writer's commit stays. No force-push unless `force_push` is set (then the branch
//!   is rebuilt from the base and pushed with `--force-with-lease`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gitops::edit::{self, ImageRef, Target};
use crate::gitops::error::GitopsError;
use crate::gitops::forge::{open_or_update, Forge, ForgeClient, ForgeKind, PrAction, PrSpec};
use crate::gitops::git::{Author, Git, GitAuth, PushResult};
use crate::gitops::worktree::{clean_path, Worktree, MAX_FILE};

fn default_base() -> String {
    "main".into()
}
fn default_author_name() -> String {
    "runner".into()
}
fn default_author_email() -> String {
    "runner@localhost".into()
}
fn default_commit_message() -> String {
    "chore(deploy): bump {repository} to {short_digest}\n\nImage: {reference}\nFiles:\n{files}"
        .into()
}
fn default_pr_title() -> String {
    "Bump {repository} to {tag_or_digest}".into()
}
fn default_attempts() -> u32 {
    5
}

/// One entry of the `gitops:` section of runner.yml (and the CLI's flags). Keys are
/// kebab-case like the rest of runner.yml (`forge-url`, `helm-keys`, `force-push`…).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GitopsConfig {
    /// Config repository: HTTPS/SSH/git URL or a local path.
    pub repo: String,
    /// Branch the PR targets (and the one pushed to directly without a forge).
    #[serde(default = "default_base")]
    pub base: String,
    /// Files to edit, relative to the repository root; empty: every YAML file.
    #[serde(default)]
    pub files: Vec<String>,
    /// Head branch; default `runner/bump/<image>-<hash>`. Equal to `base` (or forge
    /// `none` without a branch): commit straight to the base branch.
    #[serde(default)]
    pub branch: Option<String>,
    /// `github`, `gitlab`, `gitea` or `none`; default: guessed from the repo host.
    #[serde(default)]
    pub forge: Option<ForgeKind>,
    /// API base URL (GitHub Enterprise: `https://HOST/api/v3`; a bare host gets the
    /// forge's API path appended).
    #[serde(default)]
    pub forge_url: Option<String>,
    /// Name of the environment variable holding the token (default: RUNNER_GITOPS_TOKEN,
    /// then GITHUB_TOKEN / GITLAB_TOKEN / GITEA_TOKEN).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Extra Helm value paths (`api.image`) holding an image map or a full reference.
    #[serde(default)]
    pub helm_keys: Vec<String>,
    #[serde(default = "default_author_name")]
    pub author_name: String,
    #[serde(default = "default_author_email")]
    pub author_email: String,
    /// Placeholders: {repository} {reference} {tag} {digest} {short_digest}
    /// {tag_or_digest} {files} {branch} {base}.
    #[serde(default = "default_commit_message")]
    pub commit_message: String,
    #[serde(default = "default_pr_title")]
    pub pr_title: String,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Rebuild the bump branch from the base each time and force-push (with lease).
    #[serde(default)]
    pub force_push: bool,
    #[serde(default = "default_attempts")]
    pub max_push_attempts: u32,
}

impl GitopsConfig {
    pub fn new(repo: impl Into<String>) -> GitopsConfig {
        GitopsConfig {
            repo: repo.into(),
            base: default_base(),
            files: Vec::new(),
            branch: None,
            forge: None,
            forge_url: None,
            token_env: None,
            helm_keys: Vec::new(),
            author_name: default_author_name(),
            author_email: default_author_email(),
            commit_message: default_commit_message(),
            pr_title: default_pr_title(),
            labels: Vec::new(),
            force_push: false,
            max_push_attempts: default_attempts(),
        }
    }

    /// Forge to use.
    pub fn forge_kind(&self) -> ForgeKind {
        self.forge.unwrap_or_else(|| ForgeKind::infer(&self.repo))
    }

    /// The names a token is looked up under, in order: `token_env`, RUNNER_GITOPS_TOKEN,
    /// then the forge's own (GITHUB_TOKEN, GITLAB_TOKEN, GITEA_TOKEN).
    pub fn token_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.token_env.iter().cloned().collect();
        names.push("RUNNER_GITOPS_TOKEN".into());
        names.push(self.forge_kind().token_env().into());
        names
    }

    /// The token: the first of [`Self::token_names`] the caller's `secrets` hold that is not
    /// blank, trimmed. The caller reads its environment (or a job's credentials); this
    /// never does.
    pub fn token(&self, secrets: &crate::secrets::NamedSecrets) -> Option<Secret> {
        self.token_names()
            .iter()
            .filter_map(|n| secrets.get(n))
            .map(|v| v.trimmed())
            .find(|v| !v.is_empty())
    }
}

/// A token that never prints (zeroed on drop).
pub use crate::secrets::Secret;

/// One bump: which image moved to which digest, and where to write it.
#[derive(Debug, Clone)]
pub struct BumpRequest {
    pub config: GitopsConfig,
    /// Image repository (a tag/digest in it is allowed; the tag is used when `tag` is None).
    pub image: String,
    /// `sha256:…` of the pushed image.
    pub digest: String,
    pub tag: Option<String>,
    /// Token for git HTTPS and the forge API; `None`: anonymous git, no forge.
    pub token: Option<Secret>,
}

/// What happened.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BumpStatus {
    /// The base branch already pins this digest everywhere: nothing done.
    UpToDate,
    /// The bump branch already carries this change (earlier run or concurrent runner):
    /// no commit; the PR was looked up (and created if missing).
    AlreadyProposed,
    /// A commit was pushed.
    Pushed,
}

/// The PR that carries the bump.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrOutcome {
    pub number: u64,
    pub url: String,
    pub action: PrAction,
}

/// Result of [`bump`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BumpOutcome {
    pub status: BumpStatus,
    pub repository: String,
    pub reference: String,
    /// Branch pushed to (the base branch for direct pushes).
    pub branch: String,
    pub base: String,
    pub commit: Option<String>,
    pub changed_files: Vec<String>,
    pub pull_request: Option<PrOutcome>,
    pub push_attempts: u32,
    /// Matching values left alone, files skipped, and why.
    pub notes: Vec<String>,
}

/// Deterministic head branch for a target: `runner/bump/<last path component>-<8 hex>`.
pub fn default_branch(repository_normalized: &str, files: &[String], base: &str) -> String {
    let mut h = Sha256::new();
    h.update(repository_normalized.as_bytes());
    let mut sorted: Vec<&String> = files.iter().collect();
    sorted.sort();
    for f in sorted {
        h.update(b"\n");
        h.update(f.as_bytes());
    }
    h.update(b"\n@");
    h.update(base.as_bytes());
    let hex: String = h
        .finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let last = repository_normalized.rsplit('/').next().unwrap_or("image");
    let slug: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("runner/bump/{slug}-{hex}")
}

fn valid_branch(b: &str) -> bool {
    !b.is_empty()
        && !b.starts_with(['-', '/'])
        && !b.ends_with(['/', '.'])
        && !b.contains("..")
        && !b.contains("@{")
        && !b.ends_with(".lock")
        && b.chars()
            .all(|c| !c.is_ascii_control() && !" ~^:?*[\\".contains(c))
}

struct Applied {
    files: Vec<String>,
    notes: Vec<String>,
    summary: Vec<String>,
}

fn io_err(path: &Path, source: std::io::Error) -> GitopsError {
    GitopsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Does this file mention the image's repository (without its registry, which Helm values
/// often keep apart)? Decides whether an unreadable file makes the bump incomplete.
fn mentions(bytes: &[u8], target: &Target) -> bool {
    let repo = target.repository.as_str();
    let path = repo.split_once('/').map_or(repo, |(_, p)| p);
    let path = path.strip_prefix("library/").unwrap_or(path);
    let needle = path.as_bytes();
    !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle)
}

/// The file's text, or why it is not YAML text runner can edit (not UTF-8).
fn text(bytes: Vec<u8>) -> Result<String, edit::YamlError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = e.as_bytes().get(..at).unwrap_or_default();
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let col = at
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        edit::YamlError {
            line,
            col,
            info: "not UTF-8 text".into(),
        }
    })
}

/// Edit the files of the clone; returns the changed ones.
///
/// Named files (`files` not empty) must all be readable YAML: any problem is an error
/// naming the file. When walking every YAML file, a file that cannot be read or parsed is
/// skipped with a note, unless it mentions the image: then the bump would be incomplete
/// (or silently "already at" the digest), so it is an error listing those files.
fn apply(wt: &Worktree, files: &[String], target: &Target) -> Result<Applied, GitopsError> {
    let explicit = !files.is_empty();
    let mut applied = Applied {
        files: Vec::new(),
        notes: Vec::new(),
        summary: Vec::new(),
    };
    let list = if explicit {
        files
            .iter()
            .map(|f| clean_path(f))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let (list, links) = wt.yaml_files()?;
        for l in links {
            applied.notes.push(format!(
                "{l}: a symbolic link, skipped (runner never follows links in a config repository)"
            ));
        }
        list
    };
    let mut unreadable = Vec::new();
    for rel in list {
        let bytes = match wt.read(&rel, MAX_FILE) {
            Ok(b) => b,
            Err(e @ GitopsError::TooLarge { .. }) if !explicit => {
                applied.notes.push(format!("{e}; skipped"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let parsed = text(bytes.clone()).and_then(|src| {
            let fe = edit::edit_content(&rel, &src, target)?;
            Ok((src, fe))
        });
        let (src, fe) = match parsed {
            Ok(p) => p,
            Err(e) if explicit => {
                return Err(GitopsError::Yaml {
                    file: rel,
                    source: e,
                })
            }
            Err(e) => {
                if mentions(&bytes, target) {
                    unreadable.push(format!("{rel}:{}:{}: {}", e.line, e.col, e.info));
                } else {
                    applied.notes.push(format!("{rel}: skipped: {e}"));
                }
                continue;
            }
        };
        applied.notes.extend(fe.notes.iter().cloned());
        if fe.changed() && fe.new_content != src {
            wt.write(&rel, fe.new_content.as_bytes())?;
            for e in &fe.edits {
                for p in &e.paths {
                    applied
                        .summary
                        .push(format!("- `{rel}` {p} ({})", e.editor));
                }
            }
            applied.files.push(rel);
        }
    }
    if !unreadable.is_empty() {
        return Err(GitopsError::Unreadable {
            image: target.name.clone(),
            files: unreadable,
        });
    }
    Ok(applied)
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

fn backoff(attempt: u32) -> Duration {
    // 150 ms, 300 ms, 600 ms … plus up to 100 ms of jitter from the clock.
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos() % 100))
        .unwrap_or(0);
    Duration::from_millis(150 * (1u64 << attempt.min(5)) / 2 + jitter)
}

/// Move `req.image` to `req.digest` in the config repository. See the module docs.
pub async fn bump(req: &BumpRequest) -> Result<BumpOutcome, GitopsError> {
    let cfg = &req.config;
    let mut target = Target::new(&req.image, req.tag.as_deref(), &req.digest)?;
    target.helm_keys = cfg.helm_keys.clone();
    target.add_missing = !cfg.files.is_empty();
    if !valid_branch(&cfg.base) {
        return Err(GitopsError::InvalidRequest(format!(
            "base branch `{}` is not a valid branch name",
            cfg.base
        )));
    }
    if let Some(b) = &cfg.branch {
        if !valid_branch(b) {
            return Err(GitopsError::InvalidRequest(format!(
                "branch `{b}` is not a valid branch name"
            )));
        }
    }
    let kind = cfg.forge_kind();
    let token = req.token.as_ref().filter(|t| !t.is_empty());
    let forge = match (token, kind) {
        (_, ForgeKind::None) => None,
        (None, k) => {
            return Err(GitopsError::MissingToken {
                forge: k.name(),
                env: k.token_env(),
            })
        }
        (Some(t), k) => ForgeClient::new(k, &cfg.repo, cfg.forge_url.as_deref(), t)?,
    };
    let direct = cfg.branch.as_deref() == Some(cfg.base.as_str())
        || (cfg.branch.is_none() && forge.is_none());
    let branch = match &cfg.branch {
        Some(b) => b.clone(),
        None if direct => cfg.base.clone(),
        None => default_branch(&target.repository, &cfg.files, &cfg.base),
    };
    let written = ImageRef::parse(&req.image)?;
    let reference = ImageRef {
        name: written.name.clone(),
        tag: target.tag.clone(),
        digest: Some(target.digest.clone()),
    }
    .to_reference();

    let tmp = tempfile::Builder::new()
        .prefix("runner-gitops-")
        .tempdir()
        .map_err(|e| io_err(&std::env::temp_dir(), e))?;
    let auth = token.map(|t| GitAuth {
        username: kind.git_username().to_string(),
        token: t.clone(),
    });
    let git = Git::clone_repo(&cfg.repo, &tmp.path().join("repo"), &cfg.base, auth).await?;
    let wt = Worktree::new(&git.dir);

    let mut outcome = BumpOutcome {
        status: BumpStatus::UpToDate,
        repository: written.name.clone(),
        reference: reference.clone(),
        branch: branch.clone(),
        base: cfg.base.clone(),
        commit: None,
        changed_files: Vec::new(),
        pull_request: None,
        push_attempts: 0,
        notes: Vec::new(),
    };

    // 1. Does the base already pin it?
    let mut applied = apply(&wt, &cfg.files, &target)?;
    outcome.notes = applied.notes.clone();
    if applied.files.is_empty() {
        return Ok(outcome);
    }
    let base_head = git.head().await?;

    // 2. Start from the existing bump branch (unless rebuilding with force).
    let mut lease: Option<String> = None;
    if !direct {
        let remote = git.remote_branch(&branch).await?;
        match (&remote, cfg.force_push) {
            (Some(_), false) => {
                if let Some(f) = forge.as_ref() {
                    if f.find_open_pr(&branch, &cfg.base).await?.is_none() {
                        outcome.notes.push(format!(
                            "branch {branch} exists without an open pull request (merged or closed?); the new commit goes on top of it: delete the branch or set force-push to rebuild it from {}",
                            cfg.base
                        ));
                    }
                }
                let sha = git.fetch_branch(&branch).await?;
                git.reset_to(&sha).await?;
                applied = apply(&wt, &cfg.files, &target)?;
                if applied.files.is_empty() {
                    outcome.status = BumpStatus::AlreadyProposed;
                    outcome.pull_request = ensure_pr(
                        forge.as_ref(),
                        cfg,
                        &branch,
                        &target,
                        &reference,
                        &[],
                        false,
                    )
                    .await?;
                    return Ok(outcome);
                }
            }
            (r, true) => lease = Some(r.clone().unwrap_or_default()),
            (None, false) => {}
        }
    }

    // 3. Commit and push; on rejection fetch, re-apply on top, retry.
    let author = Author {
        name: cfg.author_name.clone(),
        email: cfg.author_email.clone(),
    };
    let attempts = cfg.max_push_attempts.max(1);
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut summary: Vec<String>;
    loop {
        outcome.push_attempts += 1;
        changed.extend(applied.files.iter().cloned());
        summary = applied.summary.clone();
        let msg = message(
            &cfg.commit_message,
            &target,
            &reference,
            &branch,
            &cfg.base,
            &applied.files,
        );
        let Some(commit) = git.commit(&applied.files, &author, &msg).await? else {
            break;
        };
        match git.push(&branch, lease.as_deref()).await? {
            PushResult::Pushed => {
                outcome.status = BumpStatus::Pushed;
                outcome.commit = Some(commit);
                break;
            }
            PushResult::Rejected(why) => {
                if outcome.push_attempts >= attempts {
                    return Err(GitopsError::PushConflict {
                        branch: branch.clone(),
                        attempts: outcome.push_attempts,
                        last: why,
                    });
                }
                outcome.notes.push(format!(
                    "push attempt {} rejected: {why}; re-applying on the remote branch",
                    outcome.push_attempts
                ));
                tokio::time::sleep(backoff(outcome.push_attempts)).await;
                let remote = git.remote_branch(&branch).await?;
                let start = if cfg.force_push && !direct {
                    lease = Some(remote.clone().unwrap_or_default());
                    base_head.clone()
                } else {
                    match remote {
                        Some(_) => git.fetch_branch(&branch).await?,
                        None => base_head.clone(),
                    }
                };
                git.reset_to(&start).await?;
                applied = apply(&wt, &cfg.files, &target)?;
                if applied.files.is_empty() {
                    // Someone else pushed the same change meanwhile.
                    outcome.status = BumpStatus::AlreadyProposed;
                    break;
                }
            }
        }
    }
    outcome.changed_files = changed.into_iter().collect();
    if !direct {
        let update = outcome.status == BumpStatus::Pushed;
        outcome.pull_request = ensure_pr(
            forge.as_ref(),
            cfg,
            &branch,
            &target,
            &reference,
            &summary,
            update,
        )
        .await?;
    }
    Ok(outcome)
}

fn vars<'a>(
    target: &'a Target,
    reference: &'a str,
    short: &'a str,
    tag_or_digest: &'a str,
    branch: &'a str,
    base: &'a str,
    files: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("repository", target.repository.as_str()),
        ("reference", reference),
        ("tag", target.tag.as_deref().unwrap_or("")),
        ("digest", target.digest.as_str()),
        ("short_digest", short),
        ("tag_or_digest", tag_or_digest),
        ("branch", branch),
        ("base", base),
        ("files", files),
    ]
}

fn short_digest(d: &str) -> String {
    crate::publish::reference::short_digest(d).to_string()
}

fn message(
    template: &str,
    target: &Target,
    reference: &str,
    branch: &str,
    base: &str,
    files: &[String],
) -> String {
    let short = short_digest(&target.digest);
    let tod = target
        .tag
        .clone()
        .map_or_else(|| short.clone(), |t| format!("{t} ({short})"));
    let files: String = files
        .iter()
        .map(|f| format!("- {f}"))
        .collect::<Vec<_>>()
        .join("\n");
    render(
        template,
        &vars(target, reference, &short, &tod, branch, base, &files),
    )
}

async fn ensure_pr(
    forge: Option<&ForgeClient>,
    cfg: &GitopsConfig,
    branch: &str,
    target: &Target,
    reference: &str,
    summary: &[String],
    update: bool,
) -> Result<Option<PrOutcome>, GitopsError> {
    let Some(forge) = forge else { return Ok(None) };
    let short = short_digest(&target.digest);
    let tod = target
        .tag
        .clone()
        .map_or_else(|| short.clone(), |t| format!("{t} ({short})"));
    let title = render(
        &cfg.pr_title,
        &vars(target, reference, &short, &tod, branch, &cfg.base, ""),
    );
    let body = format!(
        "Moves `{}` to `{reference}`.\n\nChanged values:\n{}\n\n<!-- runner-gitops: branch={branch} -->\nOpened by runner; later builds of this image update this pull request.",
        target.repository,
        if summary.is_empty() { "- (see the commits)".to_string() } else { summary.join("\n") }
    );
    let spec = PrSpec {
        head: branch.to_string(),
        base: cfg.base.clone(),
        title,
        body,
        labels: cfg.labels.clone(),
    };
    let (pr, action) = open_or_update(forge, &spec, update).await?;
    Ok(Some(PrOutcome {
        number: pr.number,
        url: pr.url,
        action,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_asked_for_by_name_in_order_and_trimmed() {
        use crate::secrets::NamedSecrets;
        let mut cfg = GitopsConfig::new("https://github.com/o/cfg.git");
        let named = |pairs: &[(&str, &str)]| {
            NamedSecrets::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))))
        };
        let all = named(&[
            ("MY_TOKEN", " mine\n"),
            ("RUNNER_GITOPS_TOKEN", "runner"),
            ("GITHUB_TOKEN", "github"),
        ]);
        let got =
            |cfg: &GitopsConfig, s: &NamedSecrets| cfg.token(s).map(|t| t.expose().to_string());
        assert_eq!(got(&cfg, &all).as_deref(), Some("runner"));
        cfg.token_env = Some("MY_TOKEN".into());
        assert_eq!(got(&cfg, &all).as_deref(), Some("mine"));
        // A blank value is skipped; nothing known is no token.
        let blank = named(&[("MY_TOKEN", "  "), ("GITHUB_TOKEN", "github")]);
        assert_eq!(got(&cfg, &blank).as_deref(), Some("github"));
        assert!(cfg.token(&NamedSecrets::default()).is_none());
    }

    #[test]
    fn branch_is_deterministic_and_valid() {
        let a = default_branch(
            "ghcr.io/org/app",
            &["b.yaml".into(), "a.yaml".into()],
            "main",
        );
        let b = default_branch(
            "ghcr.io/org/app",
            &["a.yaml".into(), "b.yaml".into()],
            "main",
        );
        assert_eq!(a, b);
        assert!(a.starts_with("runner/bump/app-"));
        assert!(valid_branch(&a));
        assert!(!valid_branch("a..b"));
    }

    #[test]
    fn config_parses_from_yaml_like_json() {
        let c: GitopsConfig = serde_json::from_str(
            r#"{"repo":"https://github.com/o/r","forge":"github","labels":["deploy"]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.base, "main");
        assert_eq!(c.forge_kind(), ForgeKind::Github);
        assert!(serde_json::from_str::<GitopsConfig>(r#"{"repo":"x","typo":1}"#).is_err());
    }
}
