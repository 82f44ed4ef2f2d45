//! The store's side of the delivery metrics ([`crate::pool::dora`]): what a job's
//! commit was, the GitOps pull requests jobs report in their logs, and each project's
//! [`History`] read back for a window.

use super::{now_ms, Backend, Store, StoreError};
use super::{pg_ops, sqlite_ops};
use crate::pool::dora::{self, Build, Change, Deployment, History, Window};
use std::collections::BTreeMap;

/// What a job's commit is, for the delivery metrics (stored with the job at submit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobChange {
    /// When the commit was made (ms), when known.
    pub commit_ms: Option<i64>,
    /// A revert commit.
    pub revert: bool,
    /// A pull request's or side branch's build: not the project's main line.
    pub side: bool,
}

impl JobChange {
    /// The `jobs.change_kind` column: `side`, `revert` or `main`.
    pub fn kind(&self) -> &'static str {
        if self.side {
            "side"
        } else if self.revert {
            "revert"
        } else {
            "main"
        }
    }
}

/// A merged pull request a job reported, as the store returns it.
#[derive(Debug, Clone)]
pub struct DeployRow {
    pub project: String,
    pub job: String,
    pub repo: String,
    pub number: i64,
    pub url: String,
    pub reported_ms: i64,
    /// RFC 3339, as GitHub sent it.
    pub merged_at: String,
    pub commit_ms: Option<i64>,
}

/// How far before a window failures are read, so that an incident that began before the
/// window is seen as one.
const LOOKBACK_MS: i64 = 30 * 86_400_000;
/// How far before a window the builds whose pull requests may be merged in it are read
/// (a GitOps pull request left open longer than this is not counted).
const PR_LOOKBACK_MS: i64 = 90 * 86_400_000;

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Builds each project's history from the store's rows.
fn histories(
    deploys: Vec<DeployRow>,
    builds: Vec<(String, String, Option<i64>, i64, String)>,
) -> BTreeMap<String, History> {
    let mut out: BTreeMap<String, History> = BTreeMap::new();
    // (project, repo, number) → deployment
    let mut by_pr: BTreeMap<(String, String, i64), Deployment> = BTreeMap::new();
    for d in deploys {
        let Some(merged_ms) = parse_rfc3339_ms(&d.merged_at) else {
            tracing::warn!(repo = %d.repo, number = d.number, "merged_at `{}` is not RFC 3339; left out of the delivery metrics", d.merged_at);
            continue;
        };
        let e = by_pr
            .entry((d.project.clone(), d.repo.clone(), d.number))
            .or_insert_with(|| Deployment {
                pr: d.url.clone(),
                opened_ms: Some(d.reported_ms),
                merged_ms,
                changes: Vec::new(),
            });
        e.opened_ms = e.opened_ms.map(|o| o.min(d.reported_ms));
        e.changes.push(Change {
            job: d.job,
            commit_ms: d.commit_ms,
        });
    }
    for ((project, _, _), d) in by_pr {
        out.entry(project).or_default().deployments.push(d);
    }
    for (project, state, finished, created, kind) in builds {
        let h = out.entry(project).or_default();
        if kind == "revert" {
            h.reverts.push(created);
        }
        if let Some(finished_ms) = finished {
            if state == "succeeded" || state == "failed" {
                h.builds.push(Build {
                    finished_ms,
                    failed: state == "failed",
                });
            }
        }
    }
    out
}

impl Store {
    /// Records the GitOps pull requests a log chunk of job `id` reports (after the chunk
    /// committed). A failure is logged: the log itself stands.
    pub(super) async fn record_deploy_links(&self, id: &str, data: &str) {
        let prs: Vec<(String, i64, String)> = dora::reported_pull_requests(data)
            .into_iter()
            .filter_map(|url| dora::pull_request_key(&url).map(|(repo, n)| (repo, n, url)))
            .collect();
        if prs.is_empty() {
            return;
        }
        if let Err(e) = self.try_record_deploy_links(id, &prs).await {
            tracing::warn!(job = %id, "cannot record the job's GitOps pull request: {e}");
        }
    }

    async fn try_record_deploy_links(
        &self,
        id: &str,
        prs: &[(String, i64, String)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        write_op!(self, None, record_deploy_prs(r id, r prs, v now))
    }

    /// Each project's history (of `project`, or every project with any) for `window`.
    pub async fn delivery_history(
        &self,
        project: Option<&str>,
        window: Window,
    ) -> Result<BTreeMap<String, History>, StoreError> {
        let pr_since = window.from_ms.saturating_sub(PR_LOOKBACK_MS);
        let deploys: Vec<DeployRow> =
            read_op!(self, dora_deployments(project, pr_since, window.to_ms))?;
        let since = window.from_ms.saturating_sub(LOOKBACK_MS);
        let builds = read_op!(self, dora_builds(project, since, window.to_ms))?;
        Ok(histories(deploys, builds))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Migration 7 on a store from before it: pull requests' jobs become `side`, the rest
    /// `main`.
    #[tokio::test]
    async fn migration_7_marks_earlier_pull_request_jobs_as_side() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db").display().to_string();
        let url = format!("sqlite://{path}");
        // The schema as it was before migration 7, with two jobs from then.
        let mut c = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        crate::pool::store::sqlite_ops::migrate(&mut c, include_str!("schema_sqlite.sql"), 6)
            .await
            .unwrap();
        let pr_spec = r#"{"source":{"kind":"git","url":"u","revision":"r"},"trigger":{"variables":{"CODEBUILD_WEBHOOK_EVENT":"PULL_REQUEST_CREATED"},"untrusted":false}}"#;
        let push_spec = r#"{"source":{"kind":"git","url":"u","revision":"r"},"trigger":{"variables":{"CODEBUILD_WEBHOOK_EVENT":"PUSH"},"untrusted":false}}"#;
        for (id, spec) in [("pr", pr_spec), ("push", push_spec)] {
            sqlx::query(
                "INSERT INTO jobs (id, state, label_key, labels, project, spec, max_attempts, \
                 created, queued) VALUES ($1, 'failed', '', '{}', 'p', $2, 1, 1, 1)",
            )
            .bind(id)
            .bind(spec)
            .execute(&mut c)
            .await
            .unwrap();
        }
        c.close().await.unwrap();
        drop(
            Store::open(&crate::pool::store::StoreConfig { url: path.clone() })
                .await
                .unwrap(),
        );
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let kinds: Vec<(String, String)> =
            sqlx::query_as("SELECT id, change_kind FROM jobs ORDER BY id")
                .fetch_all(&mut c)
                .await
                .unwrap();
        assert_eq!(
            kinds,
            vec![
                ("pr".to_string(), "side".to_string()),
                ("push".to_string(), "main".to_string())
            ]
        );
    }

    #[test]
    fn rows_become_histories_per_project() {
        let row = |project: &str, job: &str, number: i64, reported: i64, merged: &str| DeployRow {
            project: project.into(),
            job: job.into(),
            repo: "acme/cfg".into(),
            number,
            url: format!("https://github.com/acme/cfg/pull/{number}"),
            reported_ms: reported,
            merged_at: merged.into(),
            commit_ms: Some(1000),
        };
        let h = histories(
            vec![
                row("a", "j1", 1, 50, "1970-01-01T00:00:10Z"),
                row("a", "j2", 1, 40, "1970-01-01T00:00:10Z"),
                row("a", "j3", 2, 60, "1970-01-01T00:00:20.5+00:00"),
                row("b", "j4", 3, 70, "not a time"),
            ],
            vec![
                (
                    "a".into(),
                    "failed".into(),
                    Some(15_000),
                    14_000,
                    "main".into(),
                ),
                (
                    "a".into(),
                    "succeeded".into(),
                    Some(16_000),
                    14_500,
                    "revert".into(),
                ),
                ("c".into(), "running".into(), None, 1, "revert".into()),
            ],
        );
        let a = &h["a"];
        assert_eq!(a.deployments.len(), 2);
        assert_eq!(a.deployments[0].merged_ms, 10_000);
        assert_eq!(a.deployments[0].opened_ms, Some(40));
        assert_eq!(a.deployments[0].changes.len(), 2);
        assert_eq!(a.deployments[1].merged_ms, 20_500);
        assert_eq!(
            a.builds,
            vec![
                Build {
                    finished_ms: 15_000,
                    failed: true
                },
                Build {
                    finished_ms: 16_000,
                    failed: false
                }
            ]
        );
        assert_eq!(a.reverts, vec![14_500]);
        assert!(!h.contains_key("b"), "an unreadable merge time is left out");
        assert_eq!(h["c"].reverts, vec![1]);
        assert!(h["c"].builds.is_empty());
        assert_eq!(
            JobChange {
                commit_ms: None,
                revert: true,
                side: true
            }
            .kind(),
            "side"
        );
    }
}
