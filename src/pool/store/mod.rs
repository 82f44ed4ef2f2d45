//! The job store: SQLite (embedded, the default) or PostgreSQL (several server replicas).
//!
//! Both dialects run the same statements (`$N` parameters work in both); the operations
//! are written once in `ops.rs` and compiled for each backend. Every state change that
//! fences an attempt is one conditional statement or one transaction, so two replicas
//! (or a reaper racing an agent) never both win: a claim is `UPDATE … WHERE id = (SELECT
//! … LIMIT 1)` (PostgreSQL adds `FOR UPDATE SKIP LOCKED`), a lease expiry is `UPDATE …
//! WHERE state = 'running' AND attempt = $n AND lease_expires < $now`.
//!
//! Wake-ups ([`Notice`]) go through [`hub::Hub`]: on SQLite straight to this process's
//! waiters; on PostgreSQL only through `NOTIFY`, fed back on every replica by a
//! `LISTEN` task, so a job submitted to one replica wakes an agent waiting on another.

pub mod hub;
mod pg_batch;
mod writer;

use crate::pool::protocol::{
    ArtifactEntry, ArtifactList, AttemptView, Conclusion, JobState, JobView, LogChunk, LogPage,
    Role,
};
use hub::{Hub, Notice};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such job")]
    NotFound,
    /// The attempt's lease is lost (expired, released, or another attempt runs).
    #[error("attempt {attempt} of job {job} no longer holds its lease; abandon the job")]
    Fenced { job: String, attempt: u32 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("job store: {0}; check that the database is reachable and writable")]
    Db(#[from] sqlx::Error),
    #[error("cannot open the job store `{url}`: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot create the job store's directory `{path}`: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("job store row is corrupt: {0}")]
    Corrupt(String),
    /// The store could not take the operation in time (overload); it changed nothing.
    #[error("the job store is busy: {0}; try again")]
    Busy(String),
    /// The operation ran but its transaction did not commit; it changed nothing.
    #[error("job store: the commit failed: {0}; nothing was stored, check that the database is writable")]
    Commit(String),
}

impl StoreError {
    /// An overload (no connection or write slot in time, or the database was locked): the
    /// operation did not happen and may simply be tried again.
    pub fn is_overload(&self) -> bool {
        match self {
            StoreError::Busy(_) => true,
            StoreError::Db(sqlx::Error::PoolTimedOut) => true,
            StoreError::Db(sqlx::Error::Database(d)) => {
                // SQLITE_BUSY / SQLITE_LOCKED and their extended codes.
                matches!(d.code().as_deref(), Some("5" | "6" | "261" | "262" | "517"))
            }
            _ => false,
        }
    }
}

/// A merged pull request, as its `pull_request` `closed` webhook delivery told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedPr {
    /// `owner/name`.
    pub repo: String,
    pub number: i64,
    /// RFC 3339, as GitHub sent it.
    pub merged_at: String,
    pub merge_sha: Option<String>,
}

/// The commit a webhook job's statuses are posted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTarget {
    /// `owner/name`.
    pub repo: String,
    pub sha: String,
}

/// What a submitted job needs stored.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub project: String,
    pub labels: BTreeMap<String, String>,
    /// The rest of the submission (source, buildspec, env, timeout), as JSON.
    pub spec: String,
    pub max_attempts: u32,
    /// The commit, for the delivery metrics.
    pub change: JobChange,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub attempt: u32,
    pub project: String,
    pub build_number: u64,
    pub spec: String,
    /// The job's label key.
    pub key: String,
    /// When it was queued (ms since the epoch): pickup latency = claim time - this.
    pub queued_ms: i64,
}

/// A job whose lease expired and that the reaper handled.
#[derive(Debug, Clone)]
pub struct Expired {
    pub id: String,
    pub attempt: u32,
    /// `None`: queued again; else the final state (error after too many losses).
    pub ended: Option<JobState>,
}

/// A signed-in session of the web page.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub role: Role,
    /// The token every form of the session posts back.
    pub csrf: String,
    /// When it expires (ms since the Unix epoch).
    pub expires_ms: i64,
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub queued_by_key: Vec<(String, i64)>,
    pub running: i64,
    pub agents_online: i64,
}

/// Store connection settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH` / a plain path, or `postgres://…`.
    pub url: String,
}

enum Backend {
    /// One writer (group commit) beside a pool of readers.
    Sqlite {
        writer: writer::Writer,
        read: sqlite_ops::Pool,
    },
    Postgres(pg_ops::Pool),
}

/// Agents seen since the last flush: name → (label key, last seen ms).
type Seen = HashMap<String, (String, i64)>;

/// The job store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    hub: Arc<Hub>,
    /// Agent last-seen times, kept here and written in batches by [`Store::flush_agents`]
    /// rather than one upsert per claim.
    seen: Arc<Mutex<Seen>>,
    /// PostgreSQL: claims and completions are group-committed (see [`pg_batch`]); a
    /// few batches at a time, so a herd of polling agents holds a few of the pool's
    /// connections and never starves submits and heartbeats.
    pg_batch: Option<Arc<pg_batch::PgBatch>>,
    /// The notification outbox's settings (see [`outbox`]).
    outbox: Arc<outbox::Outbox>,
}

/// PostgreSQL connections.
const PG_CONNECTIONS: u32 = 32;

/// Runs a write operation: on SQLite through the writer's next batch (owned arguments),
/// on PostgreSQL on a pooled connection. Arguments are marked `r` (a reference, cloned
/// for the writer), `o` (an `Option<&str>`) or `v` (a copied value).
macro_rules! write_op {
    ($self:ident, $budget:expr, $f:ident ( $( $k:ident $a:ident ),* )) => {{
        match &*$self.backend {
            Backend::Sqlite { writer, .. } => {
                $( owned!($k $a); )*
                writer
                    .run($budget, move |c| {
                        Box::pin(async move { sqlite_ops::$f(c, $( pass!($k $a) ),*).await })
                    })
                    .await
            }
            Backend::Postgres(p) => {
                let mut c = p.acquire().await?;
                pg_ops::$f(&mut c, $( $a ),*).await
            }
        }
    }};
}
macro_rules! owned {
    (r $a:ident) => {
        let $a = $a.to_owned();
    };
    (o $a:ident) => {
        let $a: Option<String> = $a.map(str::to_string);
    };
    (v $a:ident) => {};
}
macro_rules! pass {
    (r $a:ident) => {
        &$a
    };
    (o $a:ident) => {
        $a.as_deref()
    };
    (v $a:ident) => {
        $a
    };
}

/// Runs a read: on SQLite on the reader pool.
macro_rules! read_op {
    ($self:ident, $f:ident ( $($arg:expr),* )) => {
        match &*$self.backend {
            Backend::Sqlite { read, .. } => sqlite_ops::$f(read, $($arg),*).await,
            Backend::Postgres(p) => pg_ops::$f(p, $($arg),*).await,
        }
    };
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 of a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Lower-case hex SHA-256 of a token: what the store keeps.
pub fn token_hash(token: &str) -> String {
    crate::pool::archive::sha256_hex(token.as_bytes())
}

/// A new random token (256 bits, hex, prefixed so it is recognisable in a leak scan).
pub fn new_token() -> String {
    let b: [u8; 32] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("rnr_{hex}")
}

/// A new lease id (128 random bits, hex).
pub fn new_lease_id() -> String {
    let b: [u8; 16] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn role_str(role: Role) -> &'static str {
    match role {
        Role::Agent => "agent",
        Role::Submit => "submit",
        Role::Admin => "admin",
    }
}

fn parse_role(s: &str) -> Option<Role> {
    match s {
        "agent" => Some(Role::Agent),
        "submit" => Some(Role::Submit),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

fn parse_state(s: &str) -> Result<JobState, StoreError> {
    Ok(match s {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        "succeeded" => JobState::Succeeded,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        "error" => JobState::Error,
        other => return Err(StoreError::Corrupt(format!("job state `{other}`"))),
    })
}

fn conclusion_state(c: Conclusion) -> JobState {
    match c {
        Conclusion::Succeeded => JobState::Succeeded,
        Conclusion::Failed => JobState::Failed,
        Conclusion::Cancelled => JobState::Cancelled,
        Conclusion::Error => JobState::Error,
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the store.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let hub = Arc::new(Hub::new());
        let outbox: Arc<outbox::Outbox> = Arc::default();
        let mut pg_batch = None;
        let backend = if is_postgres(&config.url) {
            let pool = pg_ops::open(&config.url, hub.clone()).await?;
            pg_batch = Some(Arc::new(pg_batch::PgBatch::start(
                pool.clone(),
                outbox.clone(),
                hub.clone(),
            )));
            Backend::Postgres(pool)
        } else {
            let path = config
                .url
                .strip_prefix("sqlite://")
                .or_else(|| config.url.strip_prefix("sqlite:"))
                .unwrap_or(&config.url);
            let (conn, read) = sqlite_ops::open(Path::new(path)).await?;
            Backend::Sqlite {
                writer: writer::Writer::start(conn),
                read,
            }
        };
        Ok(Store {
            backend: Arc::new(backend),
            hub,
            seen: Arc::new(Mutex::new(HashMap::new())),
            pg_batch,
            outbox,
        })
    }

    /// The wake-up hub of this process.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn is_postgres(&self) -> bool {
        matches!(*self.backend, Backend::Postgres(_))
    }

    /// Sends a notice to every replica's waiters (SQLite: this process's).
    async fn notify(&self, notice: Notice) {
        match &*self.backend {
            Backend::Sqlite { .. } => self.hub.dispatch(notice),
            Backend::Postgres(p) => {
                if let Err(e) = pg_ops::notify(p, &notice).await {
                    // The waiters still re-check within their long-poll; nothing is lost.
                    tracing::warn!("cannot NOTIFY the other replicas: {e}");
                    self.hub.dispatch(notice);
                }
            }
        }
    }
}

impl Store {
    pub async fn create_token(
        &self,
        token: &str,
        role: Role,
        name: &str,
    ) -> Result<(), StoreError> {
        let hash = token_hash(token);
        let hash = hash.as_str();
        let role = role_str(role);
        let now = now_ms();
        write_op!(self, None, create_token(r hash, r role, r name, v now))
    }

    /// Every token, oldest first, without its secret (only the SHA-256 is stored).
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = read_op!(self, list_tokens())?;
        Ok(rows
            .into_iter()
            .map(|(hash, role, name, created)| TokenInfo {
                hash,
                role,
                name,
                created_ms: created,
            })
            .collect())
    }

    /// Deletes the tokens with these hashes and their web sessions; how many tokens went.
    /// A server honours a revocation within [`TOKEN_CACHE_SECS`].
    pub async fn revoke_tokens(&self, hashes: &[String]) -> Result<u64, StoreError> {
        let hashes = hashes.join(",");
        let hashes = hashes.as_str();
        write_op!(self, None, revoke_tokens(r hashes))
    }

    pub async fn find_token(&self, token: &str) -> Result<Option<Role>, StoreError> {
        let role: Option<String> = read_op!(self, find_token(&token_hash(token)))?;
        Ok(role.as_deref().and_then(parse_role))
    }

    /// Signs in to the web page with `token` for `ttl`: stores a session keyed by the
    /// SHA-256 of `session_id` (the id itself is not stored) with its CSRF token, and
    /// deletes the expired ones. The token's role, or `None` (nothing stored) when the
    /// token is unknown. The caller checks the role may sign in.
    pub async fn create_web_session(
        &self,
        session_id: &str,
        token: &str,
        csrf: &str,
        ttl: Duration,
    ) -> Result<Option<Role>, StoreError> {
        let hash = token_hash(session_id);
        let hash = hash.as_str();
        let token_hash = token_hash(token);
        let token_hash = token_hash.as_str();
        let now = now_ms();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let role: Option<String> = write_op!(
            self,
            None,
            create_web_session(r hash, r token_hash, r csrf, v now, v expires)
        )?;
        Ok(role.as_deref().and_then(parse_role))
    }

    /// The web session whose id hashes to `hash`: `None` when unknown, expired, or its
    /// token no longer exists.
    pub async fn find_web_session(&self, hash: &str) -> Result<Option<WebSession>, StoreError> {
        let row: Option<(String, String, i64)> = read_op!(self, find_web_session(hash, now_ms()))?;
        Ok(row.and_then(|(role, csrf, expires_ms)| {
            Some(WebSession {
                role: parse_role(&role)?,
                csrf,
                expires_ms,
            })
        }))
    }

    /// Ends the web session whose id hashes to `hash` (on every replica at once).
    pub async fn delete_web_session(&self, hash: &str) -> Result<bool, StoreError> {
        write_op!(self, None, delete_web_session(r hash))
    }

    pub async fn submit(&self, job: &NewJob) -> Result<JobView, StoreError> {
        let key = crate::pool::protocol::label_key(&job.labels);
        let key = key.as_str();
        let now = now_ms();
        let view = write_op!(self, None, submit(r job, r key, v now))?;
        self.outbox_record(&view.id, 0, outbox::Change::Queued)
            .await;
        self.notify(Notice::Queued(key.to_string())).await;
        Ok(view)
    }

    pub async fn get(&self, id: &str) -> Result<Option<JobView>, StoreError> {
        read_op!(self, get(id))
    }

    /// Submits the job a GitHub webhook delivery asked for, recording the delivery in the
    /// same transaction: `None` (nothing created) when that delivery id was seen before,
    /// on any replica.
    /// `status`: the commit its statuses are about, recorded with the job.
    pub async fn webhook_submit(
        &self,
        delivery: &str,
        event: &str,
        job: &NewJob,
        status: &StatusTarget,
    ) -> Result<Option<JobView>, StoreError> {
        let key = crate::pool::protocol::label_key(&job.labels);
        let key = key.as_str();
        let now = now_ms();
        let view = write_op!(
            self,
            None,
            webhook_submit(r delivery, r event, r job, r key, r status, v now)
        )?;
        if let Some(v) = &view {
            self.outbox_record(&v.id, 0, outbox::Change::Queued).await;
            self.notify(Notice::Queued(key.to_string())).await;
        }
        Ok(view)
    }

    /// Records a merged pull request (a `pull_request` `closed` delivery with
    /// `merged: true`): false when the delivery or that merge was recorded before.
    pub async fn record_merged_pr(
        &self,
        delivery: &str,
        pr: &MergedPr,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        write_op!(self, None, record_merged_pr(r delivery, r pr, v now))
    }

    /// The merged pull requests recorded for `repo` (`owner/name`), by number.
    pub async fn merged_prs(&self, repo: &str) -> Result<Vec<MergedPr>, StoreError> {
        read_op!(self, merged_prs(repo))
    }

    pub async fn list(
        &self,
        state: Option<JobState>,
        limit: u32,
    ) -> Result<Vec<JobView>, StoreError> {
        read_op!(self, list(state.map(JobState::as_str), i64::from(limit)))
    }

    /// Records that an agent asked for work: in memory; [`Store::flush_agents`] writes it.
    pub fn touch_agent(&self, agent: &str, labels: &BTreeMap<String, String>) {
        let labels = crate::pool::protocol::label_key(labels);
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent.to_string(), (labels, now_ms()));
    }

    /// Writes the agents seen since the last flush (one transaction).
    pub async fn flush_agents(&self) -> Result<(), StoreError> {
        let seen: Vec<(String, String, i64)> = {
            let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *map)
                .into_iter()
                .map(|(name, (labels, at))| (name, labels, at))
                .collect()
        };
        if seen.is_empty() {
            return Ok(());
        }
        let seen = seen.as_slice();
        write_op!(self, None, flush_agents(r seen))
    }

    /// Claims the oldest queued job under one of `keys`. With a `budget`, a claim that
    /// cannot start within it (overload) gives up having taken nothing
    /// ([`StoreError::is_overload`]). `look_first`: on SQLite, check with a read that a
    /// job is queued before going to the writer (an idle poll never reaches it); a claim
    /// woken by a queued job skips that.
    pub async fn claim(
        &self,
        agent: &str,
        keys: &[String],
        lease: &str,
        lease_for: Duration,
        budget: Option<Duration>,
        look_first: bool,
    ) -> Result<Option<Claimed>, StoreError> {
        let now = now_ms();
        let expires = now + lease_for.as_millis() as i64;
        if let Some(pg) = &self.pg_batch {
            // One batch statement per label-key group finds nothing just as cheaply; the
            // `started` event is recorded in the claim's transaction.
            if keys.is_empty() {
                return Ok(None);
            }
            let req = pg_batch::ClaimReq {
                agent: agent.to_string(),
                keys: keys.to_vec(),
                lease: lease.to_string(),
                expires,
            };
            return pg.claims.run(req, budget).await;
        }
        if look_first && !read_op!(self, any_queued(keys))? {
            return Ok(None);
        }
        let claimed = write_op!(
            self,
            budget,
            claim(r agent, r keys, r lease, v expires, v now)
        )?;
        if let Some(c) = &claimed {
            self.outbox_record(&c.id, c.attempt, outbox::Change::Started)
                .await;
        }
        Ok(claimed)
    }

    /// Extends the attempt's lease; answers whether a cancel was asked.
    pub async fn heartbeat(
        &self,
        id: &str,
        attempt: u32,
        lease: &str,
        lease_for: Duration,
    ) -> Result<bool, StoreError> {
        let expires = now_ms() + lease_for.as_millis() as i64;
        write_op!(self, None, heartbeat(r id, v attempt, r lease, v expires))
    }

    /// The attempt's cancel flag and lease expiry (ms), checking the fence.
    pub async fn watch_state(
        &self,
        id: &str,
        attempt: u32,
        lease: &str,
    ) -> Result<(bool, i64), StoreError> {
        read_op!(self, watch_state(id, attempt, lease))
    }

    /// Appends a log chunk (idempotent by seq). Past `limit` bytes the chunk is dropped
    /// and the job marked `log_truncated`.
    pub async fn append_log(
        &self,
        id: &str,
        attempt: u32,
        lease: &str,
        seq: u64,
        data: &str,
        limit: u64,
    ) -> Result<(), StoreError> {
        let seq = i64::try_from(seq).map_err(|_| StoreError::Invalid("seq too large".into()))?;
        let limit = limit as i64;
        write_op!(
            self,
            None,
            append_log(r id, v attempt, r lease, v seq, r data, v limit)
        )?;
        self.outbox_phases(id, attempt, seq as u64, data).await;
        self.record_deploy_links(id, data).await;
        self.notify(Notice::Log(id.to_string())).await;
        Ok(())
    }

    /// Chunks of an attempt's log from `after` on (`after` = the first seq wanted).
    pub async fn read_log(
        &self,
        id: &str,
        attempt: Option<u32>,
        after: u64,
        max_chunks: u32,
    ) -> Result<Option<LogPage>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        read_op!(self, read_log(id, attempt, after, i64::from(max_chunks)))
    }

    pub async fn add_artifact(
        &self,
        id: &str,
        attempt: u32,
        lease: &str,
        entry: &ArtifactEntry,
    ) -> Result<(), StoreError> {
        write_op!(self, None, add_artifact(r id, v attempt, r lease, r entry))
    }

    /// The artifacts of the job's current (or last) attempt.
    pub async fn artifacts(&self, id: &str) -> Result<Option<ArtifactList>, StoreError> {
        read_op!(self, artifacts(id))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn complete(
        &self,
        id: &str,
        attempt: u32,
        lease: &str,
        conclusion: Conclusion,
        exit_code: i32,
        message: Option<&str>,
        log_chunks: u64,
    ) -> Result<JobView, StoreError> {
        let log_chunks = log_chunks as i64;
        if let Some(pg) = &self.pg_batch {
            // The usual completion, group-committed with its `finished` event and
            // `NOTIFY`; anything else (a repeat, fenced, log chunks missing) goes the
            // single way below, which tells those apart.
            let req = pg_batch::CompleteReq {
                id: id.to_string(),
                attempt,
                lease: lease.to_string(),
                conclusion,
                exit_code,
                message: message.map(str::to_string),
                log_chunks,
            };
            if let Some(view) = pg.completes.run(req, None).await? {
                return Ok(view);
            }
        }
        let now = now_ms();
        let (view, changed) = write_op!(
            self,
            None,
            complete(
                r id,
                v attempt,
                r lease,
                v conclusion,
                v exit_code,
                o message,
                v log_chunks,
                v now
            )
        )?;
        if changed {
            self.outbox_record(id, attempt, outbox::Change::Finished)
                .await;
            self.notify(Notice::Finished(id.to_string())).await;
        }
        Ok(view)
    }

    pub async fn release(&self, id: &str, attempt: u32, lease: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let requeued: Option<String> =
            write_op!(self, None, release(r id, v attempt, r lease, v now))?;
        let change = match requeued {
            Some(_) => outbox::Change::Queued,
            None => outbox::Change::Finished,
        };
        self.outbox_record(id, attempt, change).await;
        match requeued {
            Some(key) => self.notify(Notice::Queued(key)).await,
            None => self.notify(Notice::Finished(id.to_string())).await,
        }
        Ok(())
    }

    pub async fn cancel(&self, id: &str) -> Result<JobView, StoreError> {
        let now = now_ms();
        let (view, notice) = write_op!(self, None, cancel(r id, v now))?;
        if let Some(Notice::Finished(_)) = &notice {
            self.outbox_record(id, view.attempt, outbox::Change::Finished)
                .await;
        }
        if let Some(n) = notice {
            self.notify(n).await;
        }
        Ok(view)
    }

    pub async fn retry(&self, id: &str) -> Result<JobView, StoreError> {
        let now = now_ms();
        let (view, key) = write_op!(self, None, retry(r id, v now))?;
        self.outbox_record(id, view.attempt, outbox::Change::Queued)
            .await;
        self.notify(Notice::Queued(key)).await;
        Ok(view)
    }

    /// Requeues (or fails) every job whose lease expired. Safe on several replicas.
    pub async fn expire_leases(&self) -> Result<Vec<Expired>, StoreError> {
        let now = now_ms();
        let expired: Vec<(Expired, String)> = write_op!(self, None, expire_leases(v now))?;
        let mut out = Vec::with_capacity(expired.len());
        for (e, key) in expired {
            let change = match e.ended {
                None => outbox::Change::Queued,
                Some(_) => outbox::Change::Finished,
            };
            self.outbox_record(&e.id, e.attempt, change).await;
            match e.ended {
                None => self.notify(Notice::Queued(key)).await,
                Some(_) => self.notify(Notice::Finished(e.id.clone())).await,
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Counts for `/metrics`; agents seen within `online` count as online.
    pub async fn counts(&self, online: Duration) -> Result<Counts, StoreError> {
        self.flush_agents().await?;
        read_op!(self, counts(now_ms() - online.as_millis() as i64))
    }

    /// Starts the PostgreSQL `LISTEN` task that feeds this replica's hub (no-op on SQLite).
    pub async fn listen(&self) -> Result<(), StoreError> {
        if let Backend::Postgres(p) = &*self.backend {
            pg_ops::listen(p, self.hub.clone()).await?;
        }
        Ok(())
    }
}

fn view_from(row: JobRow, attempts: Vec<AttemptView>) -> Result<JobView, StoreError> {
    let labels: BTreeMap<String, String> = serde_json::from_str(&row.labels)
        .map_err(|e| StoreError::Corrupt(format!("labels of job {}: {e}", row.id)))?;
    Ok(JobView {
        state: parse_state(&row.state)?,
        id: row.id,
        project: row.project,
        build_number: u64::try_from(row.build_number).unwrap_or(0),
        labels,
        attempt: row.attempt as u32,
        max_attempts: row.max_attempts as u32,
        created_at: rfc3339(row.created),
        finished_at: row.finished.map(rfc3339),
        exit_code: row.exit_code.map(|c| c as i32),
        message: row.message,
        cancel_requested: row.cancel_requested != 0,
        log_truncated: row.log_truncated != 0,
        attempts,
    })
}

/// The columns of `jobs` a view needs.
struct JobRow {
    id: String,
    state: String,
    labels: String,
    project: String,
    build_number: i64,
    attempt: i64,
    max_attempts: i64,
    created: i64,
    finished: Option<i64>,
    exit_code: Option<i64>,
    message: Option<String>,
    cancel_requested: i64,
    log_truncated: i64,
}

const JOB_COLS: &str = "id, state, labels, project, build_number, attempt, max_attempts, \
                        created, finished, exit_code, message, cancel_requested, log_truncated";

fn attempt_view(
    attempt: i64,
    agent: String,
    started: i64,
    ended: Option<i64>,
    outcome: Option<String>,
) -> AttemptView {
    AttemptView {
        attempt: attempt as u32,
        agent,
        started_at: rfc3339(started),
        ended_at: ended.map(rfc3339),
        outcome,
    }
}

fn log_page(
    attempt: u32,
    chunks: Vec<LogChunk>,
    after: i64,
    over: bool,
    full_page: bool,
    truncated: bool,
) -> LogPage {
    let next = chunks
        .last()
        .map(|c| c.seq + 1)
        .unwrap_or(after.max(0) as u64);
    LogPage {
        attempt,
        chunks,
        next,
        complete: over && !full_page,
        truncated,
    }
}

mod sqlite_ops {
    type Db = sqlx::Sqlite;
    const PG: bool = false;
    pub type Pool = sqlx::Pool<Db>;

    /// The writer's connection (migrated) and a pool of readers.
    pub async fn open(
        path: &std::path::Path,
    ) -> Result<(sqlx::sqlite::SqliteConnection, Pool), super::StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        use sqlx::ConnectOptions;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| super::StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let url = path.display().to_string();
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(false);
        // One writing connection (SQLite serializes writers anyway; one writer never meets
        // SQLITE_BUSY on a transaction upgrade) that commits operations in batches (see
        // writer.rs), beside a pool of readers (WAL: readers never block the writer).
        // synchronous = FULL: every commit is on disk before anyone is answered, so an
        // acknowledged write survives a power loss too; group commit pays that flush once
        // per batch, not per operation.
        let opts = opts.synchronous(SqliteSynchronous::Full);
        let mut conn = opts
            .clone()
            .connect()
            .await
            .map_err(|source| super::StoreError::Open {
                url: url.clone(),
                source,
            })?;
        migrate(&mut conn, include_str!("schema_sqlite.sql"), i64::MAX)
            .await
            .map_err(|source| super::StoreError::Open {
                url: url.clone(),
                source,
            })?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|source| super::StoreError::Open { url, source })?;
        Ok((conn, read))
    }

    include!("ops.rs");
}

mod pg_ops {
    type Db = sqlx::Postgres;
    const PG: bool = true;
    pub type Pool = sqlx::Pool<Db>;

    pub async fn open(
        url: &str,
        _hub: std::sync::Arc<super::Hub>,
    ) -> Result<Pool, super::StoreError> {
        use sqlx::postgres::PgPoolOptions;
        let shown = redact(url);
        // Enough connections that commits overlap: PostgreSQL flushes the WAL once for all
        // the commits waiting at that moment (its own group commit).
        let pool = PgPoolOptions::new()
            .max_connections(super::PG_CONNECTIONS)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|source| super::StoreError::Open {
                url: shown.clone(),
                source,
            })?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(|source| super::StoreError::Open {
                url: shown.clone(),
                source,
            })?;
        migrate(&mut conn, include_str!("schema_pg.sql"), i64::MAX)
            .await
            .map_err(|source| super::StoreError::Open { url: shown, source })?;
        drop(conn);
        Ok(pool)
    }

    /// The URL without its password.
    pub fn redact(url: &str) -> String {
        match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let creds = &url[s + 3..at];
                match creds.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                    None => url.to_string(),
                }
            }
            _ => url.to_string(),
        }
    }

    pub const CHANNEL: &str = "runner_pool";

    pub async fn notify(pool: &Pool, notice: &super::Notice) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(notice.encode())
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Spawns the task that feeds NOTIFY payloads into `hub`; reconnects on its own.
    pub async fn listen(
        pool: &Pool,
        hub: std::sync::Arc<super::Hub>,
    ) -> Result<(), super::StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if let Some(notice) = super::Notice::decode(n.payload()) {
                            hub.dispatch(notice);
                        }
                    }
                    Ok(None) => {
                        // The connection was lost and re-established: notices may have
                        // been missed, so every waiter looks again.
                        tracing::warn!("LISTEN connection to PostgreSQL re-established");
                        hub.wake_all();
                    }
                    Err(e) => {
                        tracing::warn!("LISTEN on PostgreSQL failed: {e}; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(())
    }

    include!("ops.rs");
}

/// A job as the web page's lists show it (no attempts, one query per page).
#[derive(Debug, Clone)]
pub struct WebJob {
    pub id: String,
    pub state: JobState,
    pub project: String,
    /// The submission (source, env, …) as JSON.
    pub spec: String,
    pub attempt: u32,
    /// The agent running it (while running).
    pub agent: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
}

/// What the web page's job list asks for (every field narrows it).
#[derive(Debug, Clone, Copy, Default)]
pub struct WebFilter<'a> {
    pub id: Option<&'a str>,
    pub project: Option<&'a str>,
    /// Any of these states (none: every state).
    pub states: &'a [&'a str],
    /// The spec's JSON text contains this (a superset of a branch filter).
    pub spec_contains: Option<&'a str>,
}

/// Queries for the web page (see `crate::pool::server::web`).
impl Store {
    /// Jobs newest first, filtered.
    pub async fn web_jobs(
        &self,
        filter: &WebFilter<'_>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<WebJob>, StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        read_op!(self, web_jobs(filter, i64::from(limit), offset))
    }

    /// Every agent that ever asked for work: (name, label key, last seen ms).
    pub async fn web_agents(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.flush_agents().await?;
        read_op!(self, web_agents())
    }
}

/// A stored token, as `runner server token list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    /// SHA-256 of the token (hex); its first 12 digits are the token's id.
    pub hash: String,
    pub role: String,
    pub name: String,
    pub created_ms: i64,
}

/// How long a server trusts a token it has looked up before asking the store again: a
/// revoked token stops working on every replica within this.
pub const TOKEN_CACHE_SECS: u64 = 5;

pub mod outbox;
pub use outbox::{DueDelivery, OutEvent, OutboxConfig, PendingDeliveries, Pruned, STATUS_RECEIVER};
pub mod pause;

mod dora;
pub use dora::{parse_rfc3339_ms, DeployRow, JobChange};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod web_session_tests {
    use super::*;

    #[tokio::test]
    async fn web_sessions_are_stored_expire_and_are_swept_on_sign_in() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("jobs.db").display().to_string();
        let store = Store::open(&StoreConfig { url: url.clone() })
            .await
            .unwrap();
        let token = new_token();
        store
            .create_token(&token, Role::Submit, "web")
            .await
            .unwrap();
        let day = Duration::from_secs(24 * 3600);
        // An unknown token stores nothing.
        assert_eq!(
            store
                .create_web_session("s0", "rnr_unknown", "c0", day)
                .await
                .unwrap(),
            None
        );
        assert!(store
            .find_web_session(&token_hash("s0"))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store
                .create_web_session("s1", &token, "c1", day)
                .await
                .unwrap(),
            Some(Role::Submit)
        );
        let s = store
            .find_web_session(&token_hash("s1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.role, s.csrf.as_str()), (Role::Submit, "c1"));
        assert!(s.expires_ms > now_ms());
        // The id itself is not the key.
        assert!(store.find_web_session("s1").await.unwrap().is_none());
        // A session of no lifetime is expired at once: refused, and swept by the next
        // sign-in.
        store
            .create_web_session("s2", &token, "c2", Duration::ZERO)
            .await
            .unwrap();
        assert!(store
            .find_web_session(&token_hash("s2"))
            .await
            .unwrap()
            .is_none());
        store
            .create_web_session("s3", &token, "c3", day)
            .await
            .unwrap();
        assert!(!store.delete_web_session(&token_hash("s2")).await.unwrap());
        // Sign-out deletes; the other sessions stay, and survive reopening the store.
        assert!(store.delete_web_session(&token_hash("s1")).await.unwrap());
        assert!(store
            .find_web_session(&token_hash("s1"))
            .await
            .unwrap()
            .is_none());
        drop(store);
        let store = Store::open(&StoreConfig { url: url.clone() })
            .await
            .unwrap();
        let s = store
            .find_web_session(&token_hash("s3"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.csrf, "c3");
        // A session dies with its token (were a token's row ever deleted).
        {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{url}"))
                .await
                .unwrap();
            sqlx::query("DELETE FROM tokens WHERE hash = $1")
                .bind(token_hash(&token))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
        assert!(store
            .find_web_session(&token_hash("s3"))
            .await
            .unwrap()
            .is_none());
    }
}
