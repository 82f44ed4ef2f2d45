//! GitHub webhooks: `POST /v1/webhooks/github` (no token: the delivery's
//! `X-Hub-Signature-256` is checked instead, before anything in the body is read).
//!
//! - `push` (a branch or tag updated) and `pull_request` (`opened`, `synchronize`,
//!   `reopened`) create a job with a git source at the delivered revision; the agent reads
//!   the buildspec from the repository at that revision. The job's `env` has
//!   `RUNNER_BRANCH`; its [`Trigger`] carries CodeBuild's webhook variables and, for a
//!   pull request from a fork, `untrusted` (no secrets, no release stages).
//! - `pull_request` `closed` with `merged: true` is recorded (repository, number, merge
//!   time, merge commit) for the delivery metrics ([`crate::pool::dora`]); a push's
//!   `head_commit` gives its job's commit time and whether it is a revert, and a push to
//!   a branch other than `repository.default_branch` (or a tag, or a pull request) is
//!   not the project's main line.
//! - `ping` answers 200; every other event, action or unmapped repository 202 and
//!   creates nothing.
//!
//! `X-GitHub-Delivery` is the key of a row written in the job's own transaction, so a
//! redelivery (on any replica) creates nothing. Commit statuses are posted for each job
//! it creates, through the notification outbox ([`statuses`]).
//!
//! Answers: 401 bad or missing signature, 400 a signed body that is not the event's JSON
//! or no delivery id, 404 webhooks not configured, 201 a job created, 200 a redelivery or
//! a recorded merge, 202 ignored.

pub mod signature;
pub mod statuses;

use super::{Answer, AppState, Res, St};
use crate::pool::protocol::{CommitFacts, JobView, SourceSpec, SubmitJob, Trigger};
use crate::pool::store::{JobChange, MergedPr, NewJob, StatusTarget};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest delivery GitHub sends (it caps payloads at 25 MB).
pub const BODY_LIMIT: usize = 25 * 1024 * 1024;

/// How the server takes GitHub's webhooks and reports back (the CLI edge fills it in).
#[derive(Clone)]
pub struct GithubConfig {
    /// The webhook's secret (the same as in GitHub's webhook settings).
    pub secret: String,
    /// Repository (`owner/name`, compared case-insensitively) → the project its jobs
    /// run as. Deliveries for other repositories are ignored.
    pub repos: BTreeMap<String, String>,
    /// GitHub's REST API (`https://api.github.com`, or GitHub Enterprise's `…/api/v3`).
    pub api_url: String,
    /// A token allowed to write commit statuses; without one no statuses are posted.
    pub token: Option<String>,
    /// The server's address as browsers reach it, for the statuses' links to job pages.
    pub public_url: Option<String>,
}

impl std::fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConfig")
            .field("secret", &"***")
            .field("repos", &self.repos)
            .field("api_url", &self.api_url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("public_url", &self.public_url)
            .finish()
    }
}

/// A `--github-repo` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--github-repo `{0}`: expected OWNER/NAME=PROJECT, e.g. acme/shop=shop")]
pub struct RepoMappingError(pub String);

/// Parses `OWNER/NAME=PROJECT` (the key is lower-cased, as GitHub's names are
/// case-insensitive).
pub fn parse_repo_mapping(s: &str) -> Result<(String, String), RepoMappingError> {
    let bad = || RepoMappingError(s.to_string());
    let (repo, project) = s.split_once('=').ok_or_else(bad)?;
    let (repo, project) = (repo.trim(), project.trim());
    let (owner, name) = repo.split_once('/').ok_or_else(bad)?;
    if owner.is_empty() || name.is_empty() || name.contains('/') || project.is_empty() {
        return Err(bad());
    }
    Ok((repo.to_ascii_lowercase(), project.to_string()))
}

// ---- the parts of GitHub's payloads used ----

#[derive(Debug, Deserialize)]
struct Repo {
    full_name: String,
    clone_url: String,
    #[serde(default)]
    default_branch: Option<String>,
}

/// A push's newest commit (for the delivery metrics).
#[derive(Debug, Deserialize)]
struct HeadCommit {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Sender {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    deleted: bool,
    repository: Repo,
    #[serde(default)]
    sender: Option<Sender>,
    #[serde(default)]
    head_commit: Option<HeadCommit>,
}

#[derive(Debug, Deserialize)]
struct PrSide {
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    /// `null` when the fork was deleted.
    repo: Option<Repo>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    head: PrSide,
    base: PrSide,
    #[serde(default)]
    merged: bool,
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PullRequestEvent {
    action: String,
    number: i64,
    pull_request: PullRequest,
    repository: Repo,
    #[serde(default)]
    sender: Option<Sender>,
}

/// What a delivery asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Intent {
    Build(Build),
    Merged(MergedPr),
    Ignore(String),
}

/// A job a delivery asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Build {
    /// `owner/name` of the repository the webhook is on (statuses go there).
    pub repo: String,
    pub clone_url: String,
    pub sha: String,
    pub branch: String,
    pub trigger: Trigger,
    /// The commit, for the delivery metrics.
    pub commit: Option<CommitFacts>,
}

fn bad_json(e: serde_json::Error) -> Answer {
    Answer::bad(format!(
        "the delivery is not the event's JSON ({e}); set the webhook's content type to application/json"
    ))
}

/// Reads a verified delivery: what to do about it.
pub(crate) fn interpret(event: &str, body: &[u8]) -> Res<Intent> {
    match event {
        "push" => {
            let p: Push = serde_json::from_slice(body).map_err(bad_json)?;
            if p.deleted || p.after.bytes().all(|b| b == b'0') {
                return Ok(Intent::Ignore("a deleted branch or tag".into()));
            }
            let (branch, trigger, side) = if let Some(b) = p.git_ref.strip_prefix("refs/heads/") {
                let side = p
                    .repository
                    .default_branch
                    .as_deref()
                    .is_some_and(|d| d != b);
                (b.to_string(), format!("branch/{b}"), side)
            } else if let Some(t) = p.git_ref.strip_prefix("refs/tags/") {
                (t.to_string(), format!("tag/{t}"), true)
            } else {
                return Ok(Intent::Ignore(format!(
                    "ref {} is no branch or tag",
                    p.git_ref
                )));
            };
            let mut v = BTreeMap::new();
            v.insert("CODEBUILD_WEBHOOK_EVENT".into(), "PUSH".into());
            v.insert("CODEBUILD_WEBHOOK_HEAD_REF".into(), p.git_ref.clone());
            v.insert("CODEBUILD_WEBHOOK_TRIGGER".into(), trigger);
            v.insert("CODEBUILD_SOURCE_VERSION".into(), p.after.clone());
            if let Some(before) = p.before.filter(|b| !b.bytes().all(|c| c == b'0')) {
                v.insert("CODEBUILD_WEBHOOK_PREV_COMMIT".into(), before);
            }
            if let Some(s) = &p.sender {
                v.insert(
                    "CODEBUILD_WEBHOOK_ACTOR_ACCOUNT_ID".into(),
                    s.id.to_string(),
                );
            }
            // The commit's time and whether it is a revert, when GitHub sent them (a
            // time that is not RFC 3339 is left out rather than refusing the build).
            let commit = p.head_commit.and_then(|c| {
                let time = c
                    .timestamp
                    .filter(|t| crate::pool::store::parse_rfc3339_ms(t).is_some())?;
                Some(CommitFacts {
                    time,
                    revert: c
                        .message
                        .as_deref()
                        .is_some_and(crate::pool::dora::is_revert_message),
                    side_branch: side,
                })
            });
            Ok(Intent::Build(Build {
                repo: p.repository.full_name,
                clone_url: p.repository.clone_url,
                sha: p.after,
                branch,
                trigger: Trigger {
                    variables: v,
                    untrusted: false,
                },
                commit,
            }))
        }
        "pull_request" => {
            let e: PullRequestEvent = serde_json::from_slice(body).map_err(bad_json)?;
            let pr = e.pull_request;
            let event = match e.action.as_str() {
                "opened" => "PULL_REQUEST_CREATED",
                "synchronize" => "PULL_REQUEST_UPDATED",
                "reopened" => "PULL_REQUEST_REOPENED",
                "closed" if pr.merged => {
                    let Some(merged_at) = pr.merged_at else {
                        return Err(Answer::bad("a merged pull request without merged_at"));
                    };
                    return Ok(Intent::Merged(MergedPr {
                        repo: e.repository.full_name,
                        number: e.number,
                        merged_at,
                        merge_sha: pr.merge_commit_sha,
                    }));
                }
                other => return Ok(Intent::Ignore(format!("pull_request action `{other}`"))),
            };
            let base_repo = pr.base.repo.as_ref().unwrap_or(&e.repository);
            // A deleted fork's head is only in the base repository (refs/pull/N/head),
            // which a clone does not fetch: nothing to build.
            let Some(head_repo) = pr.head.repo else {
                return Ok(Intent::Ignore(
                    "the pull request's head repository is gone".into(),
                ));
            };
            let untrusted = !head_repo
                .full_name
                .eq_ignore_ascii_case(&base_repo.full_name);
            let mut v = BTreeMap::new();
            v.insert("CODEBUILD_WEBHOOK_EVENT".into(), event.into());
            v.insert(
                "CODEBUILD_WEBHOOK_HEAD_REF".into(),
                format!("refs/heads/{}", pr.head.git_ref),
            );
            v.insert(
                "CODEBUILD_WEBHOOK_BASE_REF".into(),
                format!("refs/heads/{}", pr.base.git_ref),
            );
            v.insert(
                "CODEBUILD_WEBHOOK_TRIGGER".into(),
                format!("pr/{}", e.number),
            );
            v.insert(
                "CODEBUILD_SOURCE_VERSION".into(),
                format!("pr/{}", e.number),
            );
            if let Some(s) = &e.sender {
                v.insert(
                    "CODEBUILD_WEBHOOK_ACTOR_ACCOUNT_ID".into(),
                    s.id.to_string(),
                );
            }
            Ok(Intent::Build(Build {
                repo: e.repository.full_name,
                // The head commit lives in the head repository (a fork's, for a fork).
                clone_url: head_repo.clone_url,
                sha: pr.head.sha,
                branch: pr.head.git_ref,
                trigger: Trigger {
                    variables: v,
                    untrusted,
                },
                commit: None,
            }))
        }
        other => Ok(Intent::Ignore(format!("event `{other}`"))),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn accepted(why: String) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "ignored": why })),
    )
        .into_response()
}

/// `POST /v1/webhooks/github`.
pub(super) async fn github(
    State(st): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res<Response> {
    let Some(cfg) = st.config.github.clone() else {
        return Err(Answer::not_found(
            "webhook receiver (start the server with --github-webhook-secret)",
        ));
    };
    let body = body?;
    let signed = header(&headers, "x-hub-signature-256")
        .is_some_and(|sig| signature::verify(cfg.secret.as_bytes(), &body, sig));
    if !signed {
        return Err(Answer::new(
            StatusCode::UNAUTHORIZED,
            "the X-Hub-Signature-256 header is missing or does not sign this body with the \
             webhook secret; set the same secret in GitHub's webhook settings and on the server",
        ));
    }
    let event = header(&headers, "x-github-event").unwrap_or_default();
    if event == "ping" {
        return Ok((StatusCode::OK, Json(serde_json::json!({ "pong": true }))).into_response());
    }
    let intent = match interpret(event, &body)? {
        Intent::Ignore(why) => return Ok(accepted(why)),
        other => other,
    };
    let Some(delivery) = header(&headers, "x-github-delivery")
        .map(str::trim)
        .filter(|d| !d.is_empty() && d.len() <= 200)
    else {
        return Err(Answer::bad("the X-GitHub-Delivery header is missing"));
    };
    match intent {
        Intent::Ignore(_) => Ok(accepted(String::new())),
        Intent::Merged(pr) => {
            let recorded = st.store.record_merged_pr(delivery, &pr).await?;
            Ok((
                StatusCode::OK,
                Json(serde_json::json!({ "merged": pr.number, "recorded": recorded })),
            )
                .into_response())
        }
        Intent::Build(build) => {
            let Some(project) = cfg.repos.get(&build.repo.to_ascii_lowercase()).cloned() else {
                return Ok(accepted(format!(
                    "repository {} is not mapped to a project (--github-repo {}=PROJECT)",
                    build.repo, build.repo
                )));
            };
            match submit(&st, delivery, event, &project, &build).await? {
                // Its commit statuses go through the outbox (see statuses.rs).
                Some(view) => Ok((StatusCode::CREATED, Json(view)).into_response()),
                None => Ok((
                    StatusCode::OK,
                    Json(serde_json::json!({
                        "duplicate": delivery,
                        "message": "this delivery was received before; no job created"
                    })),
                )
                    .into_response()),
            }
        }
    }
}

async fn submit(
    st: &Arc<AppState>,
    delivery: &str,
    event: &str,
    project: &str,
    build: &Build,
) -> Res<Option<JobView>> {
    let job = SubmitJob {
        source: SourceSpec::Git {
            url: build.clone_url.clone(),
            revision: build.sha.clone(),
        },
        buildspec: None,
        project: Some(project.to_string()),
        env: vec![format!("RUNNER_BRANCH={}", build.branch)],
        labels: BTreeMap::new(),
        max_attempts: None,
        timeout_minutes: None,
        trigger: Some(build.trigger.clone()),
        commit: build.commit.clone(),
    };
    let spec = serde_json::to_string(&job).map_err(Answer::internal)?;
    // A pull request's build is never the main line's.
    let change = match &build.commit {
        Some(c) => JobChange {
            commit_ms: crate::pool::store::parse_rfc3339_ms(&c.time),
            revert: c.revert,
            side: c.side_branch,
        },
        None => JobChange {
            side: build
                .trigger
                .variables
                .get("CODEBUILD_WEBHOOK_EVENT")
                .is_some_and(|e| e.starts_with("PULL_REQUEST_")),
            ..JobChange::default()
        },
    };
    let new = NewJob {
        id: crate::datadir::new_uuid(),
        project: project.to_string(),
        labels: job.labels,
        spec,
        max_attempts: 3,
        change,
    };
    let status = StatusTarget {
        repo: build.repo.clone(),
        sha: build.sha.clone(),
    };
    Ok(st
        .store
        .webhook_submit(delivery, event, &new, &status)
        .await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn pr(action: &str, head_repo: &str, merged: bool) -> Vec<u8> {
        serde_json::json!({
            "action": action, "number": 7,
            "pull_request": {
                "merged": merged,
                "merged_at": if merged { Some("2026-01-02T03:04:05Z") } else { None },
                "merge_commit_sha": "c".repeat(40),
                "head": {"ref": "feature", "sha": "a".repeat(40),
                         "repo": {"full_name": head_repo, "clone_url": format!("https://github.com/{head_repo}.git")}},
                "base": {"ref": "main", "sha": "b".repeat(40),
                         "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}}
            },
            "repository": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"},
            "sender": {"id": 42}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn pull_requests_from_forks_are_untrusted_and_carry_codebuilds_variables() {
        let Intent::Build(b) = interpret("pull_request", &pr("opened", "eve/shop", false)).unwrap()
        else {
            panic!("not a build")
        };
        assert!(b.trigger.untrusted);
        assert_eq!(b.clone_url, "https://github.com/eve/shop.git");
        assert_eq!(b.sha, "a".repeat(40));
        let v = &b.trigger.variables;
        assert_eq!(v["CODEBUILD_WEBHOOK_EVENT"], "PULL_REQUEST_CREATED");
        assert_eq!(v["CODEBUILD_WEBHOOK_HEAD_REF"], "refs/heads/feature");
        assert_eq!(v["CODEBUILD_WEBHOOK_BASE_REF"], "refs/heads/main");
        assert_eq!(v["CODEBUILD_WEBHOOK_TRIGGER"], "pr/7");
        assert_eq!(v["CODEBUILD_WEBHOOK_ACTOR_ACCOUNT_ID"], "42");
        let Intent::Build(b) =
            interpret("pull_request", &pr("synchronize", "acme/shop", false)).unwrap()
        else {
            panic!("not a build")
        };
        assert!(!b.trigger.untrusted);
        assert!(matches!(
            interpret("pull_request", &pr("labeled", "acme/shop", false)).unwrap(),
            Intent::Ignore(_)
        ));
        assert!(matches!(
            interpret("pull_request", &pr("closed", "acme/shop", false)).unwrap(),
            Intent::Ignore(_)
        ));
        assert_eq!(
            interpret("pull_request", &pr("closed", "acme/shop", true)).unwrap(),
            Intent::Merged(MergedPr {
                repo: "acme/shop".into(),
                number: 7,
                merged_at: "2026-01-02T03:04:05Z".into(),
                merge_sha: Some("c".repeat(40)),
            })
        );
        assert!(matches!(
            interpret("issues", b"{}").unwrap(),
            Intent::Ignore(_)
        ));
        assert!(interpret("push", b"not json").is_err());
    }

    #[test]
    fn pushes_carry_their_commit_for_the_delivery_metrics() {
        let push = |git_ref: &str, message: &str, timestamp: &str| {
            serde_json::json!({
                "ref": git_ref, "after": "a".repeat(40), "before": "b".repeat(40),
                "repository": {"full_name": "acme/shop", "clone_url": "https://x/acme/shop.git",
                               "default_branch": "main"},
                "head_commit": {"id": "a".repeat(40), "timestamp": timestamp, "message": message}
            })
            .to_string()
            .into_bytes()
        };
        let commit = |body: Vec<u8>| match interpret("push", &body).unwrap() {
            Intent::Build(b) => b.commit,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            commit(push(
                "refs/heads/main",
                "add x",
                "2026-01-02T03:04:05+01:00"
            )),
            Some(CommitFacts {
                time: "2026-01-02T03:04:05+01:00".into(),
                revert: false,
                side_branch: false
            })
        );
        assert_eq!(
            commit(push(
                "refs/heads/main",
                "Revert \"add x\"\n\nThis reverts a.",
                "2026-01-02T03:04:05Z"
            )),
            Some(CommitFacts {
                time: "2026-01-02T03:04:05Z".into(),
                revert: true,
                side_branch: false
            })
        );
        assert!(
            commit(push("refs/heads/topic", "x", "2026-01-02T03:04:05Z"))
                .unwrap()
                .side_branch
        );
        assert!(
            commit(push("refs/tags/v1", "x", "2026-01-02T03:04:05Z"))
                .unwrap()
                .side_branch
        );
        assert_eq!(commit(push("refs/heads/main", "x", "yesterday")), None);
        let Intent::Build(b) =
            interpret("pull_request", &pr("opened", "acme/shop", false)).unwrap()
        else {
            panic!("not a build")
        };
        assert_eq!(b.commit, None);
    }

    #[test]
    fn repository_mappings_parse() {
        assert_eq!(
            parse_repo_mapping("Acme/Shop=shop").unwrap(),
            ("acme/shop".into(), "shop".into())
        );
        assert!(parse_repo_mapping("acme=shop").is_err());
        assert!(parse_repo_mapping("acme/shop").is_err());
        assert!(parse_repo_mapping("acme/shop=").is_err());
    }
}
