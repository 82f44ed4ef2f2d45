//! The agent pool's wire protocol, version 1: JSON over HTTP, shared by `runner server`,
//! `runner agent`, `runner submit` and `runner jobs`. One module so the two sides cannot
//! drift; the server refuses any other version with 400 and a message the client prints.
//!
//! Every request under `/v1/` carries `Authorization: Bearer <token>` and
//! `Runner-Protocol: 1`. Errors are [`ApiError`] bodies with a status:
//! 400 malformed or unsupported version, 401 no or unknown token, 403 wrong role,
//! 404 unknown job, 409 fenced (the attempt's lease is lost: the agent must abandon the
//! job), 413 too large, 422 a source or buildspec refused (with diagnostics).
//!
//! Routes (role in brackets):
//! ```text
//! GET  /healthz                                   (none)   "ok"
//! GET  /metrics                                   (none)   Prometheus text
//! HEAD /v1/blobs/{sha256}                         [submit] 200 stored / 404
//! PUT  /v1/blobs/{sha256}                         [submit] a source archive (tar.zst); 201
//! POST /v1/jobs                  SubmitJob        [submit] 201 JobView | 422 Refused
//! GET  /v1/jobs?state=&limit=                     [submit] JobList
//! GET  /v1/jobs/{id}                              [submit] JobView
//! POST /v1/jobs/{id}/cancel                       [submit] JobView
//! POST /v1/jobs/{id}/retry                        [submit] JobView (a new attempt, queued)
//! GET  /v1/jobs/{id}/log?attempt=&after=&wait=    [submit] LogPage (long-polls ≤ 30 s)
//! GET  /v1/jobs/{id}/artifacts                    [submit] ArtifactList
//! GET  /v1/jobs/{id}/artifacts/{name}             [submit] bytes
//! GET  /v1/events?project=  (Last-Event-ID)      [submit] text/event-stream of CloudEvents
//! GET  /v1/queue                                  [submit] QueueView (pauses, queued jobs)
//! POST /v1/queue/pause           PauseQueue       [admin]  QueueView
//! POST /v1/queue/resume          ResumeQueue      [admin]  QueueView
//! GET  /v1/stats?project=&from=&to=&window=       [submit] StatsReport (delivery metrics)
//! POST /v1/agent/claim           Claim            [agent]  200 Assignment | 204 none
//! GET  /v1/agent/blobs/{sha256}                   [agent]  the source archive
//! POST /v1/agent/jobs/{id}/{attempt}/heartbeat  Fence   [agent] Heartbeat | 409
//! GET  /v1/agent/jobs/{id}/{attempt}/watch?lease=&wait= [agent] Heartbeat | 409
//! POST /v1/agent/jobs/{id}/{attempt}/log        LogAppend  [agent] 204 | 409
//! PUT  /v1/agent/jobs/{id}/{attempt}/artifacts/{name}?lease= [agent] 204 | 409
//! POST /v1/agent/jobs/{id}/{attempt}/complete   Complete   [agent] 200 JobView | 409
//! POST /v1/agent/jobs/{id}/{attempt}/release    Fence      [agent] 204 | 409
//! POST /v1/webhooks/github                       (X-Hub-Signature-256, no token)
//!                                                 201 job | 200 redelivery, merge | 202 ignored | 401
//! ```
//! `admin` may do everything. Fencing: a claim returns the attempt number and a random
//! lease id; every later agent request names both, and the server accepts it only while
//! that attempt is the job's current one, running, under that lease. Completion is
//! idempotent: the same completion again answers 200 with the same result.
//!
//! A claim is unconfirmed until the agent's first heartbeat (or log append): until then
//! its lease is [`Assignment::confirm_secs`] (10 s), so a claim the server committed just
//! as its agent stopped waiting (a shutdown drops the long-poll at once) is queued again
//! within seconds, with the attempt's outcome `unconfirmed`, not counted as lost. Agents
//! confirm the moment the claim's answer arrives.
//!
//! `release` gives an attempt back (the agent is shutting down, or a claim was answered
//! after it stopped taking work): the job is queued again at once; the attempt stays in
//! its history with the outcome `released` and does not count against `max_attempts`.
//! Releasing an attempt that is already released answers 204 again.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version this build speaks.
pub const VERSION: u32 = 1;
/// The header that carries it.
pub const VERSION_HEADER: &str = "runner-protocol";
/// The longest a claim, log or watch request is held open, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;
/// A claim's lease, unless the server is told otherwise; agents heartbeat every third.
pub const DEFAULT_LEASE_SECS: u64 = 30;
/// A fresh claim's lease until the agent confirms it (see [`Assignment::confirm_secs`]).
pub const CONFIRM_SECS: u64 = 10;
/// At most this many labels on an agent or a job.
pub const MAX_LABELS: usize = 8;

/// Roles a token has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Claims and runs jobs.
    Agent,
    /// Submits and follows jobs.
    Submit,
    /// Everything.
    Admin,
}

/// Every error answer's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong and what to do about it.
    pub error: String,
    /// Buildspec or archive diagnostics (`file:line:col: message`), when refused for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

/// Where a job's source comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SourceSpec {
    /// An archive uploaded with `PUT /v1/blobs/{sha256}` (tar, zstd-compressed).
    Archive { sha256: String },
    /// A git repository the agent clones at a revision.
    Git { url: String, revision: String },
}

/// `POST /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    pub source: SourceSpec,
    /// The buildspec's path inside the source (default: the project file's, else
    /// `buildspec.yml`).
    #[serde(default)]
    pub buildspec: Option<String>,
    /// The project's name (default: the project file's, else `job`).
    #[serde(default)]
    pub project: Option<String>,
    /// `KEY=VALUE` overrides for the build's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// An agent takes the job only when it has every one of these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Attempts before a job whose agents keep vanishing fails (default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Build timeout in minutes (default: the buildspec's or runner's).
    #[serde(default)]
    pub timeout_minutes: Option<u32>,
    /// Set by the server for a job a GitHub webhook created; `POST /v1/jobs` refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// The commit built, as the submitter knows it (for the delivery metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitFacts>,
}

/// The commit a job builds, for the delivery metrics ([`crate::pool::dora`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitFacts {
    /// When the commit was made (RFC 3339).
    pub time: String,
    /// A revert commit: it marks the deployment before it as failed.
    #[serde(default)]
    pub revert: bool,
    /// Not the project's default branch (a pull request's or a side branch's build):
    /// its failure is not a failure of what is deployed.
    #[serde(default)]
    pub side_branch: bool,
}

/// `GET /v1/stats`: the delivery metrics of each project over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The window `[from, to)`, RFC 3339.
    pub from: String,
    pub to: String,
    pub projects: Vec<ProjectStats>,
}

/// One project's four figures (see [`crate::pool::dora`] for their definitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectStats {
    pub project: String,
    #[serde(flatten)]
    pub figures: crate::pool::dora::Figures,
}

/// What a webhook delivery tells the build, set by the server (never by a submitter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// CodeBuild's webhook variables (`CODEBUILD_WEBHOOK_EVENT`, `…_HEAD_REF`,
    /// `…_BASE_REF`, `…_TRIGGER`, `…_ACTOR_ACCOUNT_ID`, `CODEBUILD_SOURCE_VERSION`): the
    /// agent sets them as runner's own variables (a job's `env` may not name `CODEBUILD_*`).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// A pull request from a fork: the build gets no secrets (neither the buildspec's
    /// references nor the agent's credentials) and runs no release stage (image push,
    /// signing, GitOps), as CodeBuild and GitHub Actions do.
    #[serde(default)]
    pub untrusted: bool,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// runner could not run it (setup error, agents lost more than `max_attempts` times).
    Error,
}

impl JobState {
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Error => "error",
        }
    }
}

/// How an attempt ended, as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    /// The build passed.
    Succeeded,
    /// The build's commands failed.
    Failed,
    /// The job was cancelled (the agent stopped the build).
    Cancelled,
    /// The agent could not run it (bad buildspec, source, image).
    Error,
}

/// One attempt of a job, as the user sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub agent: String,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default)]
    pub ended_at: Option<String>,
    /// `succeeded`, `failed`, `cancelled`, `error`, `lost` (lease expired), `released`
    /// (the agent gave it back) or `unconfirmed` (claimed, but the agent never confirmed
    /// it: the job never started there).
    #[serde(default)]
    pub outcome: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub state: JobState,
    pub project: String,
    /// The project's build number (CODEBUILD_BUILD_NUMBER), assigned by the server at
    /// submit: 1, 2, … per project, like CodeBuild's `buildNumber`.
    #[serde(default)]
    pub build_number: u64,
    pub labels: BTreeMap<String, String>,
    /// The current (or last) attempt; 0 before the first claim.
    pub attempt: u32,
    pub max_attempts: u32,
    pub created_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The build's exit code once finished (0 passed, 1 failed, …).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it ended, in words (e.g. "agent lost 3 times").
    #[serde(default)]
    pub message: Option<String>,
    pub cancel_requested: bool,
    /// The log hit the server's limit and was cut there (the job says so, never silently).
    pub log_truncated: bool,
    #[serde(default)]
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// `POST /v1/agent/claim`: the agent waits up to `wait_secs` for a job it can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The agent's name (unique in the pool; default host name and a random suffix).
    pub agent: String,
    pub labels: BTreeMap<String, String>,
    pub wait_secs: u64,
}

/// A claimed job: everything the agent needs to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub job_id: String,
    /// The fencing token: this attempt's number.
    pub attempt: u32,
    /// The lease's id, named in every later request about this attempt.
    pub lease: String,
    pub lease_secs: u64,
    /// The claim is unconfirmed: it holds only this long unless the agent confirms it
    /// with a heartbeat (or a log append) first, so a claim whose answer reached no
    /// running agent goes back to the queue soon (outcome `unconfirmed`, not counted
    /// against `max_attempts`). 0 from an older server (its claims need no confirming).
    #[serde(default)]
    pub confirm_secs: u64,
    pub source: SourceSpec,
    #[serde(default)]
    pub buildspec: Option<String>,
    pub project: String,
    /// The build's CODEBUILD_BUILD_NUMBER (the job's, from the server); 0 from an older
    /// server (the agent then numbers it from its own data directory).
    #[serde(default)]
    pub build_number: u64,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout_minutes: Option<u32>,
    /// A webhook's facts (variables, untrusted fork), when a webhook created the job.
    #[serde(default)]
    pub trigger: Option<Trigger>,
}

/// Names an attempt's lease in agent requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fence {
    pub lease: String,
}

/// The answer to a heartbeat or a watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The lease now runs this long from now.
    pub lease_secs: u64,
    /// A user asked to cancel: stop the build, remove its container, complete as
    /// cancelled.
    pub cancel: bool,
}

/// `POST …/log`: the next lines of the attempt's log (already masked by the agent).
/// `seq` starts at 0 and grows by one per append; a repeated `seq` is ignored, so an
/// agent can retry an append whose answer it did not get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogAppend {
    pub lease: String,
    pub seq: u64,
    /// JSON lines: one event (as `runner build --json` prints it) per line.
    pub data: String,
}

/// `GET /v1/jobs/{id}/log`: `attempt` defaults to the current one; `after` is the first
/// `seq` wanted (0 from the start); `wait` (seconds) holds the request until a chunk arrives
/// or the attempt ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    pub attempt: u32,
    /// The chunks after `after`, in order.
    pub chunks: Vec<LogChunk>,
    /// Ask for `after=next` to continue.
    pub next: u64,
    /// The attempt is over and every chunk has been returned.
    pub complete: bool,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    pub seq: u64,
    pub data: String,
}

/// `POST …/complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Complete {
    pub lease: String,
    pub conclusion: Conclusion,
    /// runner build's exit code for this outcome.
    pub exit_code: i32,
    #[serde(default)]
    pub message: Option<String>,
    /// Log chunks appended in all (the server checks it has them all).
    pub log_chunks: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactList {
    pub attempt: u32,
    pub artifacts: Vec<ArtifactEntry>,
}

/// `POST /v1/queue/pause`: agents claim no queued job that has every one of `labels`
/// (empty: no job at all) until it is resumed, on every replica; running jobs go on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseQueue {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST /v1/queue/resume`: ends the pause of exactly `labels`, or every pause when
/// `labels` is absent; waiting agents claim at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeQueue {
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// One pause in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseView {
    /// The labels whose jobs it holds (empty: every job).
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub since: String,
}

/// Queued jobs of one label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedView {
    pub labels: BTreeMap<String, String>,
    pub count: u64,
    /// How long the oldest has waited, in seconds.
    pub oldest_age_secs: u64,
    /// A pause holds them.
    pub paused: bool,
}

/// `GET /v1/queue` and the answer to a pause or a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    pub pauses: Vec<PauseView>,
    pub queued: Vec<QueuedView>,
}

/// The canonical form of a label set: `k=v` pairs sorted by key, joined by `,`.
/// Jobs are queued under their label key; an agent asks for every subset of its labels.
pub fn label_key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every label key an agent with `labels` can take (all subsets, the empty one first).
/// `labels` has at most [`MAX_LABELS`] entries, so at most 256 keys.
pub fn claimable_keys(labels: &BTreeMap<String, String>) -> Vec<String> {
    let pairs: Vec<(&String, &String)> = labels.iter().take(MAX_LABELS).collect();
    let mut keys = Vec::with_capacity(1 << pairs.len());
    for mask in 0u32..(1u32 << pairs.len()) {
        let subset: BTreeMap<String, String> = pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, (k, v))| ((*k).clone(), (*v).clone()))
            .collect();
        keys.push(label_key(&subset));
    }
    keys
}

/// A label key or value: 1–63 characters of `[A-Za-z0-9._-]`.
pub fn valid_label_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses `os=linux,size=large` (the agent's and submit's `--labels`).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, LabelError> {
    let mut labels = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| LabelError(format!("`{part}` is not KEY=VALUE")))?;
        if !valid_label_part(k) || !valid_label_part(v) {
            return Err(LabelError(format!(
                "`{part}`: keys and values are 1-63 characters of letters, digits, `.`, `_`, `-`"
            )));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    if labels.len() > MAX_LABELS {
        return Err(LabelError(format!("at most {MAX_LABELS} labels")));
    }
    Ok(labels)
}

/// A `--labels` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad labels: {0}")]
pub struct LabelError(pub String);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn an_agent_claims_every_subset_of_its_labels() {
        let labels = parse_labels("size=large, os=linux").unwrap();
        assert_eq!(label_key(&labels), "os=linux,size=large");
        let keys = claimable_keys(&labels);
        assert_eq!(
            keys,
            vec!["", "os=linux", "size=large", "os=linux,size=large"]
        );
        assert!(parse_labels("os").is_err());
        assert!(parse_labels("os=li nux").is_err());
        assert!(parse_labels("a=1,b=1,c=1,d=1,e=1,f=1,g=1,h=1,i=1").is_err());
    }

    #[test]
    fn submit_refuses_unknown_fields() {
        let bad = r#"{"source":{"kind":"git","url":"u","revision":"r"},"bogus":1}"#;
        assert!(serde_json::from_str::<SubmitJob>(bad).is_err());
    }
}
