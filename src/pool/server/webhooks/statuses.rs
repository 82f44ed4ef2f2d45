//! Commit statuses for webhook jobs: `POST /repos/{owner}/{repo}/statuses/{sha}` with
//! context `runner/<project>` and the job page as `target_url`: `pending` when queued and
//! again when an agent starts it, then `success`, `failure` or `error`.
//!
//! Statuses travel through the notification outbox (`crate::pool::store::outbox`), so
//! they survive a restart and any replica may send them: the commit is recorded with the
//! webhook's job (one transaction), and each queued, started and finished event of such a
//! job gets a delivery row for the receiver [`STATUS_RECEIVER`]. One sender task per
//! replica claims those rows with a lease (the oldest due row of a job with no earlier
//! pending one, so `success` never lands before `pending`), posts the status, and marks
//! the row delivered, or pending again after an exponential backoff with jitter, or given
//! up past the maximum age (or at once on GitHub's 422, which no retry changes). At
//! least once: a replica killed mid-post leaves the row to another after the lease.
//! Nothing here is on the job's path: a slow or failing GitHub never delays a claim or a
//! completion.

use super::GithubConfig;
use crate::pool::server::metrics;
use crate::pool::server::notify::{retry_delay, RetryPolicy};
use crate::pool::store::{new_lease_id, now_ms, DueDelivery, Store, STATUS_RECEIVER};
use std::time::Duration;

/// One post's time limit.
const POST_TIMEOUT: Duration = Duration::from_secs(20);

/// Posts statuses to one GitHub API with one token.
#[derive(Clone)]
pub struct Poster {
    http: reqwest::Client,
    api: String,
    token: String,
    public_url: Option<String>,
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
            .timeout(POST_TIMEOUT)
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
}

/// GitHub's state and a description for the `status` of a job's event (its
/// CloudEvent's `data.status`); `None` for a status runner does not have.
fn github_state(status: &str) -> Option<(&'static str, &'static str)> {
    Some(match status {
        "queued" => ("pending", "queued"),
        "running" => ("pending", "running"),
        "succeeded" => ("success", "the build passed"),
        "failed" => ("failure", "the build failed"),
        "cancelled" => ("error", "cancelled"),
        "error" => ("error", "runner could not run the build"),
        _ => return None,
    })
}

/// Turns on the recording of commit statuses (when a status token is configured) and
/// starts this replica's sender; it runs until aborted. Call before anything records job
/// changes (the start-up reconciliation included).
pub fn start(
    store: &Store,
    cfg: Option<&GithubConfig>,
    retry: RetryPolicy,
) -> Option<tokio::task::JoinHandle<()>> {
    let poster = cfg.and_then(Poster::new)?;
    store.set_commit_statuses(true);
    let sender = Sender {
        store: store.clone(),
        poster,
        retry,
    };
    Some(tokio::spawn(sender.run()))
}

struct Sender {
    store: Store,
    poster: Poster,
    retry: RetryPolicy,
}

/// What became of one status delivery.
enum Sent {
    Ok,
    /// Try again later (unless too old).
    Failed(String),
    /// No retry can help.
    Hopeless(String),
}

impl Sender {
    async fn run(self) {
        let lease_for = POST_TIMEOUT + Duration::from_secs(30);
        loop {
            let lease = new_lease_id();
            match self
                .store
                .claim_delivery(STATUS_RECEIVER, &lease, lease_for)
                .await
            {
                Ok(Some(d)) => self.deliver(&lease, d).await,
                Ok(None) => self.store.outbox_wait(Duration::from_millis(500)).await,
                Err(e) => {
                    tracing::warn!("commit statuses: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn send(&self, d: &DueDelivery) -> Sent {
        let event: serde_json::Value = match serde_json::from_str(&d.body) {
            Ok(v) => v,
            Err(e) => return Sent::Hopeless(format!("the stored event is not JSON: {e}")),
        };
        let data = &event["data"];
        let field = |k: &str| data[k].as_str().unwrap_or_default().to_string();
        let (job, project, status) = (field("job"), field("project"), field("status"));
        let Some((state, description)) = github_state(&status) else {
            return Sent::Hopeless(format!("job status `{status}` has no commit status"));
        };
        let target = match self.store.status_target(&job).await {
            Ok(Some(t)) => t,
            Ok(None) => return Sent::Hopeless("the job has no commit to report on".into()),
            Err(e) => return Sent::Failed(e.to_string()),
        };
        let t = Target {
            repo: target.repo,
            sha: target.sha,
            project,
            job,
        };
        match self.poster.post(&t, state, description).await {
            Ok(()) => Sent::Ok,
            // Validation failed (e.g. GitHub does not know the commit): no retry helps.
            Err(e @ StatusError::Refused { status: 422, .. }) => Sent::Hopeless(e.to_string()),
            Err(e) => Sent::Failed(e.to_string()),
        }
    }

    async fn deliver(&self, lease: &str, d: DueDelivery) {
        let sent = self.send(&d).await;
        let (delivered, retry_at) = match &sent {
            Sent::Ok => (true, None),
            Sent::Hopeless(why) => {
                tracing::warn!(event = %d.id, "commit status not posted: {why}");
                (false, None)
            }
            Sent::Failed(why) => {
                let at = now_ms()
                    + retry_delay(self.retry.backoff, self.retry.max_backoff, d.tries).as_millis()
                        as i64;
                if at - d.created_ms > self.retry.max_age.as_millis() as i64 {
                    tracing::warn!(event = %d.id, tries = d.tries,
                        "giving up on a commit status: {why}");
                    (false, None)
                } else {
                    tracing::info!(event = %d.id, tries = d.tries,
                        "commit status not posted, trying again: {why}");
                    (false, Some(at))
                }
            }
        };
        metrics::observe_delivery(STATUS_RECEIVER, delivered);
        if let Err(e) = self
            .store
            .settle_delivery(STATUS_RECEIVER, d.seq, lease, delivered, retry_at)
            .await
        {
            // The lease runs out and the status is posted again: at least once.
            tracing::warn!(event = %d.id, "cannot record a commit status's delivery: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_status_has_a_commit_status() {
        for s in [
            crate::pool::protocol::JobState::Queued,
            crate::pool::protocol::JobState::Running,
            crate::pool::protocol::JobState::Succeeded,
            crate::pool::protocol::JobState::Failed,
            crate::pool::protocol::JobState::Cancelled,
            crate::pool::protocol::JobState::Error,
        ] {
            assert!(github_state(s.as_str()).is_some(), "{s:?}");
        }
        assert_eq!(github_state("queued"), Some(("pending", "queued")));
        assert_eq!(
            github_state("succeeded"),
            Some(("success", "the build passed"))
        );
        assert_eq!(github_state("phase"), None);
    }
}
