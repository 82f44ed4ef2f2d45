//! Group commit for SQLite: one task owns the only writing connection and runs every
//! queued write operation (submit, claim, heartbeat, log append, completion, …) that is
//! waiting when it looks, all in one `BEGIN IMMEDIATE` transaction, each operation under
//! its own savepoint (so one refused operation does not undo the others). Every caller is
//! answered only after the batch's `COMMIT`: an acknowledged write is durable as the
//! connection's `synchronous` setting makes any commit (see `sqlite_ops::open`), and a
//! thousand waiting operations cost one commit instead of a thousand. An operation that
//! finds the writer idle runs alone, committing on its own (no batch transaction, no
//! savepoint), so a quiet server's latency is that of a plain transaction.
//!
//! A caller may give up before its operation has started (its budget ran out, or its
//! request was dropped): the writer then skips it, so it changed nothing. Once started, an
//! operation is always answered.

use super::StoreError;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers the caller once the batch's commit is known.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
type Op = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Finish> + Send>;

// A queued request's state, shared by this writer and PostgreSQL's batcher (pg_batch.rs):
// the task that runs it moves WAITING → TAKEN, a caller that goes away WAITING → ABANDONED;
// whichever comes first wins.
pub(super) const WAITING: u8 = 0;
pub(super) const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

/// The most operations in one transaction.
const MAX_BATCH: usize = 512;

struct Queued {
    op: Op,
    state: Arc<AtomicU8>,
}

/// The handle callers queue write operations on; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::UnboundedSender<Queued>,
}

/// Marks the request abandoned if the caller goes away before its task took it.
pub(super) struct Abandon(pub(super) Arc<AtomicU8>);

impl Abandon {
    /// True if the request will not run (it had not been taken).
    pub(super) fn abandon(&self) -> bool {
        self.0
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.abandon();
    }
}

fn gone() -> StoreError {
    StoreError::Busy("the job store's writer stopped before answering".into())
}

impl Writer {
    /// Starts the writer task on `conn`.
    pub fn start(conn: SqliteConnection) -> Writer {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_writer(conn, rx));
        Writer { queue }
    }

    /// Runs `f` in the next batch and answers its result after the commit. With a
    /// `budget`, an operation the writer has not started within it is dropped unrun and
    /// answered [`StoreError::Busy`].
    pub async fn run<T, F>(&self, budget: Option<Duration>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (tx, mut rx) = oneshot::channel::<Result<T, StoreError>>();
        let state = Arc::new(AtomicU8::new(WAITING));
        let op: Op = Box::new(move |conn: &mut SqliteConnection| {
            Box::pin(async move {
                let result = f(conn).await;
                let finish: Finish = Box::new(move |commit: Result<(), String>| {
                    let answer = match (result, commit) {
                        (Ok(v), Ok(())) => Ok(v),
                        (Err(e), _) => Err(e),
                        (Ok(_), Err(m)) => Err(StoreError::Commit(m)),
                    };
                    let _ = tx.send(answer);
                });
                finish
            }) as BoxFuture<'_, Finish>
        });
        let guard = Abandon(state.clone());
        self.queue.send(Queued { op, state }).map_err(|_| gone())?;
        let Some(budget) = budget else {
            return rx.await.map_err(|_| gone())?;
        };
        match tokio::time::timeout(budget, &mut rx).await {
            Ok(answer) => answer.map_err(|_| gone())?,
            Err(_) if guard.abandon() => Err(StoreError::Busy(format!(
                "the job store did not start this within {} ms",
                budget.as_millis()
            ))),
            // Started: it must be answered.
            Err(_) => rx.await.map_err(|_| gone())?,
        }
    }
}

async fn run_writer(mut conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        batch.retain(|q| q.state.load(Ordering::Acquire) == WAITING);
        if batch.is_empty() {
            continue;
        }
        if batch.len() == 1 {
            // Alone: no batch transaction, the operation commits on its own (one
            // statement, or its own BEGIN … COMMIT), so nothing waits on savepoints.
            for q in batch.drain(..) {
                if q.state
                    .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let finish = (q.op)(&mut conn).await;
                    finish(Ok(()));
                }
            }
            continue;
        }
        let mut tx = match conn.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(e) => {
                // Dropping the batch answers its callers `Busy`; they changed nothing.
                tracing::warn!("job store: cannot begin a write transaction: {e}");
                batch.clear();
                continue;
            }
        };
        let mut finishers: Vec<Finish> = Vec::with_capacity(batch.len());
        for q in batch.drain(..) {
            if q.state
                .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            finishers.push((q.op)(&mut tx).await);
        }
        let commit = tx.commit().await.map_err(|e| {
            tracing::warn!("job store: commit failed: {e}");
            e.to_string()
        });
        for f in finishers {
            f(commit.clone());
        }
    }
}
