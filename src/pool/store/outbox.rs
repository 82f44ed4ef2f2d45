//! The notification outbox: every job state change (queued, started, phase changed,
//! finished) is recorded as a CloudEvents 1.0 event (structured mode, the JSON body
//! built once and stored, so a redelivery sends the same bytes under the same id) right
//! after the change, idempotently (the event id is derived from the job, the attempt and
//! the change, and recorded with `ON CONFLICT DO NOTHING`), with one pending delivery row
//! per configured receiver. The senders (`crate::pool::server::notify`) claim delivery
//! rows with a lease, as agents claim jobs, so several replicas deliver each row at least
//! once and normally once; `/v1/events` streams the same events.

use super::{now_ms, rfc3339, Backend, StatusTarget, Store, StoreError};
use super::{pg_ops, sqlite_ops};
use crate::pool::protocol::JobView;
use std::sync::RwLock;
use std::time::Duration;

/// One event to record.
#[derive(Debug, Clone)]
pub struct OutEvent {
    pub id: String,
    pub job_id: String,
    pub project: String,
    /// The CloudEvent, as JSON.
    pub body: String,
}

/// A claimed delivery.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub seq: i64,
    /// Tries including this one.
    pub tries: u32,
    /// The CloudEvent id.
    pub id: String,
    pub body: String,
    /// When the event was recorded (ms).
    pub created_ms: i64,
}

/// What the outbox records events for.
#[derive(Debug, Clone, Default)]
pub struct OutboxConfig {
    /// Receiver URLs: each new event gets a pending delivery to each.
    pub receivers: Vec<String>,
    /// The server's public URL (no trailing slash), for the events' `source` and job
    /// page links; `None`: `source` is `/runner` and no link is given.
    pub public_url: Option<String>,
}

/// The receiver name of commit-status deliveries (not a URL, so no `--notify` receiver
/// can take it): a webhook job's queued, started and finished events get a delivery to
/// it while commit statuses are on ([`Store::set_commit_statuses`]); the sender in
/// `crate::pool::server::webhooks::statuses` posts them to GitHub.
pub const STATUS_RECEIVER: &str = "github:statuses";

/// The outbox's settings and wake-up, shared by the store's clones.
#[derive(Default)]
pub(super) struct Outbox {
    config: RwLock<OutboxConfig>,
    /// Record commit-status deliveries for webhook jobs.
    statuses: std::sync::atomic::AtomicBool,
    pub(super) wake: tokio::sync::Notify,
}

impl Outbox {
    /// The settings new events are recorded with.
    pub(super) fn config(&self) -> OutboxConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether webhook jobs' state changes are also commit-status deliveries.
    pub(super) fn statuses_on(&self) -> bool {
        self.statuses.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What one retention sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Delivered or given-up delivery rows.
    pub deliveries: u64,
    /// Events no delivery row named any more.
    pub events: u64,
    /// Webhook delivery ids.
    pub webhook_deliveries: u64,
}

/// Pending deliveries of one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDeliveries {
    pub receiver: String,
    pub count: i64,
    /// When the oldest pending one's event was recorded (ms).
    pub oldest_ms: i64,
}

/// A change to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change<'a> {
    Queued,
    Started,
    /// A `phase_started` / `phase_ended` build event, at (log seq, index in the chunk).
    Phase {
        phase: &'a str,
        status: &'a str,
        seq: u64,
        index: usize,
    },
    Finished,
}

/// The CloudEvent of `change` of `job` (its attempt `attempt`).
pub(super) fn cloud_event(
    config: &OutboxConfig,
    job: &JobView,
    attempt: u32,
    change: Change<'_>,
    now: i64,
) -> OutEvent {
    let (kind, id_tail, status) = match change {
        Change::Queued => ("queued", "queued".to_string(), "queued"),
        Change::Started => ("started", "started".to_string(), "running"),
        Change::Phase { seq, index, .. } => ("phase", format!("phase/{seq}.{index}"), "running"),
        Change::Finished => ("finished", "finished".to_string(), job.state.as_str()),
    };
    let id = format!("{}/{attempt}/{id_tail}", job.id);
    let mut data = serde_json::json!({
        "job": job.id,
        "project": job.project,
        "build_number": job.build_number,
        "attempt": attempt,
        "status": status,
        "labels": job.labels,
    });
    if let Change::Phase { phase, status, .. } = change {
        data["phase"] = phase.into();
        data["phase_status"] = status.into();
    }
    if change == Change::Finished {
        if let Some(c) = job.exit_code {
            data["exit_code"] = c.into();
        }
        if let Some(m) = &job.message {
            data["message"] = m.as_str().into();
        }
    }
    let source = match &config.public_url {
        Some(u) => {
            data["url"] = format!("{u}/jobs/{}", job.id).into();
            u.clone()
        }
        None => "/runner".to_string(),
    };
    let body = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": format!("dev.runner.job.{kind}"),
        "subject": job.id,
        "time": rfc3339(now),
        "datacontenttype": "application/json",
        "data": data,
    });
    OutEvent {
        id,
        job_id: job.id.clone(),
        project: job.project.clone(),
        body: body.to_string(),
    }
}

/// The phase changes in a log chunk (JSON lines): (phase, `started` or its status, index).
fn phase_changes(data: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    if !data.contains("\"phase_") {
        return out;
    }
    for (i, raw) in data.lines().enumerate() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
            continue;
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        match v.get("event").and_then(|e| e.as_str()) {
            Some("phase_started") => out.push((s("phase"), "started".to_string(), i)),
            Some("phase_ended") => out.push((s("phase"), s("status"), i)),
            _ => {}
        }
    }
    out
}

impl Store {
    /// Sets the receivers and public URL new events are recorded with.
    pub fn set_outbox(&self, config: OutboxConfig) {
        *self
            .outbox
            .config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Turns the recording of commit-status deliveries for webhook jobs on or off (on
    /// when a status token is configured; set before the server records anything).
    pub fn set_commit_statuses(&self, on: bool) {
        self.outbox
            .statuses
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn outbox_config(&self) -> OutboxConfig {
        self.outbox
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until this process records an event (or `max` passes).
    pub async fn outbox_wait(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.outbox.wake.notified()).await;
    }

    /// Records `change` of job `id` (after the change committed). A failure is logged: the
    /// change itself stands.
    pub(super) async fn outbox_record(&self, id: &str, attempt: u32, change: Change<'_>) {
        if let Err(e) = self.try_outbox_record(id, attempt, &[change]).await {
            tracing::warn!(job = %id, "cannot record the notification of a job change: {e}");
        }
    }

    /// Records the phase changes a log chunk reports.
    pub(super) async fn outbox_phases(&self, id: &str, attempt: u32, seq: u64, data: &str) {
        let phases = phase_changes(data);
        if phases.is_empty() {
            return;
        }
        let changes: Vec<Change<'_>> = phases
            .iter()
            .map(|(phase, status, index)| Change::Phase {
                phase,
                status,
                seq,
                index: *index,
            })
            .collect();
        if let Err(e) = self.try_outbox_record(id, attempt, &changes).await {
            tracing::warn!(job = %id, "cannot record the notification of a phase change: {e}");
        }
    }

    async fn try_outbox_record(
        &self,
        id: &str,
        attempt: u32,
        changes: &[Change<'_>],
    ) -> Result<usize, StoreError> {
        let Some(job) = self.get(id).await? else {
            return Ok(0);
        };
        let config = self.outbox_config();
        let now = now_ms();
        let events: Vec<OutEvent> = changes
            .iter()
            .map(|c| cloud_event(&config, &job, attempt, *c, now))
            .collect();
        let events = events.as_slice();
        let mut receivers = config.receivers;
        // A webhook job's queued, started and finished events are also commit statuses.
        let state_change = changes.iter().all(|c| !matches!(c, Change::Phase { .. }));
        if state_change
            && self
                .outbox
                .statuses
                .load(std::sync::atomic::Ordering::SeqCst)
            && self.status_target(id).await?.is_some()
        {
            receivers.push(STATUS_RECEIVER.to_string());
        }
        let receivers = receivers.as_slice();
        let new: usize = write_op!(self, None, record_events(r events, r receivers, v now))?;
        if new > 0 {
            self.outbox.wake.notify_waiters();
        }
        Ok(new)
    }

    /// Records the event of each job's current state if it is missing: a change commits
    /// before its event is recorded, so a server killed between the two would lose that
    /// event; run at start-up, this records it (event ids are stable, so an event already
    /// there is left alone). Covers unfinished jobs and those finished within `window`.
    pub async fn reconcile_outbox(&self, window: Duration) -> Result<usize, StoreError> {
        let since = now_ms() - window.as_millis() as i64;
        let ids: Vec<String> = read_op!(self, jobs_to_reconcile(since))?;
        let mut n = 0;
        for id in ids {
            let Some(job) = self.get(&id).await? else {
                continue;
            };
            let change = match job.state {
                crate::pool::protocol::JobState::Queued => Change::Queued,
                crate::pool::protocol::JobState::Running => Change::Started,
                _ => Change::Finished,
            };
            n += self.try_outbox_record(&id, job.attempt, &[change]).await?;
        }
        Ok(n)
    }

    /// Events after `after` (their `seq`), oldest first, of one project or all.
    pub async fn events_after(
        &self,
        after: i64,
        project: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self.events_between(after, i64::MAX, project, limit).await?;
        Ok(rows.into_iter().map(|(seq, body, _)| (seq, body)).collect())
    }

    /// Events with `after < seq < before`, oldest first: (seq, body, recorded ms).
    pub async fn events_between(
        &self,
        after: i64,
        before: i64,
        project: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        read_op!(self, events_after(after, before, project, i64::from(limit)))
    }

    /// The newest event's `seq` (0: none yet).
    pub async fn last_event(&self) -> Result<i64, StoreError> {
        read_op!(self, last_event())
    }

    /// The commit a webhook job's statuses go to (`None`: not a webhook job).
    pub async fn status_target(&self, job: &str) -> Result<Option<StatusTarget>, StoreError> {
        read_op!(self, status_target(job))
    }

    /// Pending deliveries per receiver (for `/metrics`).
    pub async fn pending_deliveries(&self) -> Result<Vec<PendingDeliveries>, StoreError> {
        let rows: Vec<(String, i64, i64)> = read_op!(self, pending_deliveries())?;
        Ok(rows
            .into_iter()
            .map(|(receiver, count, oldest_ms)| PendingDeliveries {
                receiver,
                count,
                oldest_ms,
            })
            .collect())
    }

    /// The retention sweep, as of `now` (ms): deletes delivered and given-up deliveries
    /// and the events no delivery names any more, recorded more than `outbox` before, and
    /// webhook delivery ids received more than `webhooks` before. Pending deliveries are
    /// kept (their sender gives them up after its maximum age), and so are the events of
    /// jobs unfinished or finished within `reconciled` (the window
    /// [`Store::reconcile_outbox`] is given: it would record them again). Idempotent
    /// plain `DELETE`s in batches of 1,000 (short transactions), so any replica may run it.
    pub async fn prune(
        &self,
        now: i64,
        outbox: Duration,
        webhooks: Duration,
        reconciled: Duration,
    ) -> Result<Pruned, StoreError> {
        const BATCH: i64 = 1000;
        let ago =
            |d: Duration| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut pruned = Pruned::default();
        let (before, finished_before) = (ago(outbox), ago(reconciled));
        loop {
            let (d, e): (u64, u64) = write_op!(
                self,
                None,
                prune_outbox(v before, v finished_before, v BATCH)
            )?;
            pruned.deliveries += d;
            pruned.events += e;
            if d < BATCH as u64 && e < BATCH as u64 {
                break;
            }
        }
        let before = ago(webhooks);
        loop {
            let n: u64 = write_op!(self, None, prune_webhook_deliveries(v before, v BATCH))?;
            pruned.webhook_deliveries += n;
            if n < BATCH as u64 {
                break;
            }
        }
        Ok(pruned)
    }

    /// Claims the next due delivery to `receiver` for `lease_for`.
    pub async fn claim_delivery(
        &self,
        receiver: &str,
        lease: &str,
        lease_for: Duration,
    ) -> Result<Option<DueDelivery>, StoreError> {
        let now = now_ms();
        if !self.is_postgres() && !read_op!(self, any_delivery_due(receiver, now))? {
            return Ok(None);
        }
        let expires = now + lease_for.as_millis() as i64;
        write_op!(
            self,
            None,
            claim_delivery(r receiver, r lease, v expires, v now)
        )
    }

    /// Ends a claimed delivery: `retry_at` `Some(ms)` = pending again from then; `None`
    /// with `delivered` = done, else given up.
    pub async fn settle_delivery(
        &self,
        receiver: &str,
        seq: i64,
        lease: &str,
        delivered: bool,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let (state, next) = match (delivered, retry_at) {
            (true, _) => ("delivered", 0),
            (false, Some(at)) => ("pending", at),
            (false, None) => ("dead", 0),
        };
        write_op!(
            self,
            None,
            settle_delivery(r receiver, v seq, r lease, r state, v next)
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::pool::store::{NewJob, StoreConfig};

    #[tokio::test]
    async fn a_change_whose_event_was_lost_is_recorded_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("jobs.db").display().to_string();
        let store = Store::open(&StoreConfig { url: url.clone() })
            .await
            .unwrap();
        store.set_outbox(OutboxConfig {
            receivers: vec!["http://127.0.0.1:9/hook".into()],
            public_url: None,
        });
        let job = NewJob {
            id: "j1".into(),
            project: "p".into(),
            labels: Default::default(),
            spec: "{}".into(),
            max_attempts: 1,
            change: Default::default(),
        };
        store.submit(&job).await.unwrap();
        store.cancel("j1").await.unwrap();
        let events = store.events_after(0, None, 10).await.unwrap();
        assert_eq!(events.len(), 2);
        // The server died between the cancel's commit and its event's.
        {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{url}"))
                .await
                .unwrap();
            sqlx::query("DELETE FROM notify_events WHERE id = 'j1/0/finished'")
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query("DELETE FROM notify_deliveries WHERE event_seq = $1")
                .bind(events[1].0)
                .execute(&mut c)
                .await
                .unwrap();
        }
        assert_eq!(store.events_after(0, None, 10).await.unwrap().len(), 1);
        assert_eq!(
            store
                .reconcile_outbox(Duration::from_secs(3600))
                .await
                .unwrap(),
            1
        );
        let events = store.events_after(0, None, 10).await.unwrap();
        let types: Vec<String> = events
            .iter()
            .map(|(_, b)| serde_json::from_str::<serde_json::Value>(b).unwrap()["id"].to_string())
            .collect();
        assert_eq!(types, vec!["\"j1/0/queued\"", "\"j1/0/finished\""]);
        // The delivery to the receiver is pending again, and a second pass adds nothing.
        let d = store
            .claim_delivery("http://127.0.0.1:9/hook", "l", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.id, "j1/0/queued");
        assert_eq!(
            store
                .reconcile_outbox(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
    }

    fn new_job(id: &str) -> NewJob {
        NewJob {
            id: id.into(),
            project: "p".into(),
            labels: Default::default(),
            spec: "{}".into(),
            max_attempts: 1,
            change: Default::default(),
        }
    }

    fn target() -> StatusTarget {
        StatusTarget {
            repo: "acme/shop".into(),
            sha: "a".repeat(40),
        }
    }

    async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
        let url = dir.path().join("jobs.db").display().to_string();
        Store::open(&StoreConfig { url }).await.unwrap()
    }

    const HOOK: &str = "http://127.0.0.1:9/hook";
    const DAY: Duration = Duration::from_secs(24 * 3600);
    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_webhook_jobs_state_changes_are_commit_status_deliveries_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        store.set_commit_statuses(true);
        // A job submitted through the API has no commit: no status deliveries.
        store.submit(&new_job("plain")).await.unwrap();
        store
            .webhook_submit("d1", "push", &new_job("hooked"), &target())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.status_target("hooked").await.unwrap(), Some(target()));
        assert_eq!(store.status_target("plain").await.unwrap(), None);
        store.cancel("hooked").await.unwrap();
        let lease_for = Duration::from_secs(30);
        let first = store
            .claim_delivery(STATUS_RECEIVER, "l1", lease_for)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.id, "hooked/0/queued");
        // The job's finished status waits for its queued one.
        assert!(store
            .claim_delivery(STATUS_RECEIVER, "l2", lease_for)
            .await
            .unwrap()
            .is_none());
        store
            .settle_delivery(STATUS_RECEIVER, first.seq, "l1", true, None)
            .await
            .unwrap();
        let second = store
            .claim_delivery(STATUS_RECEIVER, "l3", lease_for)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.id, "hooked/0/finished");
        assert!(
            second.body.contains("\"status\":\"cancelled\""),
            "{}",
            second.body
        );
    }

    #[tokio::test]
    async fn settled_outbox_rows_and_old_webhook_deliveries_are_pruned_after_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        store.set_outbox(OutboxConfig {
            receivers: vec![HOOK.into()],
            public_url: None,
        });
        store.submit(&new_job("j1")).await.unwrap();
        store.cancel("j1").await.unwrap();
        store
            .webhook_submit("d1", "push", &new_job("j2"), &target())
            .await
            .unwrap()
            .unwrap();
        // The queued events of j1 (since cancelled) and j2 (still queued) are delivered,
        // j1's finished one stays pending.
        let now = now_ms();
        for (id, delivered) in [
            ("j1/0/queued", true),
            ("j1/0/finished", false),
            ("j2/0/queued", true),
        ] {
            let d = store
                .claim_delivery(HOOK, "l", Duration::from_secs(30))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(d.id, id);
            let retry_at = (!delivered).then_some(now + 100 * 24 * 3600 * 1000);
            store
                .settle_delivery(HOOK, d.seq, "l", delivered, retry_at)
                .await
                .unwrap();
        }
        // Nothing is old enough yet.
        assert_eq!(
            store.prune(now, 7 * DAY, 30 * DAY, HOUR).await.unwrap(),
            Pruned::default()
        );
        assert_eq!(store.events_after(0, None, 10).await.unwrap().len(), 3);
        // Eight days on: the delivered rows go, and so does the event of the finished
        // job; the pending row stays, and the event of the job still queued too (the
        // start-up reconciliation would record it again).
        let later = now + 8 * 24 * 3600 * 1000;
        assert_eq!(
            store.prune(later, 7 * DAY, 30 * DAY, HOUR).await.unwrap(),
            Pruned {
                deliveries: 2,
                events: 1,
                webhook_deliveries: 0
            }
        );
        let ids: Vec<String> = store
            .events_after(0, None, 10)
            .await
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_str::<serde_json::Value>(b).unwrap()["id"].to_string())
            .collect();
        assert_eq!(ids, vec!["\"j1/0/finished\"", "\"j2/0/queued\""]);
        // The webhook delivery id is still known: a redelivery creates nothing.
        assert!(store
            .webhook_submit("d1", "push", &new_job("j3"), &target())
            .await
            .unwrap()
            .is_none());
        // A month on the delivery id is forgotten; a second sweep finds nothing more.
        let month = now + 31 * 24 * 3600 * 1000;
        assert_eq!(
            store.prune(month, 7 * DAY, 30 * DAY, HOUR).await.unwrap(),
            Pruned {
                deliveries: 0,
                events: 0,
                webhook_deliveries: 1
            }
        );
        assert_eq!(
            store.prune(month, 7 * DAY, 30 * DAY, HOUR).await.unwrap(),
            Pruned::default()
        );
        assert!(store
            .webhook_submit("d1", "push", &new_job("j4"), &target())
            .await
            .unwrap()
            .is_some());
    }

    #[test]
    fn phase_changes_are_read_from_build_events() {
        let chunk = "{\"event\":\"log\",\"line\":\"phase_started\"}\n\
                     {\"event\":\"phase_started\",\"phase\":\"BUILD\"}\n\
                     not json\n\
                     {\"event\":\"phase_ended\",\"phase\":\"BUILD\",\"status\":\"SUCCEEDED\"}\n";
        assert_eq!(
            phase_changes(chunk),
            vec![
                ("BUILD".to_string(), "started".to_string(), 1),
                ("BUILD".to_string(), "SUCCEEDED".to_string(), 3)
            ]
        );
        assert!(phase_changes("{\"event\":\"log\",\"line\":\"x\"}").is_empty());
    }
}
