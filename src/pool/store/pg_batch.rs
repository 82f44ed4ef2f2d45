//! Group commit for PostgreSQL's hot path: claims and completions.
//!
//! Each kind has one queue. A dispatcher task takes every request waiting when a batch
//! slot is free (at most [`RUNNING`] batches of a kind at once, each on one pooled
//! connection) and runs them together in one transaction: claims grouped by label keys,
//! one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)` statement per group
//! handing the n oldest queued jobs to the n waiting claimers; completions as one
//! `UPDATE … FROM UNNEST(…)` statement, fenced per row exactly as a single completion is.
//! The outbox events of those changes are inserted in the same transaction (one
//! statement), and every caller is answered after the `COMMIT`. Under load a batch holds
//! tens of operations, so one commit (one WAL flush) and a handful of round trips serve
//! them all; when the server is quiet a request finds a slot free and runs alone at once.
//!
//! A request not yet taken by the dispatcher when its caller gives up (its budget ran
//! out, or the request was dropped) is skipped: it changed nothing. Once taken it is
//! always answered; a claim whose caller vanished meanwhile stays an unconfirmed claim
//! (short lease), queued again as `unconfirmed` when that expires.

use super::hub::{Hub, Notice};
use super::outbox::{self, Change, Outbox};
use super::writer::{Abandon, TAKEN, WAITING};
use super::{attempt_view, conclusion_state, view_from, Claimed, StoreError, JOB_COLS};
use crate::pool::protocol::{AttemptView, Conclusion, JobView};
use sqlx::postgres::{PgConnection, PgRow, Postgres};
use sqlx::{Connection, Row};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

type Pool = sqlx::Pool<Postgres>;

/// The most requests in one batch.
const MAX_BATCH: usize = 256;
/// Batches of one kind running at once (each holds one connection while it runs).
const RUNNING: usize = 4;

struct Item<Q, A> {
    req: Q,
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<A, StoreError>>,
}

/// A queue of requests answered in batches; cheap to clone.
pub(super) struct Batcher<Q, A> {
    queue: mpsc::UnboundedSender<Item<Q, A>>,
}

fn gone() -> StoreError {
    StoreError::Busy("the job store's batch task stopped before answering".into())
}

/// What every caller of a failed batch is told (the batch's transaction did not commit).
fn batch_error(e: &StoreError) -> StoreError {
    if e.is_overload() {
        StoreError::Busy(e.to_string())
    } else {
        StoreError::Commit(e.to_string())
    }
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// Starts the dispatcher; `run` answers a batch, one answer per request in order.
    fn start<F, Fut>(run: F) -> Batcher<Q, A>
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Result<A, StoreError>>, StoreError>> + Send + 'static,
    {
        let (queue, mut rx) = mpsc::unbounded_channel::<Item<Q, A>>();
        let run = Arc::new(run);
        let slots = Arc::new(Semaphore::new(RUNNING));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Wait for a slot before looking: what queues meanwhile joins this batch.
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut items = vec![first];
                while items.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(i) => items.push(i),
                        Err(_) => break,
                    }
                }
                items.retain(|i| {
                    i.state
                        .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                });
                if items.is_empty() {
                    continue;
                }
                let run = run.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let (reqs, replies): (Vec<Q>, Vec<_>) =
                        items.into_iter().map(|i| (i.req, i.reply)).unzip();
                    match run(reqs).await {
                        Ok(answers) => {
                            let mut answers = answers.into_iter();
                            for reply in replies {
                                let answer = answers.next().unwrap_or_else(|| {
                                    Err(StoreError::Corrupt("a batch answer is missing".into()))
                                });
                                let _ = reply.send(answer);
                            }
                        }
                        Err(e) => {
                            tracing::warn!("job store: a batch failed: {e}");
                            for reply in replies {
                                let _ = reply.send(Err(batch_error(&e)));
                            }
                        }
                    }
                });
            }
        });
        Batcher { queue }
    }

    /// Runs `req` in the next batch and answers its result after the commit. With a
    /// `budget`, a request not taken within it is dropped unrun and answered
    /// [`StoreError::Busy`].
    pub(super) async fn run(&self, req: Q, budget: Option<Duration>) -> Result<A, StoreError> {
        let (reply, mut rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(WAITING));
        let guard = Abandon(state.clone());
        self.queue
            .send(Item { req, state, reply })
            .map_err(|_| gone())?;
        let Some(budget) = budget else {
            return rx.await.map_err(|_| gone())?;
        };
        match tokio::time::timeout(budget, &mut rx).await {
            Ok(answer) => answer.map_err(|_| gone())?,
            Err(_) if guard.abandon() => Err(StoreError::Busy(format!(
                "the job store did not start this within {} ms",
                budget.as_millis()
            ))),
            // Taken: it must be answered.
            Err(_) => rx.await.map_err(|_| gone())?,
        }
    }
}

/// A claim waiting for a batch.
pub(super) struct ClaimReq {
    pub agent: String,
    /// The label keys the agent can take (at least one).
    pub keys: Vec<String>,
    pub lease: String,
    pub expires: i64,
}

/// A completion waiting for a batch.
pub(super) struct CompleteReq {
    pub id: String,
    pub attempt: u32,
    pub lease: String,
    pub conclusion: Conclusion,
    pub exit_code: i32,
    pub message: Option<String>,
    pub log_chunks: i64,
}

/// PostgreSQL's claim and completion queues.
pub(super) struct PgBatch {
    /// Answers the claimed job, or `None` when nothing under the keys was queued.
    pub claims: Batcher<ClaimReq, Option<Claimed>>,
    /// Answers the finished job's view, or `None` when the batch statement did not
    /// complete it (fenced, a repeat, log chunks missing): the caller then runs the
    /// single completion, which tells those apart.
    pub completes: Batcher<CompleteReq, Option<JobView>>,
}

impl PgBatch {
    pub(super) fn start(pool: Pool, outbox: Arc<Outbox>, hub: Arc<Hub>) -> PgBatch {
        let claims = {
            let (pool, outbox) = (pool.clone(), outbox.clone());
            Batcher::start(move |reqs| {
                let (pool, outbox) = (pool.clone(), outbox.clone());
                async move { claim_batch(&pool, &outbox, reqs).await }
            })
        };
        let completes = Batcher::start(move |reqs| {
            let (pool, outbox, hub) = (pool.clone(), outbox.clone(), hub.clone());
            async move { complete_batch(&pool, &outbox, &hub, reqs).await }
        });
        PgBatch { claims, completes }
    }
}

/// Hands the oldest queued jobs under `$4` (label keys) to the claimers in `$1`-`$3`
/// (agent, lease, lease expiry; `w_n` = 1-based position), the attempt rows with them.
const CLAIM_SQL: &str = "\
WITH w AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
           WITH ORDINALITY AS w(w_agent, w_lease, w_expires, w_n)), \
p AS (SELECT p_id, row_number() OVER (ORDER BY p_queued, p_id) AS p_n FROM \
      (SELECT id AS p_id, queued AS p_queued FROM jobs WHERE state = 'queued' \
       AND label_key = ANY($4::text[]) ORDER BY queued, id LIMIT $5 FOR UPDATE SKIP LOCKED) s), \
c AS (UPDATE jobs SET state = 'running', attempt = jobs.attempt + 1, lease = w.w_lease, \
      lease_expires = w.w_expires, agent = w.w_agent, confirmed = 0 \
      FROM p JOIN w ON w.w_n = p.p_n WHERE jobs.id = p.p_id AND jobs.state = 'queued' \
      RETURNING w.w_n, jobs.id, jobs.state, jobs.labels, jobs.project, jobs.build_number, \
      jobs.attempt, jobs.max_attempts, jobs.created, jobs.finished, jobs.exit_code, \
      jobs.message, jobs.cancel_requested, jobs.log_truncated, jobs.spec, jobs.label_key, \
      jobs.queued, jobs.agent, jobs.lease), \
a AS (INSERT INTO attempts (job_id, attempt, agent, lease, started) \
      SELECT id, attempt, agent, lease, $6 FROM c) \
SELECT * FROM c";

async fn claim_batch(
    pool: &Pool,
    outbox: &Outbox,
    reqs: Vec<ClaimReq>,
) -> Result<Vec<Result<Option<Claimed>, StoreError>>, StoreError> {
    let mut out: Vec<Option<Claimed>> = vec![None; reqs.len()];
    // Claimers grouped by the keys they can take (usually one group: same labels).
    let mut groups: Vec<(&[String], Vec<usize>)> = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        if r.keys.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(k, _)| *k == r.keys.as_slice()) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((&r.keys, vec![i])),
        }
    }
    if groups.is_empty() {
        return Ok(out.into_iter().map(Ok).collect());
    }
    let now = super::now_ms();
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut started: Vec<(JobView, u32)> = Vec::new();
    for (keys, idx) in &groups {
        let agents: Vec<&str> = idx.iter().map(|&i| reqs[i].agent.as_str()).collect();
        let leases: Vec<&str> = idx.iter().map(|&i| reqs[i].lease.as_str()).collect();
        let expires: Vec<i64> = idx.iter().map(|&i| reqs[i].expires).collect();
        let rows = sqlx::query(CLAIM_SQL)
            .bind(&agents)
            .bind(&leases)
            .bind(&expires)
            .bind(keys)
            .bind(idx.len() as i64)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let n: i64 = row.try_get("w_n")?;
            let Some(&i) = usize::try_from(n - 1).ok().and_then(|k| idx.get(k)) else {
                return Err(StoreError::Corrupt(format!("claim batch position {n}")));
            };
            let claimed = Claimed {
                id: row.try_get("id")?,
                attempt: row.try_get::<i64, _>("attempt")? as u32,
                project: row.try_get("project")?,
                build_number: u64::try_from(row.try_get::<i64, _>("build_number")?).unwrap_or(0),
                spec: row.try_get("spec")?,
                key: row.try_get("label_key")?,
                queued_ms: row.try_get("queued")?,
            };
            started.push((
                view_from(super::pg_ops::job_row(&row)?, Vec::new())?,
                claimed.attempt,
            ));
            out[i] = Some(claimed);
        }
    }
    let new = record_events(&mut tx, outbox, &started, Change::Started, now).await?;
    tx.commit().await?;
    if new > 0 {
        outbox.wake.notify_waiters();
    }
    Ok(out.into_iter().map(Ok).collect())
}

/// Completes every attempt in `$1`-`$7` that still holds its lease and has all its log
/// chunks (or a cut log), and ends its attempt row; `v_n` = 1-based position.
fn complete_sql() -> String {
    format!(
        "WITH v AS (SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], \
                    $5::bigint[], $6::text[], $7::bigint[]) WITH ORDINALITY \
                    AS v(v_id, v_attempt, v_lease, v_state, v_exit, v_message, v_chunks, v_n)), \
         j AS (UPDATE jobs SET state = v.v_state, finished = $8, exit_code = v.v_exit, \
               message = v.v_message, lease_expires = NULL FROM v \
               WHERE jobs.id = v.v_id AND jobs.attempt = v.v_attempt AND jobs.lease = v.v_lease \
               AND jobs.state = 'running' AND (jobs.log_truncated <> 0 OR \
               (SELECT COUNT(*) FROM log_chunks WHERE job_id = v.v_id AND attempt = v.v_attempt) \
               >= v.v_chunks) \
               RETURNING v.v_n, {cols}), \
         a AS (UPDATE attempts SET ended = $8, outcome = j.state FROM j \
               WHERE attempts.job_id = j.id AND attempts.attempt = j.attempt) \
         SELECT * FROM j",
        cols = JOB_COLS
            .split(", ")
            .map(|c| format!("jobs.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

async fn complete_batch(
    pool: &Pool,
    outbox: &Outbox,
    hub: &Hub,
    reqs: Vec<CompleteReq>,
) -> Result<Vec<Result<Option<JobView>, StoreError>>, StoreError> {
    let mut out: Vec<Option<JobView>> = vec![None; reqs.len()];
    // One row per job: a second completion of the same job in this batch goes the
    // single way after it (answered as a repeat, or fenced).
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let idx: Vec<usize> = (0..reqs.len())
        .filter(|&i| seen.insert(reqs[i].id.as_str(), ()).is_none())
        .collect();
    let now = super::now_ms();
    let ids: Vec<&str> = idx.iter().map(|&i| reqs[i].id.as_str()).collect();
    let attempts: Vec<i64> = idx.iter().map(|&i| i64::from(reqs[i].attempt)).collect();
    let leases: Vec<&str> = idx.iter().map(|&i| reqs[i].lease.as_str()).collect();
    let states: Vec<&str> = idx
        .iter()
        .map(|&i| conclusion_state(reqs[i].conclusion).as_str())
        .collect();
    let exits: Vec<i64> = idx.iter().map(|&i| i64::from(reqs[i].exit_code)).collect();
    let messages: Vec<Option<&str>> = idx.iter().map(|&i| reqs[i].message.as_deref()).collect();
    let chunks: Vec<i64> = idx.iter().map(|&i| reqs[i].log_chunks).collect();
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let rows = sqlx::query(&complete_sql())
        .bind(&ids)
        .bind(&attempts)
        .bind(&leases)
        .bind(&states)
        .bind(&exits)
        .bind(&messages)
        .bind(&chunks)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    let mut done: Vec<(usize, PgRow)> = Vec::with_capacity(rows.len());
    for row in rows {
        let n: i64 = row.try_get("v_n")?;
        let Some(&i) = usize::try_from(n - 1).ok().and_then(|k| idx.get(k)) else {
            return Err(StoreError::Corrupt(format!(
                "completion batch position {n}"
            )));
        };
        done.push((i, row));
    }
    let mut finished: Vec<(JobView, u32)> = Vec::with_capacity(done.len());
    if !done.is_empty() {
        let done_ids: Vec<&str> = done.iter().map(|(i, _)| reqs[*i].id.as_str()).collect();
        let mut attempts = load_attempts(&mut tx, &done_ids).await?;
        for (i, row) in &done {
            let job = super::pg_ops::job_row(row)?;
            let list = attempts.remove(&reqs[*i].id).unwrap_or_default();
            let view = view_from(job, list)?;
            finished.push((view.clone(), reqs[*i].attempt));
            out[*i] = Some(view);
        }
    }
    let new = record_events(&mut tx, outbox, &finished, Change::Finished, now).await?;
    tx.commit().await?;
    if new > 0 {
        outbox.wake.notify_waiters();
    }
    if !finished.is_empty() {
        let notices: Vec<Notice> = finished
            .iter()
            .map(|(v, _)| Notice::Finished(v.id.clone()))
            .collect();
        notify_all(&mut conn, hub, notices).await;
    }
    Ok(out.into_iter().map(Ok).collect())
}

/// The attempts of `ids`, by job, in order.
async fn load_attempts(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<HashMap<String, Vec<AttemptView>>, StoreError> {
    let rows = sqlx::query(
        "SELECT job_id, attempt, agent, started, ended, outcome FROM attempts \
         WHERE job_id = ANY($1::text[]) ORDER BY job_id, attempt",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_job: HashMap<String, Vec<AttemptView>> = HashMap::new();
    for r in rows {
        by_job
            .entry(r.try_get("job_id")?)
            .or_default()
            .push(attempt_view(
                r.try_get("attempt")?,
                r.try_get("agent")?,
                r.try_get("started")?,
                r.try_get("ended")?,
                r.try_get("outcome")?,
            ));
    }
    Ok(by_job)
}

/// Records the outbox events of `change` of these jobs (in the caller's transaction,
/// one statement; idempotent by event id) with a pending delivery of each new one to
/// every receiver, and to the commit-status sender for a webhook job while commit
/// statuses are on (as `Store::try_outbox_record` does). Answers how many were new.
async fn record_events(
    conn: &mut PgConnection,
    outbox: &Outbox,
    jobs: &[(JobView, u32)],
    change: Change<'_>,
    now: i64,
) -> Result<usize, StoreError> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let config = outbox.config();
    let events: Vec<outbox::OutEvent> = jobs
        .iter()
        .map(|(job, attempt)| outbox::cloud_event(&config, job, *attempt, change, now))
        .collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let job_ids: Vec<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
    let projects: Vec<&str> = events.iter().map(|e| e.project.as_str()).collect();
    let bodies: Vec<&str> = events.iter().map(|e| e.body.as_str()).collect();
    let new: i64 = sqlx::query_scalar(
        "WITH e AS (INSERT INTO notify_events (id, job_id, project, body, created) \
                    SELECT x_id, x_job, x_project, x_body, $5 FROM \
                    UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
                    AS x(x_id, x_job, x_project, x_body) \
                    ON CONFLICT (id) DO NOTHING RETURNING seq, job_id), \
         d AS (INSERT INTO notify_deliveries (receiver, event_seq, job_id, state, next_try, \
                    created) SELECT r.r, e.seq, e.job_id, 'pending', $5, $5 FROM e \
                    CROSS JOIN UNNEST($6::text[]) AS r(r) \
                    UNION ALL SELECT $8, e.seq, e.job_id, 'pending', $5, $5 FROM e \
                    WHERE $7 AND EXISTS (SELECT 1 FROM commit_status_targets t \
                    WHERE t.job_id = e.job_id) ON CONFLICT DO NOTHING) \
         SELECT COUNT(*) FROM e",
    )
    .bind(&ids)
    .bind(&job_ids)
    .bind(&projects)
    .bind(&bodies)
    .bind(now)
    .bind(&config.receivers)
    .bind(outbox.statuses_on())
    .bind(outbox::STATUS_RECEIVER)
    .fetch_one(&mut *conn)
    .await?;
    Ok(usize::try_from(new).unwrap_or(0))
}

/// One `NOTIFY` per notice, in one statement after the commit (a transaction that
/// notifies holds the notify-queue lock through its commit's flush). On failure the
/// notices go to this process's waiters only; the others re-check within their polls.
async fn notify_all(conn: &mut PgConnection, hub: &Hub, notices: Vec<Notice>) {
    let payloads: Vec<String> = notices.iter().map(Notice::encode).collect();
    let sent = sqlx::query("SELECT pg_notify($1, x) FROM UNNEST($2::text[]) AS x")
        .bind(super::pg_ops::CHANNEL)
        .bind(&payloads)
        .execute(&mut *conn)
        .await;
    if let Err(e) = sent {
        tracing::warn!("cannot NOTIFY the other replicas: {e}");
        for n in notices {
            hub.dispatch(n);
        }
    }
}
