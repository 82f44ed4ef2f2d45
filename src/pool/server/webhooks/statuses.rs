//! Commit statuses for webhook jobs: `POST /repos/{owner}/{repo}/statuses/{sha}` with
//! context `runner/<project>` and the job page as `target_url`: `pending` when queued and
//! again when an agent starts it, then `success`, `failure` or `error`.
//!
//! One task per job, on the replica that accepted the delivery, follows the job through
//! the store's notices (and a look every few seconds, for the start and for notices from
//! other replicas). Each post is retried with backoff; a status that still cannot be
//! posted is logged and skipped. Nothing here is on the job's path: a slow or failing
//! GitHub never delays a claim or a completion.

use super::GithubConfig;
use crate::pool::protocol::JobState;
use crate::pool::store::Store;
use std::time::Duration;

/// How often a followed job is looked at without a notice.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Posts of one status before it is given up.
const TRIES: u32 = 5;

/// Posts statuses to one GitHub API with one token.
#[derive(Clone)]
pub struct Poster {
    http: reqwest::Client,
    api: String,
    token: String,
    public_url: Option<String>,
    first_backoff: Duration,
}

/// The commit a job's statuses are about.
#[derive(Debug, Clone)]
pub struct Target {
    /// `owner/name`.
    pub repo: String,
    pub sha: String,
    pub project: String,
    pub job: String,
}

/// Why a status was not posted.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach GitHub at {api}: {source}")]
    Http {
        api: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GitHub answered {status} to a commit status: {body}; check that the status token may write statuses to the repository")]
    Refused { status: u16, body: String },
}

impl Poster {
    /// `None` when no token is configured (no statuses are posted).
    pub fn new(cfg: &GithubConfig) -> Option<Poster> {
        let token = cfg.token.clone()?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(20))
            .build()
            .ok()?;
        Some(Poster {
            http,
            api: cfg.api_url.trim_end_matches('/').to_string(),
            token,
            public_url: cfg
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            first_backoff: Duration::from_millis(500),
        })
    }

    /// Posts one status once.
    pub async fn post(
        &self,
        t: &Target,
        state: &str,
        description: &str,
    ) -> Result<(), StatusError> {
        let url = format!("{}/repos/{}/statuses/{}", self.api, t.repo, t.sha);
        let mut body = serde_json::json!({
            "state": state,
            "context": format!("runner/{}", t.project),
            // GitHub keeps at most 140 characters.
            "description": description.chars().take(140).collect::<String>(),
        });
        if let Some(base) = &self.public_url {
            body["target_url"] = format!("{base}/jobs/{}", t.job).into();
        }
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .json(&body)
            .send()
            .await
            .map_err(|source| StatusError::Http {
                api: self.api.clone(),
                source,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(StatusError::Refused {
            status: status.as_u16(),
            body: text.chars().take(300).collect(),
        })
    }

    /// Posts with retries (backoff doubling from 0.5 s); logs a status given up.
    async fn post_retried(&self, t: &Target, state: &str, description: &str) {
        let mut wait = self.first_backoff;
        for attempt in 1..=TRIES {
            match self.post(t, state, description).await {
                Ok(()) => return,
                Err(e) if attempt == TRIES => {
                    tracing::warn!(job = %t.job, "commit status `{state}` not posted: {e}");
                }
                Err(e) => {
                    tracing::debug!(job = %t.job, "commit status `{state}` (try {attempt}): {e}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// GitHub's state and a description for a job's state.
fn github_state(state: JobState) -> (&'static str, &'static str) {
    match state {
        JobState::Queued => ("pending", "queued"),
        JobState::Running => ("pending", "running"),
        JobState::Succeeded => ("success", "the build passed"),
        JobState::Failed => ("failure", "the build failed"),
        JobState::Cancelled => ("error", "cancelled"),
        JobState::Error => ("error", "runner could not run the build"),
    }
}

/// Follows `t.job` to its end, posting each state once, in order.
pub async fn follow(store: Store, poster: Poster, t: Target) {
    let mut events = store.hub().subscribe();
    let mut posted: Option<JobState> = None;
    loop {
        let state = match store.get(&t.job).await {
            Ok(Some(v)) => Some(v.state),
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(job = %t.job, "commit statuses: {e}");
                None
            }
        };
        if let Some(state) = state {
            if posted != Some(state) {
                // A job seen only once finished still says it ran.
                let (gh, what) = github_state(state);
                poster.post_retried(&t, gh, what).await;
                posted = Some(state);
            }
            if state.is_final() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + LOOK_EVERY;
        super::super::wait_for_job(&mut events, &t.job, deadline).await;
    }
}
