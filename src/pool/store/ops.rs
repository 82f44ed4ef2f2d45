// The store's operations, written once and compiled for each backend: included into
// `sqlite_ops` and `pg_ops` (see mod.rs), where `Db`, `PG` and `Pool` are defined.

use super::{
    attempt_view, conclusion_state, log_page, view_from, Claimed, Counts, Expired, JobRow,
    NewJob, Notice, StoreError, JOB_COLS,
};
use crate::pool::protocol::{
    ArtifactEntry, ArtifactList, Conclusion, JobState, JobView, LogChunk, LogPage,
};
use sqlx::{Connection, Row};

type Conn = <Db as sqlx::Database>::Connection;

/// `FOR UPDATE` where the dialect has row locks (SQLite: one writer at a time anyway).
const LOCK: &str = if PG { " FOR UPDATE" } else { "" };
const SKIP_LOCKED: &str = if PG { " FOR UPDATE SKIP LOCKED" } else { "" };

/// Brings the schema to the newest version: `ddl` (version 1), then each of MIGRATIONS
/// not applied yet, up to and including step `upto` (`i64::MAX`: all; a test of one
/// migration starts from the schema just before it).
pub(super) async fn migrate(conn: &mut Conn, ddl: &str, upto: i64) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    if PG {
        // Several replicas may start at once: one migrates, the others wait and see it done.
        sqlx::query("SELECT pg_advisory_xact_lock(8420018)")
            .execute(&mut *tx)
            .await?;
    }
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *tx)
        .await?;
    let version = version.unwrap_or(0);
    if version < 1 {
        sqlx::raw_sql(ddl).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_version (version) VALUES (1)")
            .execute(&mut *tx)
            .await?;
    }
    for (step, ddl) in MIGRATIONS {
        if version < *step && *step <= upto {
            sqlx::raw_sql(ddl).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(*step)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}

/// Schema changes after version 1 (the `schema_*.sql` file), in order; the same DDL in
/// both dialects.
const MIGRATIONS: &[(i64, &str)] = &[
    // 2: a claim is unconfirmed until the agent's first heartbeat or log append; a job
    // running when this runs is treated as confirmed.
    (
        2,
        "ALTER TABLE jobs ADD COLUMN confirmed BIGINT NOT NULL DEFAULT 1",
    ),
    // 3: build numbers per project, assigned at submit (jobs from before count as built).
    (
        3,
        "ALTER TABLE jobs ADD COLUMN build_number BIGINT NOT NULL DEFAULT 0; \
         CREATE TABLE projects (name TEXT PRIMARY KEY NOT NULL, builds BIGINT NOT NULL); \
         INSERT INTO projects (name, builds) SELECT project, COUNT(*) FROM jobs GROUP BY project",
    ),
    // 4: GitHub webhook deliveries seen (the primary key refuses a redelivery, on every
    // replica) and merged pull requests (for the delivery metrics).
    (
        4,
        "CREATE TABLE webhook_deliveries (id TEXT PRIMARY KEY NOT NULL, event TEXT NOT NULL, \
             received BIGINT NOT NULL, job TEXT); \
         CREATE TABLE merged_prs (repo TEXT NOT NULL, number BIGINT NOT NULL, \
             merged_at TEXT NOT NULL, merge_sha TEXT, delivery TEXT NOT NULL, \
             PRIMARY KEY (repo, number))",
    ),
    // 5: the notification outbox (see crate::pool::server::notify).
    (5, NOTIFY_DDL),
    // 6: where a webhook job's commit statuses go (written with the job), and indexes
    // for the retention sweep (crate::pool::store::outbox::Store::prune).
    (6, STATUS_DDL),
    // 7: delivery metrics (crate::pool::dora): a job's commit time and kind of change
    // (`main`, `side`: a pull request's or side branch's, `revert`), and the GitOps pull
    // requests jobs reported. Pull requests' jobs from before are `side`.
    (
        7,
        "ALTER TABLE jobs ADD COLUMN commit_time BIGINT; \
         ALTER TABLE jobs ADD COLUMN change_kind TEXT NOT NULL DEFAULT 'main'; \
         UPDATE jobs SET change_kind = 'side' \
             WHERE spec LIKE '%\"CODEBUILD_WEBHOOK_EVENT\":\"PULL\\_REQUEST\\_%' ESCAPE '\\'; \
         CREATE INDEX jobs_project_finished ON jobs (project, finished); \
         CREATE TABLE deploy_prs (job_id TEXT NOT NULL, repo TEXT NOT NULL, \
             number BIGINT NOT NULL, url TEXT NOT NULL, reported BIGINT NOT NULL, \
             PRIMARY KEY (job_id, repo, number)); \
         CREATE INDEX deploy_prs_pr ON deploy_prs (repo, number)",
    ),
    // 8: the queue's pauses (see crate::pool::server::queue): a label key ('' = every
    // job) whose jobs no agent claims until it is resumed.
    (8, PAUSE_DDL),
    // 9: the web page's sign-in sessions (see crate::pool::server::web), shared by every
    // replica.
    (9, WEB_SESSION_DDL),
];

/// Takes the project's next build number (in the submit's transaction or statement).
const NEXT_BUILD: &str = "INSERT INTO projects (name, builds) VALUES ($1, 1) \
     ON CONFLICT (name) DO UPDATE SET builds = projects.builds + 1 RETURNING builds";

pub async fn create_token(
    conn: &mut Conn,
    hash: &str,
    role: &str,
    name: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO tokens (hash, role, name, created) VALUES ($1, $2, $3, $4)")
        .bind(hash)
        .bind(role)
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn find_token(pool: &Pool, hash: &str) -> Result<Option<String>, StoreError> {
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM tokens WHERE hash = $1")
        .bind(hash)
        .fetch_optional(pool)
        .await?;
    Ok(role)
}

/// Stores a queued job (one statement; the view is built from what was inserted). The
/// `NOTIFY` is sent after it, not inside it: a transaction that notifies holds
/// PostgreSQL's notify-queue lock through its commit's WAL flush, which would serialize
/// every submit's commit.
pub async fn submit(
    conn: &mut Conn,
    job: &NewJob,
    key: &str,
    now: i64,
) -> Result<JobView, StoreError> {
    let labels = serde_json::to_string(&job.labels)
        .map_err(|e| StoreError::Invalid(format!("labels: {e}")))?;
    let insert = "INSERT INTO jobs (id, state, label_key, labels, project, spec, max_attempts, \
                  created, queued, commit_time, change_kind, build_number) \
                  VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $7, $8, $9, ";
    macro_rules! bind {
        ($sql:expr) => {
            sqlx::query_scalar::<_, i64>($sql)
                .bind(&job.id)
                .bind(key)
                .bind(&labels)
                .bind(&job.project)
                .bind(&job.spec)
                .bind(i64::from(job.max_attempts))
                .bind(now)
                .bind(job.change.commit_ms)
                .bind(job.change.kind())
        };
    }
    let build_number = if PG {
        // One statement: the number and the job commit together.
        let sql = format!(
            "WITH n AS ({}) {insert}(SELECT builds FROM n)) RETURNING build_number",
            NEXT_BUILD.replace("$1", "$4")
        );
        bind!(&sql).fetch_one(&mut *conn).await?
    } else {
        let mut tx = conn.begin().await?;
        let n: i64 = sqlx::query_scalar(NEXT_BUILD)
            .bind(&job.project)
            .fetch_one(&mut *tx)
            .await?;
        let sql = format!("{insert}$10) RETURNING build_number");
        let n = bind!(&sql).bind(n).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        n
    };
    let row = JobRow {
        id: job.id.clone(),
        state: "queued".into(),
        labels,
        project: job.project.clone(),
        build_number,
        attempt: 0,
        max_attempts: i64::from(job.max_attempts),
        created: now,
        finished: None,
        exit_code: None,
        message: None,
        cancel_requested: 0,
        log_truncated: 0,
    };
    view_from(row, Vec::new())
}

pub(super) fn job_row(row: &<Db as sqlx::Database>::Row) -> Result<JobRow, sqlx::Error> {
    Ok(JobRow {
        id: row.try_get("id")?,
        state: row.try_get("state")?,
        labels: row.try_get("labels")?,
        project: row.try_get("project")?,
        build_number: row.try_get("build_number")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        created: row.try_get("created")?,
        finished: row.try_get("finished")?,
        exit_code: row.try_get("exit_code")?,
        message: row.try_get("message")?,
        cancel_requested: row.try_get("cancel_requested")?,
        log_truncated: row.try_get("log_truncated")?,
    })
}

async fn load_view(conn: &mut Conn, id: &str) -> Result<Option<JobView>, StoreError> {
    let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1");
    let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let job = job_row(&row)?;
    let attempts = load_attempts(conn, id).await?;
    view_from(job, attempts).map(Some)
}

async fn load_attempts(
    conn: &mut Conn,
    id: &str,
) -> Result<Vec<crate::pool::protocol::AttemptView>, StoreError> {
    let rows = sqlx::query(
        "SELECT attempt, agent, started, ended, outcome FROM attempts WHERE job_id = $1 \
         ORDER BY attempt",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut attempts = Vec::with_capacity(rows.len());
    for r in rows {
        attempts.push(attempt_view(
            r.try_get("attempt")?,
            r.try_get("agent")?,
            r.try_get("started")?,
            r.try_get("ended")?,
            r.try_get("outcome")?,
        ));
    }
    Ok(attempts)
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<JobView>, StoreError> {
    let mut conn = pool.acquire().await?;
    load_view(&mut conn, id).await
}

pub async fn list(
    pool: &Pool,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<JobView>, StoreError> {
    let mut conn = pool.acquire().await?;
    let ids: Vec<String> = match state {
        Some(s) => {
            sqlx::query_scalar(
                "SELECT id FROM jobs WHERE state = $1 ORDER BY created DESC, id LIMIT $2",
            )
            .bind(s)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query_scalar("SELECT id FROM jobs ORDER BY created DESC, id LIMIT $1")
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        }
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = load_view(&mut conn, &id).await? {
            out.push(v);
        }
    }
    Ok(out)
}

/// Records when agents last asked for work (kept in memory, written here in one batch).
pub async fn flush_agents(
    conn: &mut Conn,
    seen: &[(String, String, i64)],
) -> Result<(), StoreError> {
    // Multi-row upserts, 300 agents (900 parameters) a statement.
    let mut tx = conn.begin().await?;
    for chunk in seen.chunks(300) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO agents (name, labels, last_seen) VALUES {} \
             ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, \
             last_seen = excluded.last_seen",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (agent, labels, last_seen) in chunk {
            q = q.bind(agent).bind(labels).bind(last_seen);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Whether a job under one of `keys` is queued (a read: lets an empty claim skip the writer).
pub async fn any_queued(pool: &Pool, keys: &[String]) -> Result<bool, StoreError> {
    if keys.is_empty() {
        return Ok(false);
    }
    let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 1)).collect();
    let sql = format!(
        "SELECT 1 FROM jobs WHERE state = 'queued' AND label_key IN ({}) LIMIT 1",
        placeholders.join(", ")
    );
    let mut q = sqlx::query_scalar::<_, i32>(&sql);
    for k in keys {
        q = q.bind(k);
    }
    Ok(q.fetch_optional(pool).await?.is_some())
}

/// Claims the oldest queued job under one of `keys`: on PostgreSQL one statement (the
/// claim and its attempt row), on SQLite two under a savepoint of the writer's batch.
pub async fn claim(
    conn: &mut Conn,
    agent: &str,
    keys: &[String],
    lease: &str,
    expires: i64,
    now: i64,
) -> Result<Option<Claimed>, StoreError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 5)).collect();
    let update = format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease = $1, \
         lease_expires = $2, agent = $3, confirmed = 0 \
         WHERE state = 'queued' AND id = (SELECT id FROM jobs WHERE state = 'queued' AND \
         label_key IN ({}) ORDER BY queued, id LIMIT 1{SKIP_LOCKED}) \
         RETURNING id, attempt, project, build_number, spec, label_key, queued",
        placeholders.join(", ")
    );
    let insert_attempt =
        "INSERT INTO attempts (job_id, attempt, agent, lease, started) VALUES ($1, $2, $3, $4, $5)";
    let sql = if PG {
        format!(
            "WITH c AS ({update}), a AS (INSERT INTO attempts (job_id, attempt, agent, lease, \
             started) SELECT id, attempt, $3, $1, $4 FROM c) \
             SELECT id, attempt, project, build_number, spec, label_key, queued FROM c"
        )
    } else {
        update
    };
    let mut q = sqlx::query(&sql).bind(lease).bind(expires).bind(agent).bind(now);
    for k in keys {
        q = q.bind(k);
    }
    let claimed_from = |row: &<Db as sqlx::Database>::Row| -> Result<Claimed, StoreError> {
        Ok(Claimed {
            id: row.try_get("id")?,
            attempt: row.try_get::<i64, _>("attempt")? as u32,
            project: row.try_get("project")?,
            build_number: u64::try_from(row.try_get::<i64, _>("build_number")?).unwrap_or(0),
            spec: row.try_get("spec")?,
            key: row.try_get("label_key")?,
            queued_ms: row.try_get("queued")?,
        })
    };
    if PG {
        // One statement, its own transaction: one round trip.
        return match q.fetch_optional(&mut *conn).await? {
            Some(row) => claimed_from(&row).map(Some),
            None => Ok(None),
        };
    }
    let mut tx = conn.begin().await?;
    let Some(row) = q.fetch_optional(&mut *tx).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let claimed = claimed_from(&row)?;
    sqlx::query(insert_attempt)
        .bind(&claimed.id)
        .bind(i64::from(claimed.attempt))
        .bind(agent)
        .bind(lease)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(claimed))
}

/// After a fenced statement matched nothing: 404 if the job does not exist, else 409.
async fn fence_failure(conn: &mut Conn, id: &str, attempt: u32) -> StoreError {
    let exists: Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await;
    match exists {
        Ok(Some(_)) => StoreError::Fenced {
            job: id.to_string(),
            attempt,
        },
        Ok(None) => StoreError::NotFound,
        Err(e) => StoreError::Db(e),
    }
}

const FENCE: &str = "id = $1 AND attempt = $2 AND lease = $3 AND state = 'running'";

pub async fn heartbeat(
    conn: &mut Conn,
    id: &str,
    attempt: u32,
    lease: &str,
    expires: i64,
) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE jobs SET lease_expires = $4, confirmed = 1 WHERE {FENCE} \
         RETURNING cancel_requested"
    );
    let cancel: Option<i64> = sqlx::query_scalar(&sql)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(lease)
        .bind(expires)
        .fetch_optional(&mut *conn)
        .await?;
    match cancel {
        Some(c) => Ok(c != 0),
        None => Err(fence_failure(conn, id, attempt).await),
    }
}

pub async fn watch_state(
    pool: &Pool,
    id: &str,
    attempt: u32,
    lease: &str,
) -> Result<(bool, i64), StoreError> {
    let mut conn = pool.acquire().await?;
    let sql = format!("SELECT cancel_requested, lease_expires FROM jobs WHERE {FENCE}");
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(lease)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => {
            let cancel: i64 = r.try_get("cancel_requested")?;
            let expires: Option<i64> = r.try_get("lease_expires")?;
            Ok((cancel != 0, expires.unwrap_or(0)))
        }
        None => Err(fence_failure(&mut conn, id, attempt).await),
    }
}

pub async fn append_log(
    conn: &mut Conn,
    id: &str,
    attempt: u32,
    lease: &str,
    seq: i64,
    data: &str,
    limit: i64,
) -> Result<(), StoreError> {
    let mut tx = conn.begin().await?;
    let sql = format!("SELECT log_bytes FROM jobs WHERE {FENCE}{LOCK}");
    let bytes: Option<i64> = sqlx::query_scalar(&sql)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(bytes) = bytes else {
        let err = fence_failure(&mut tx, id, attempt).await;
        tx.rollback().await?;
        return Err(err);
    };
    let seen: Option<i64> = sqlx::query_scalar(
        "SELECT seq FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND seq = $3",
    )
    .bind(id)
    .bind(i64::from(attempt))
    .bind(seq)
    .fetch_optional(&mut *tx)
    .await?;
    if seen.is_some() {
        tx.rollback().await?;
        return Ok(());
    }
    let len = data.len() as i64;
    if bytes.saturating_add(len) > limit {
        sqlx::query("UPDATE jobs SET log_truncated = 1, confirmed = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO log_chunks (job_id, attempt, seq, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(i64::from(attempt))
        .bind(seq)
        .bind(data)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE jobs SET log_bytes = log_bytes + $2, confirmed = 1 WHERE id = $1")
            .bind(id)
            .bind(len)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn read_log(
    pool: &Pool,
    id: &str,
    attempt: Option<u32>,
    after: i64,
    max_chunks: i64,
) -> Result<Option<LogPage>, StoreError> {
    let mut conn = pool.acquire().await?;
    let row = sqlx::query("SELECT attempt, state, log_truncated FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let current: i64 = row.try_get("attempt")?;
    let state: String = row.try_get("state")?;
    let truncated: i64 = row.try_get("log_truncated")?;
    let attempt = attempt.map(i64::from).unwrap_or(current);
    let over = if attempt < current || state_is_final(&state) {
        true
    } else if attempt == 0 {
        false
    } else {
        let outcome: Option<Option<String>> =
            sqlx::query_scalar("SELECT outcome FROM attempts WHERE job_id = $1 AND attempt = $2")
                .bind(id)
                .bind(attempt)
                .fetch_optional(&mut *conn)
                .await?;
        // An attempt that does not exist (beyond the current one) has nothing more to say
        // only once the job is over; one that ended has an outcome.
        matches!(outcome, Some(Some(_)))
    };
    let rows = sqlx::query(
        "SELECT seq, data FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND seq >= $3 \
         ORDER BY seq LIMIT $4",
    )
    .bind(id)
    .bind(attempt)
    .bind(after)
    .bind(max_chunks)
    .fetch_all(&mut *conn)
    .await?;
    let mut chunks = Vec::with_capacity(rows.len());
    for r in rows {
        chunks.push(LogChunk {
            seq: r.try_get::<i64, _>("seq")? as u64,
            data: r.try_get("data")?,
        });
    }
    let full = chunks.len() as i64 >= max_chunks;
    Ok(Some(log_page(
        attempt.max(0) as u32,
        chunks,
        after,
        over,
        full,
        truncated != 0,
    )))
}

fn state_is_final(s: &str) -> bool {
    !matches!(s, "queued" | "running")
}

pub async fn add_artifact(
    conn: &mut Conn,
    id: &str,
    attempt: u32,
    lease: &str,
    entry: &ArtifactEntry,
) -> Result<(), StoreError> {
    let mut tx = conn.begin().await?;
    let sql = format!("SELECT id FROM jobs WHERE {FENCE}{LOCK}");
    let found: Option<String> = sqlx::query_scalar(&sql)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        let err = fence_failure(&mut tx, id, attempt).await;
        tx.rollback().await?;
        return Err(err);
    }
    sqlx::query(
        "INSERT INTO artifacts (job_id, attempt, name, size, sha256) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (job_id, attempt, name) DO UPDATE SET size = excluded.size, \
         sha256 = excluded.sha256",
    )
    .bind(id)
    .bind(i64::from(attempt))
    .bind(&entry.name)
    .bind(entry.size as i64)
    .bind(&entry.sha256)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn artifacts(pool: &Pool, id: &str) -> Result<Option<ArtifactList>, StoreError> {
    let mut conn = pool.acquire().await?;
    let attempt: Option<i64> = sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(attempt) = attempt else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT name, size, sha256 FROM artifacts WHERE job_id = $1 AND attempt = $2 ORDER BY name",
    )
    .bind(id)
    .bind(attempt)
    .fetch_all(&mut *conn)
    .await?;
    let mut artifacts = Vec::with_capacity(rows.len());
    for r in rows {
        artifacts.push(ArtifactEntry {
            name: r.try_get("name")?,
            size: r.try_get::<i64, _>("size")? as u64,
            sha256: r.try_get("sha256")?,
        });
    }
    Ok(Some(ArtifactList {
        attempt: attempt as u32,
        artifacts,
    }))
}

/// Completes the attempt; `(view, changed)`. The same completion again answers the same
/// view with `changed = false`.
#[allow(clippy::too_many_arguments)]
pub async fn complete(
    conn: &mut Conn,
    id: &str,
    attempt: u32,
    lease: &str,
    conclusion: Conclusion,
    exit_code: i32,
    message: Option<&str>,
    log_chunks: i64,
    now: i64,
) -> Result<(JobView, bool), StoreError> {
    let state = conclusion_state(conclusion).as_str();
    if PG {
        // The usual case as one statement (its own transaction), then the attempts read.
        let fast = format!(
            "WITH j AS (UPDATE jobs SET state = $4, finished = $5, exit_code = $6, \
             message = $7, lease_expires = NULL WHERE {FENCE} AND (log_truncated <> 0 OR \
             (SELECT COUNT(*) FROM log_chunks WHERE job_id = $1 AND attempt = $2) >= $8) \
             RETURNING {JOB_COLS}), \
             a AS (UPDATE attempts SET ended = $5, outcome = $4 WHERE job_id = $1 AND \
             attempt = $2 AND EXISTS (SELECT 1 FROM j)) \
             SELECT {JOB_COLS} FROM j"
        );
        let done = sqlx::query(&fast)
            .bind(id)
            .bind(i64::from(attempt))
            .bind(lease)
            .bind(state)
            .bind(now)
            .bind(i64::from(exit_code))
            .bind(message)
            .bind(log_chunks)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = done {
            let job = job_row(&row)?;
            let attempts = load_attempts(conn, id).await?;
            return Ok((view_from(job, attempts)?, true));
        }
    }
    let mut tx = conn.begin().await?;
    // The usual case in one statement: fenced, every log chunk stored (or the log cut).
    let fast = format!(
        "UPDATE jobs SET state = $4, finished = $5, exit_code = $6, message = $7, \
         lease_expires = NULL WHERE {FENCE} AND (log_truncated <> 0 OR \
         (SELECT COUNT(*) FROM log_chunks WHERE job_id = $1 AND attempt = $2) >= $8) \
         RETURNING {JOB_COLS}"
    );
    let done = sqlx::query(&fast)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(lease)
        .bind(state)
        .bind(now)
        .bind(i64::from(exit_code))
        .bind(message)
        .bind(log_chunks)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(row) = done {
        let job = job_row(&row)?;
        sqlx::query(
            "UPDATE attempts SET ended = $3, outcome = $4 WHERE job_id = $1 AND attempt = $2",
        )
        .bind(id)
        .bind(i64::from(attempt))
        .bind(now)
        .bind(state)
        .execute(&mut *tx)
        .await?;
        let attempts = load_attempts(&mut tx, id).await?;
        tx.commit().await?;
        return Ok((view_from(job, attempts)?, true));
    }
    let sql = format!("SELECT log_truncated FROM jobs WHERE {FENCE}{LOCK}");
    let truncated: Option<i64> = sqlx::query_scalar(&sql)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(truncated) = truncated else {
        // Not running under this lease: the same completion again is answered as before.
        let prior = sqlx::query(
            "SELECT a.outcome, a.lease, j.attempt, j.state, j.exit_code FROM attempts a \
             JOIN jobs j ON j.id = a.job_id WHERE a.job_id = $1 AND a.attempt = $2",
        )
        .bind(id)
        .bind(i64::from(attempt))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = prior {
            let outcome: Option<String> = r.try_get("outcome")?;
            let a_lease: String = r.try_get("lease")?;
            let current: i64 = r.try_get("attempt")?;
            let j_state: String = r.try_get("state")?;
            let j_exit: Option<i64> = r.try_get("exit_code")?;
            if a_lease == lease
                && current == i64::from(attempt)
                && outcome.as_deref() == Some(state)
                && j_state == state
                && j_exit == Some(i64::from(exit_code))
            {
                let view = load_view(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
                tx.rollback().await?;
                return Ok((view, false));
            }
        }
        let err = fence_failure(&mut tx, id, attempt).await;
        tx.rollback().await?;
        return Err(err);
    };
    if truncated == 0 {
        let have: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM log_chunks WHERE job_id = $1 AND attempt = $2",
        )
        .bind(id)
        .bind(i64::from(attempt))
        .fetch_one(&mut *tx)
        .await?;
        if have < log_chunks {
            tx.rollback().await?;
            return Err(StoreError::Invalid(format!(
                "the server has {have} of the {log_chunks} log chunks of attempt {attempt}; \
                 append the missing ones, then complete again"
            )));
        }
    }
    sqlx::query(
        "UPDATE jobs SET state = $2, finished = $3, exit_code = $4, message = $5, \
         lease_expires = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(now)
    .bind(i64::from(exit_code))
    .bind(message)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE attempts SET ended = $3, outcome = $4 WHERE job_id = $1 AND attempt = $2")
        .bind(id)
        .bind(i64::from(attempt))
        .bind(now)
        .bind(state)
        .execute(&mut *tx)
        .await?;
    let view = load_view(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
    tx.commit().await?;
    Ok((view, true))
}

/// Gives the attempt back: `Some(label key)` when the job is queued again, `None` when it
/// ended instead (a cancel was asked).
pub async fn release(
    conn: &mut Conn,
    id: &str,
    attempt: u32,
    lease: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let mut tx = conn.begin().await?;
    let sql = format!("SELECT cancel_requested, label_key FROM jobs WHERE {FENCE}{LOCK}");
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(i64::from(attempt))
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        let again: Option<Option<String>> = sqlx::query_scalar(
            "SELECT outcome FROM attempts WHERE job_id = $1 AND attempt = $2 AND lease = $3",
        )
        .bind(id)
        .bind(i64::from(attempt))
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await?;
        if matches!(again, Some(Some(ref o)) if o == "released") {
            tx.rollback().await?;
            return Ok(None);
        }
        let err = fence_failure(&mut tx, id, attempt).await;
        tx.rollback().await?;
        return Err(err);
    };
    let cancel: i64 = row.try_get("cancel_requested")?;
    let key: String = row.try_get("label_key")?;
    if cancel != 0 {
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished = $2, lease = NULL, \
             lease_expires = NULL, message = 'cancelled' WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', queued = $2, lease = NULL, lease_expires = NULL, \
             agent = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE attempts SET ended = $3, outcome = 'released' WHERE job_id = $1 AND attempt = $2",
    )
    .bind(id)
    .bind(i64::from(attempt))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(if cancel != 0 { None } else { Some(key) })
}

pub async fn cancel(
    conn: &mut Conn,
    id: &str,
    now: i64,
) -> Result<(JobView, Option<Notice>), StoreError> {
    let mut tx = conn.begin().await?;
    let sql = format!("SELECT state FROM jobs WHERE id = $1{LOCK}");
    let state: Option<String> = sqlx::query_scalar(&sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let notice = match state.as_deref() {
        None => {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        Some("queued") => {
            sqlx::query(
                "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished = $2, \
                 message = 'cancelled before it started' WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Some(Notice::Finished(id.to_string()))
        }
        Some("running") => {
            sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            Some(Notice::Cancel(id.to_string()))
        }
        Some(_) => None,
    };
    let view = load_view(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
    tx.commit().await?;
    Ok((view, notice))
}

pub async fn retry(conn: &mut Conn, id: &str, now: i64) -> Result<(JobView, String), StoreError> {
    let mut tx = conn.begin().await?;
    let sql = format!("SELECT state, label_key FROM jobs WHERE id = $1{LOCK}");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Err(StoreError::NotFound);
    };
    let state: String = row.try_get("state")?;
    let key: String = row.try_get("label_key")?;
    if !state_is_final(&state) {
        tx.rollback().await?;
        return Err(StoreError::Conflict(format!(
            "job {id} is still {state}; cancel it first or wait for it to finish"
        )));
    }
    sqlx::query(
        "UPDATE jobs SET state = 'queued', queued = $2, lost = 0, lease = NULL, \
         lease_expires = NULL, agent = NULL, finished = NULL, exit_code = NULL, message = NULL, \
         cancel_requested = 0, log_truncated = 0, log_bytes = 0 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let view = load_view(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
    tx.commit().await?;
    Ok((view, key))
}

pub async fn expire_leases(
    conn: &mut Conn,
    now: i64,
) -> Result<Vec<(Expired, String)>, StoreError> {
    let candidates = sqlx::query(
        "SELECT id, attempt, lost, max_attempts, cancel_requested, label_key, confirmed FROM jobs \
         WHERE state = 'running' AND lease_expires < $1 ORDER BY lease_expires LIMIT 500",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for r in candidates {
        let id: String = r.try_get("id")?;
        let attempt: i64 = r.try_get("attempt")?;
        let confirmed = r.try_get::<i64, _>("confirmed")? != 0;
        // A claim its agent never confirmed (the answer was lost, or the agent stopped
        // as it came): the job never started there, so it goes back without counting.
        let lost: i64 = r.try_get::<i64, _>("lost")? + i64::from(confirmed);
        let max: i64 = r.try_get("max_attempts")?;
        let cancel: i64 = r.try_get("cancel_requested")?;
        let key: String = r.try_get("label_key")?;
        let outcome = if confirmed { "lost" } else { "unconfirmed" };
        let (state, message): (&str, Option<String>) = if cancel != 0 {
            ("cancelled", Some("cancelled (its agent was lost)".to_string()))
        } else if !confirmed {
            ("queued", None)
        } else if lost >= max {
            (
                "error",
                Some(format!(
                    "agent lost {lost} time{}",
                    if lost == 1 { "" } else { "s" }
                )),
            )
        } else {
            ("queued", None)
        };
        let mut tx = conn.begin().await?;
        // Conditional: a heartbeat, a completion or another replica's reaper may have
        // got there first; then this matches nothing and changes nothing.
        let done = sqlx::query(
            "UPDATE jobs SET state = $3, lost = $4, lease = NULL, lease_expires = NULL, \
             agent = NULL, queued = $5, message = $6, \
             finished = CASE WHEN $3 = 'queued' THEN NULL ELSE $5 END, \
             exit_code = CASE WHEN $3 = 'queued' THEN NULL ELSE 2 END \
             WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_expires < $5",
        )
        .bind(&id)
        .bind(attempt)
        .bind(state)
        .bind(lost)
        .bind(now)
        .bind(message)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            continue;
        }
        sqlx::query(
            "UPDATE attempts SET ended = $3, outcome = $4 WHERE job_id = $1 AND attempt = $2",
        )
        .bind(&id)
        .bind(attempt)
        .bind(now)
        .bind(outcome)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let ended = match state {
            "queued" => None,
            "cancelled" => Some(JobState::Cancelled),
            _ => Some(JobState::Error),
        };
        out.push((
            Expired {
                id,
                attempt: attempt as u32,
                ended,
            },
            key,
        ));
    }
    Ok(out)
}

pub async fn counts(pool: &Pool, online_since: i64) -> Result<Counts, StoreError> {
    let rows = sqlx::query(
        "SELECT label_key, COUNT(*) AS n FROM jobs WHERE state = 'queued' GROUP BY label_key \
         ORDER BY label_key",
    )
    .fetch_all(pool)
    .await?;
    let mut queued_by_key = Vec::with_capacity(rows.len());
    for r in rows {
        queued_by_key.push((r.try_get("label_key")?, r.try_get("n")?));
    }
    let running: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'running'")
        .fetch_one(pool)
        .await?;
    let agents_online: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE last_seen >= $1")
            .bind(online_since)
            .fetch_one(pool)
            .await?;
    Ok(Counts {
        queued_by_key,
        running,
        agents_online,
    })
}

/// The web page's job list: newest first, filtered by id, project, states and (a superset
/// of the branch filter, refined by the caller) a substring of the spec.
pub async fn web_jobs(
    pool: &Pool,
    f: &super::WebFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<super::WebJob>, StoreError> {
    let (id, project, states, spec_contains) = (f.id, f.project, f.states, f.spec_contains);
    let mut conds: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if id.is_some() {
        conds.push(format!("id = {}", next()));
    }
    if project.is_some() {
        conds.push(format!("project = {}", next()));
    }
    if !states.is_empty() {
        let ps: Vec<String> = states.iter().map(|_| next()).collect();
        conds.push(format!("state IN ({})", ps.join(", ")));
    }
    if spec_contains.is_some() {
        conds.push(format!("spec LIKE {} ESCAPE '\\'", next()));
    }
    let (l, o) = (next(), next());
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT id, state, project, spec, attempt, agent, created, finished, exit_code, \
         message FROM jobs {filter} ORDER BY created DESC, id LIMIT {l} OFFSET {o}"
    );
    let mut q = sqlx::query(&sql);
    if let Some(i) = id {
        q = q.bind(i);
    }
    if let Some(p) = project {
        q = q.bind(p);
    }
    for s in states {
        q = q.bind(*s);
    }
    let like = spec_contains.map(|s| {
        let esc = s
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{esc}%")
    });
    if let Some(like) = &like {
        q = q.bind(like);
    }
    let rows = q.bind(limit).bind(offset).fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(super::WebJob {
            id: r.try_get("id")?,
            state: super::parse_state(r.try_get::<&str, _>("state")?)?,
            project: r.try_get("project")?,
            spec: r.try_get("spec")?,
            attempt: r.try_get::<i64, _>("attempt")? as u32,
            agent: r.try_get("agent")?,
            created_ms: r.try_get("created")?,
            finished_ms: r.try_get("finished")?,
            exit_code: r.try_get::<Option<i64>, _>("exit_code")?.map(|c| c as i32),
            message: r.try_get("message")?,
        });
    }
    Ok(out)
}

/// The web page's agents: every known agent (name, label key, last seen ms).
pub async fn web_agents(pool: &Pool) -> Result<Vec<(String, String, i64)>, StoreError> {
    let rows = sqlx::query("SELECT name, labels, last_seen FROM agents ORDER BY name")
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push((
            r.try_get("name")?,
            r.try_get("labels")?,
            r.try_get("last_seen")?,
        ));
    }
    Ok(out)
}

/// Records a webhook delivery and, with it, the job it asked for (one transaction): `None`
/// when the delivery was seen before (nothing is created).
#[allow(clippy::too_many_arguments)]
pub async fn webhook_submit(
    conn: &mut Conn,
    delivery: &str,
    event: &str,
    job: &NewJob,
    key: &str,
    status: &super::StatusTarget,
    now: i64,
) -> Result<Option<JobView>, StoreError> {
    let mut tx = conn.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (id, event, received, job) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(delivery)
    .bind(event)
    .bind(now)
    .bind(&job.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let view = submit(&mut tx, job, key, now).await?;
    record_status_target(&mut tx, &job.id, status, now).await?;
    tx.commit().await?;
    Ok(Some(view))
}

/// Records a merged pull request from a webhook delivery: false when the delivery (or
/// that pull request's merge) was recorded before.
pub async fn record_merged_pr(
    conn: &mut Conn,
    delivery: &str,
    pr: &super::MergedPr,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = conn.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (id, event, received, job) VALUES ($1, 'pull_request', $2, NULL) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(delivery)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    let inserted = sqlx::query(
        "INSERT INTO merged_prs (repo, number, merged_at, merge_sha, delivery) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repo, number) DO NOTHING",
    )
    .bind(&pr.repo)
    .bind(pr.number)
    .bind(&pr.merged_at)
    .bind(&pr.merge_sha)
    .bind(delivery)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(inserted > 0)
}

/// Merged pull requests of a repository (`owner/name`), by number.
pub async fn merged_prs(pool: &Pool, repo: &str) -> Result<Vec<super::MergedPr>, StoreError> {
    let rows = sqlx::query(
        "SELECT repo, number, merged_at, merge_sha FROM merged_prs WHERE repo = $1 ORDER BY number",
    )
    .bind(repo)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(super::MergedPr {
            repo: r.try_get("repo")?,
            number: r.try_get("number")?,
            merged_at: r.try_get("merged_at")?,
            merge_sha: r.try_get("merge_sha")?,
        });
    }
    Ok(out)
}

// ---- notification outbox (crate::pool::server::notify) ----------------------------

/// Job state changes (`notify_events`, also the `/v1/events` stream) and one delivery row
/// per (event, receiver URL) that receivers' senders claim with a lease, as agents claim
/// jobs.
const NOTIFY_DDL: &str = if PG {
    "CREATE TABLE notify_events (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, \
     job_id TEXT NOT NULL, project TEXT NOT NULL, body TEXT NOT NULL, created BIGINT NOT NULL); \
     CREATE INDEX notify_events_project ON notify_events (project, seq); \
     CREATE TABLE notify_deliveries (receiver TEXT NOT NULL, event_seq BIGINT NOT NULL, \
     job_id TEXT NOT NULL, state TEXT NOT NULL, tries BIGINT NOT NULL DEFAULT 0, \
     next_try BIGINT NOT NULL, created BIGINT NOT NULL, lease TEXT, lease_expires BIGINT, \
     PRIMARY KEY (receiver, event_seq)); \
     CREATE INDEX notify_deliveries_due ON notify_deliveries (receiver, state, next_try)"
} else {
    "CREATE TABLE notify_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, \
     job_id TEXT NOT NULL, project TEXT NOT NULL, body TEXT NOT NULL, created BIGINT NOT NULL); \
     CREATE INDEX notify_events_project ON notify_events (project, seq); \
     CREATE TABLE notify_deliveries (receiver TEXT NOT NULL, event_seq BIGINT NOT NULL, \
     job_id TEXT NOT NULL, state TEXT NOT NULL, tries BIGINT NOT NULL DEFAULT 0, \
     next_try BIGINT NOT NULL, created BIGINT NOT NULL, lease TEXT, lease_expires BIGINT, \
     PRIMARY KEY (receiver, event_seq)); \
     CREATE INDEX notify_deliveries_due ON notify_deliveries (receiver, state, next_try)"
};

/// Records events (idempotent by event id) and a pending delivery of each new one to
/// every receiver, in one transaction. Answers how many were new.
pub async fn record_events(
    conn: &mut Conn,
    events: &[super::OutEvent],
    receivers: &[String],
    now: i64,
) -> Result<usize, StoreError> {
    let mut tx = conn.begin().await?;
    let mut new = 0;
    for e in events {
        let seq: Option<i64> = sqlx::query_scalar(
            "INSERT INTO notify_events (id, job_id, project, body, created) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING seq",
        )
        .bind(&e.id)
        .bind(&e.job_id)
        .bind(&e.project)
        .bind(&e.body)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = seq else { continue };
        new += 1;
        for r in receivers {
            sqlx::query(
                "INSERT INTO notify_deliveries (receiver, event_seq, job_id, state, next_try, \
                 created) VALUES ($1, $2, $3, 'pending', $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(r)
            .bind(seq)
            .bind(&e.job_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(new)
}

/// Events with `after < seq < before`, oldest first, of one project or all: (seq, body,
/// recorded ms).
pub async fn events_after(
    pool: &Pool,
    after: i64,
    before: i64,
    project: Option<&str>,
    limit: i64,
) -> Result<Vec<(i64, String, i64)>, StoreError> {
    let rows: Vec<(i64, String, i64)> = match project {
        Some(p) => {
            sqlx::query_as(
                "SELECT seq, body, created FROM notify_events WHERE seq > $1 AND seq < $2 \
                 AND project = $3 ORDER BY seq LIMIT $4",
            )
            .bind(after)
            .bind(before)
            .bind(p)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as(
                "SELECT seq, body, created FROM notify_events WHERE seq > $1 AND seq < $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(after)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows)
}

/// The newest event's `seq` (0 when none).
pub async fn last_event(pool: &Pool) -> Result<i64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM notify_events")
        .fetch_one(pool)
        .await?;
    Ok(seq.unwrap_or(0))
}

/// Whether a delivery to `receiver` may be due (a read: an idle sender skips the writer).
pub async fn any_delivery_due(pool: &Pool, receiver: &str, now: i64) -> Result<bool, StoreError> {
    let due: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM notify_deliveries WHERE receiver = $1 AND state = 'pending' \
         AND next_try <= $2 AND (lease_expires IS NULL OR lease_expires < $2) LIMIT 1",
    )
    .bind(receiver)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    Ok(due.is_some())
}

/// Claims the oldest due delivery to `receiver` whose job has no earlier pending one (so
/// a job's events go out in order, on any number of replicas): (seq, tries so far,
/// event id, body, created).
pub async fn claim_delivery(
    conn: &mut Conn,
    receiver: &str,
    lease: &str,
    expires: i64,
    now: i64,
) -> Result<Option<super::DueDelivery>, StoreError> {
    let sql = format!(
        "UPDATE notify_deliveries SET lease = $1, lease_expires = $2, tries = tries + 1 \
         WHERE receiver = $3 AND state = 'pending' \
         AND (lease_expires IS NULL OR lease_expires < $4) AND event_seq = ( \
           SELECT d.event_seq FROM notify_deliveries d WHERE d.receiver = $3 \
           AND d.state = 'pending' AND d.next_try <= $4 \
           AND (d.lease_expires IS NULL OR d.lease_expires < $4) \
           AND NOT EXISTS (SELECT 1 FROM notify_deliveries e WHERE e.receiver = d.receiver \
             AND e.job_id = d.job_id AND e.state = 'pending' AND e.event_seq < d.event_seq) \
           ORDER BY d.event_seq LIMIT 1{SKIP_LOCKED}) \
         RETURNING event_seq, tries, created"
    );
    let mut tx = conn.begin().await?;
    let row: Option<(i64, i64, i64)> = sqlx::query_as(&sql)
        .bind(lease)
        .bind(expires)
        .bind(receiver)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((seq, tries, created)) = row else {
        tx.rollback().await?;
        return Ok(None);
    };
    let (id, body): (String, String) =
        sqlx::query_as("SELECT id, body FROM notify_events WHERE seq = $1")
            .bind(seq)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Some(super::DueDelivery {
        seq,
        tries: tries as u32,
        id,
        body,
        created_ms: created,
    }))
}

/// Ends a claimed delivery (fenced by its lease): `next_try` `None` = delivered or given
/// up (`state`), else pending again from then.
pub async fn settle_delivery(
    conn: &mut Conn,
    receiver: &str,
    seq: i64,
    lease: &str,
    state: &str,
    next_try: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE notify_deliveries SET state = $1, next_try = $2, lease = NULL, \
         lease_expires = NULL WHERE receiver = $3 AND event_seq = $4 AND lease = $5",
    )
    .bind(state)
    .bind(next_try)
    .bind(receiver)
    .bind(seq)
    .bind(lease)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Jobs not finished, or finished at or after `since` (ms): what the outbox reconciles.
pub async fn jobs_to_reconcile(pool: &Pool, since: i64) -> Result<Vec<String>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE finished IS NULL OR finished >= $1 ORDER BY created, id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(ids)
}

// ---- commit statuses, outbox metrics and retention (crate::pool::server::webhooks::statuses,
// crate::pool::server::metrics, Store::prune) -----------------------------------------

/// Migration 6.
const STATUS_DDL: &str = "CREATE TABLE commit_status_targets (job_id TEXT PRIMARY KEY NOT NULL, \
     repo TEXT NOT NULL, sha TEXT NOT NULL, created BIGINT NOT NULL); \
     CREATE INDEX notify_events_created ON notify_events (created); \
     CREATE INDEX notify_deliveries_settled ON notify_deliveries (state, created); \
     CREATE INDEX notify_deliveries_event ON notify_deliveries (event_seq); \
     CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received)";

/// Records where a webhook job's commit statuses go (in the job's transaction).
async fn record_status_target(
    conn: &mut Conn,
    job: &str,
    t: &super::StatusTarget,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO commit_status_targets (job_id, repo, sha, created) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(job)
    .bind(&t.repo)
    .bind(&t.sha)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The commit a webhook job's statuses are about (`None`: not a webhook job).
pub async fn status_target(
    pool: &Pool,
    job: &str,
) -> Result<Option<super::StatusTarget>, StoreError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT repo, sha FROM commit_status_targets WHERE job_id = $1")
            .bind(job)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(repo, sha)| super::StatusTarget { repo, sha }))
}

/// Pending deliveries per receiver: (receiver, how many, oldest event's created ms).
pub async fn pending_deliveries(pool: &Pool) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT receiver, COUNT(*), MIN(created) FROM notify_deliveries \
         WHERE state = 'pending' GROUP BY receiver ORDER BY receiver",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(r, n, oldest)| (r, n, oldest.unwrap_or(0)))
        .collect())
}

/// Deletes up to `batch` settled (delivered or given up) deliveries created before
/// `before`, then up to `batch` events created before `before` that no delivery row
/// names any more and whose job finished before `finished_before` (the start-up
/// reconciliation would record the event of an unfinished or recently finished job
/// again): (deliveries, events) deleted.
pub async fn prune_outbox(
    conn: &mut Conn,
    before: i64,
    finished_before: i64,
    batch: i64,
) -> Result<(u64, u64), StoreError> {
    let deliveries = sqlx::query(
        "DELETE FROM notify_deliveries WHERE (receiver, event_seq) IN ( \
           SELECT receiver, event_seq FROM notify_deliveries \
           WHERE state IN ('delivered', 'dead') AND created < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(batch)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let events = sqlx::query(
        "DELETE FROM notify_events WHERE seq IN ( \
           SELECT seq FROM notify_events e WHERE e.created < $1 AND NOT EXISTS ( \
             SELECT 1 FROM notify_deliveries d WHERE d.event_seq = e.seq) \
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id \
             AND (j.finished IS NULL OR j.finished >= $3)) LIMIT $2)",
    )
    .bind(before)
    .bind(batch)
    .bind(finished_before)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((deliveries, events))
}

/// Deletes up to `batch` webhook delivery ids received before `before`.
pub async fn prune_webhook_deliveries(
    conn: &mut Conn,
    before: i64,
    batch: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM webhook_deliveries WHERE id IN ( \
           SELECT id FROM webhook_deliveries WHERE received < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(batch)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

// ---- the queue's pauses (crate::pool::server::queue; migration 8) ----

const PAUSE_DDL: &str =
    "CREATE TABLE queue_pauses (label_key TEXT PRIMARY KEY NOT NULL, paused BIGINT NOT NULL)";

/// Pauses the jobs under `key` (and every key with those labels); pausing twice keeps the
/// first time.
pub async fn pause_queue(conn: &mut Conn, key: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO queue_pauses (label_key, paused) VALUES ($1, $2) \
         ON CONFLICT (label_key) DO NOTHING",
    )
    .bind(key)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes the pause of `key`, or every pause (`None`); how many were removed.
pub async fn resume_queue(conn: &mut Conn, key: Option<&str>) -> Result<u64, StoreError> {
    let done = match key {
        Some(k) => {
            sqlx::query("DELETE FROM queue_pauses WHERE label_key = $1")
                .bind(k)
                .execute(&mut *conn)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM queue_pauses")
                .execute(&mut *conn)
                .await?
        }
    };
    Ok(done.rows_affected())
}

/// Every pause: (label key, paused at ms), by key.
pub async fn queue_pauses(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query("SELECT label_key, paused FROM queue_pauses ORDER BY label_key")
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push((r.try_get("label_key")?, r.try_get("paused")?));
    }
    Ok(out)
}

/// Queued jobs per label key: (key, how many, the oldest's queued time in ms).
pub async fn queued_groups(pool: &Pool) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT label_key, COUNT(*) AS n, MIN(queued) AS oldest FROM jobs \
         WHERE state = 'queued' GROUP BY label_key ORDER BY MIN(queued), label_key",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push((
            r.try_get("label_key")?,
            r.try_get("n")?,
            r.try_get("oldest")?,
        ));
    }
    Ok(out)
}

/// The oldest queued jobs: (id, project, label key, queued ms), oldest first.
pub async fn queued_jobs(
    pool: &Pool,
    limit: i64,
) -> Result<Vec<(String, String, String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, project, label_key, queued FROM jobs WHERE state = 'queued' \
         ORDER BY queued, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push((
            r.try_get("id")?,
            r.try_get("project")?,
            r.try_get("label_key")?,
            r.try_get("queued")?,
        ));
    }
    Ok(out)
}

// ---- delivery metrics (crate::pool::dora) ------------------------------------------

/// Records the GitOps pull requests a job reported (repository lower case, number, URL);
/// one already recorded is left alone.
pub async fn record_deploy_prs(
    conn: &mut Conn,
    job: &str,
    prs: &[(String, i64, String)],
    now: i64,
) -> Result<(), StoreError> {
    let mut tx = conn.begin().await?;
    for (repo, number, url) in prs {
        sqlx::query(
            "INSERT INTO deploy_prs (job_id, repo, number, url, reported) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(job)
        .bind(repo)
        .bind(number)
        .bind(url)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Merged GitOps pull requests and the jobs that reported them, of one project or all,
/// for jobs created in `[since, before)`.
pub async fn dora_deployments(
    pool: &Pool,
    project: Option<&str>,
    since: i64,
    before: i64,
) -> Result<Vec<super::DeployRow>, StoreError> {
    let sql = format!(
        "SELECT j.project, d.job_id, d.repo, d.number, d.url, d.reported, m.merged_at, \
         j.commit_time FROM deploy_prs d \
         JOIN merged_prs m ON LOWER(m.repo) = d.repo AND m.number = d.number \
         JOIN jobs j ON j.id = d.job_id WHERE j.created >= $1 AND j.created < $2{} \
         ORDER BY j.project, d.repo, d.number, d.job_id",
        if project.is_some() { " AND j.project = $3" } else { "" }
    );
    let mut q = sqlx::query(&sql).bind(since).bind(before);
    if let Some(p) = project {
        q = q.bind(p);
    }
    let rows = q.fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(super::DeployRow {
            project: r.try_get("project")?,
            job: r.try_get("job_id")?,
            repo: r.try_get("repo")?,
            number: r.try_get("number")?,
            url: r.try_get("url")?,
            reported_ms: r.try_get("reported")?,
            merged_at: r.try_get("merged_at")?,
            commit_ms: r.try_get("commit_time")?,
        });
    }
    Ok(out)
}

/// The main line's finished builds (finished in `[since, before)`) and the revert
/// commits' jobs (created in `[since, before)`) of one project or all: (project, state,
/// finished ms, created ms, change kind).
pub async fn dora_builds(
    pool: &Pool,
    project: Option<&str>,
    since: i64,
    before: i64,
) -> Result<Vec<(String, String, Option<i64>, i64, String)>, StoreError> {
    let sql = format!(
        "SELECT project, state, finished, created, change_kind FROM jobs \
         WHERE change_kind <> 'side' AND ((finished >= $1 AND finished < $2 \
         AND state IN ('succeeded', 'failed')) OR (change_kind = 'revert' \
         AND created >= $1 AND created < $2)){} ORDER BY project, created",
        if project.is_some() { " AND project = $3" } else { "" }
    );
    let mut q = sqlx::query_as(&sql).bind(since).bind(before);
    if let Some(p) = project {
        q = q.bind(p);
    }
    Ok(q.fetch_all(pool).await?)
}

// ---- the web page's sign-in sessions (crate::pool::server::web; migration 9) ----

/// `hash`: SHA-256 of the session id the cookie holds (the id itself is never stored);
/// `token_hash`, `token_name`: the token it was signed in with (the session dies with it).
const WEB_SESSION_DDL: &str = "CREATE TABLE web_sessions (hash TEXT PRIMARY KEY NOT NULL, \
         role TEXT NOT NULL, token_hash TEXT NOT NULL, token_name TEXT NOT NULL, \
         csrf TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT NOT NULL); \
     CREATE INDEX web_sessions_expires ON web_sessions (expires); \
     CREATE INDEX web_sessions_token ON web_sessions (token_hash)";

/// Deletes the sessions expired at `now`, then stores a new one signed in with the token
/// whose hash is `token_hash` (its role and name from the token's row): the role, or
/// `None` (nothing stored) when no such token exists.
pub async fn create_web_session(
    conn: &mut Conn,
    hash: &str,
    token_hash: &str,
    csrf: &str,
    now: i64,
    expires: i64,
) -> Result<Option<String>, StoreError> {
    sqlx::query("DELETE FROM web_sessions WHERE expires <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let role: Option<String> = sqlx::query_scalar(
        "INSERT INTO web_sessions (hash, role, token_hash, token_name, csrf, created, expires) \
         SELECT $1, role, hash, name, $3, $4, $5 FROM tokens WHERE hash = $2 RETURNING role",
    )
    .bind(hash)
    .bind(token_hash)
    .bind(csrf)
    .bind(now)
    .bind(expires)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(role)
}

/// The session whose id hashes to `hash` if it has not expired at `now` and its token
/// still exists: (role, CSRF token, expiry ms).
pub async fn find_web_session(
    pool: &Pool,
    hash: &str,
    now: i64,
) -> Result<Option<(String, String, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT s.role, s.csrf, s.expires FROM web_sessions s \
         JOIN tokens t ON t.hash = s.token_hash WHERE s.hash = $1 AND s.expires > $2",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(pool)
    .await?)
}

/// Deletes a session (sign-out): whether it existed.
pub async fn delete_web_session(conn: &mut Conn, hash: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query("DELETE FROM web_sessions WHERE hash = $1")
        .bind(hash)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        > 0)
}

// ---- token listing and revocation (`runner server token list|revoke`) ----

/// Every token: hash, role, name, created (oldest first).
pub async fn list_tokens(pool: &Pool) -> Result<Vec<(String, String, String, i64)>, StoreError> {
    let rows: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT hash, role, name, created FROM tokens ORDER BY created, hash")
            .fetch_all(pool)
            .await?;
    Ok(rows)
}

/// Deletes the tokens whose hash is in `hashes`, and their web sessions; how many tokens
/// went.
pub async fn revoke_tokens(conn: &mut Conn, hashes: &str) -> Result<u64, StoreError> {
    let mut tx = conn.begin().await?;
    let mut gone = 0;
    for hash in hashes.split(',').filter(|h| !h.is_empty()) {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        gone += sqlx::query("DELETE FROM tokens WHERE hash = $1")
            .bind(hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(gone)
}
