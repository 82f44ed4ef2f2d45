//! Pausing the queue: `GET /v1/queue`, `POST /v1/queue/pause|resume` (admin), and the
//! cache of the pauses the claim handler reads.
//!
//! The pauses live in the store (so every replica and a restarted server honour them);
//! each replica keeps them in a [`Pauses`] cache, read again when a change is announced
//! (`Notice::Paused`, through `NOTIFY` on PostgreSQL) and, as a safety net for a notice
//! lost with a `LISTEN` connection, every [`RECHECK`]. A claim leaves the label keys a
//! pause holds out of what it asks the store for and waits under the others only; a
//! change wakes every waiting claim, so a resume starts pickup at once.

use super::{auth, parse_json, AppState, Res, St};
use crate::pool::protocol::{
    label_key, PauseQueue, PauseView, QueueView, QueuedView, ResumeQueue, Role,
};
use crate::pool::store::pause::QueuePause;
use crate::pool::store::{self, Store, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// How long a replica goes without reading the pauses again when no notice comes (a
/// notice lost with a `LISTEN` connection is made good within this).
const RECHECK: Duration = Duration::from_secs(60);

/// The pauses in force, as this replica last read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PauseSet(pub Vec<QueuePause>);

impl PauseSet {
    /// Whether jobs queued under `key` are held.
    pub fn holds(&self, key: &str) -> bool {
        self.0.iter().any(|p| p.holds(key))
    }
}

/// This replica's cache of the pauses; a change is seen by every [`Pauses::subscribe`]r.
pub struct Pauses {
    /// `None` until first read.
    current: Arc<watch::Sender<Option<Arc<PauseSet>>>>,
    watching: AtomicBool,
}

impl Default for Pauses {
    fn default() -> Self {
        Pauses {
            current: Arc::new(watch::channel(None).0),
            watching: AtomicBool::new(false),
        }
    }
}

impl Pauses {
    /// The pauses (read from the store the first time, then kept up to date).
    pub async fn current(&self, store: &Store) -> Result<Arc<PauseSet>, StoreError> {
        if !self.watching.swap(true, Ordering::SeqCst) {
            tokio::spawn(watch_pauses(store.clone(), Arc::downgrade(&self.current)));
        }
        if let Some(p) = self.current.borrow().clone() {
            return Ok(p);
        }
        reload(store, &self.current).await
    }

    /// Reads the pauses again now (after this replica changed them).
    pub async fn reload(&self, store: &Store) -> Result<Arc<PauseSet>, StoreError> {
        reload(store, &self.current).await
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<PauseSet>>> {
        self.current.subscribe()
    }
}

async fn reload(
    store: &Store,
    current: &watch::Sender<Option<Arc<PauseSet>>>,
) -> Result<Arc<PauseSet>, StoreError> {
    let set = Arc::new(PauseSet(store.queue_pauses().await?));
    // Only a real change wakes the waiting claims.
    current.send_if_modified(|c| {
        if c.as_deref() == Some(&*set) {
            false
        } else {
            *c = Some(set.clone());
            true
        }
    });
    Ok(set)
}

/// Reads the pauses again on every `Notice::Paused` (any replica's) and after
/// [`RECHECK`] without one; ends when the server's state is gone.
async fn watch_pauses(store: Store, current: Weak<watch::Sender<Option<Arc<PauseSet>>>>) {
    let mut changes = store.hub().pause_changes();
    loop {
        let changed = tokio::time::timeout(RECHECK, changes.changed()).await;
        let Some(current) = current.upgrade() else {
            return;
        };
        if matches!(changed, Ok(Err(_))) {
            // The hub is gone.
            return;
        }
        if let Err(e) = reload(&store, &current).await {
            tracing::warn!("cannot read the queue's pauses: {e}");
        }
    }
}

/// The routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/queue", get(show))
        .route("/v1/queue/pause", post(pause))
        .route("/v1/queue/resume", post(resume))
}

/// The queue as the API and the page show it.
pub(super) async fn view(st: &AppState) -> Result<QueueView, StoreError> {
    let pauses = st.pauses.current(&st.store).await?;
    let now = store::now_ms();
    let queued = st
        .store
        .queued_groups()
        .await?
        .into_iter()
        .map(|g| QueuedView {
            labels: store::pause::key_labels(&g.key),
            count: u64::try_from(g.count).unwrap_or(0),
            oldest_age_secs: u64::try_from((now - g.oldest_ms) / 1000).unwrap_or(0),
            paused: pauses.holds(&g.key),
        })
        .collect();
    Ok(QueueView {
        pauses: pauses
            .0
            .iter()
            .map(|p| PauseView {
                labels: p.labels.clone(),
                since: store::rfc3339(p.since_ms),
            })
            .collect(),
        queued,
    })
}

async fn show(State(st): St, headers: HeaderMap) -> Res<Json<QueueView>> {
    auth(&st, &headers, Role::Submit).await?;
    Ok(Json(view(&st).await?))
}

/// A JSON body, or the default for an empty one.
fn body_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Res<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

async fn pause(
    State(st): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res<Json<QueueView>> {
    auth(&st, &headers, Role::Admin).await?;
    let req: PauseQueue = body_or_default(&body?)?;
    super::check_labels(&req.labels)?;
    pause_labels(&st, &req.labels).await?;
    Ok(Json(view(&st).await?))
}

async fn resume(
    State(st): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res<Json<QueueView>> {
    auth(&st, &headers, Role::Admin).await?;
    let req: ResumeQueue = body_or_default(&body?)?;
    if let Some(l) = &req.labels {
        super::check_labels(l)?;
    }
    resume_labels(&st, req.labels.as_ref()).await?;
    Ok(Json(view(&st).await?))
}

/// Pauses `labels` and makes this replica's claims honour it before answering.
pub(super) async fn pause_labels(
    st: &AppState,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), StoreError> {
    st.store.pause_queue(labels).await?;
    st.pauses.reload(&st.store).await?;
    tracing::info!(labels = %label_key(labels), "queue paused");
    Ok(())
}

/// Resumes `labels` (`None`: every pause); this replica's waiting claims look at once.
pub(super) async fn resume_labels(
    st: &AppState,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<(), StoreError> {
    st.store.resume_queue(labels).await?;
    st.pauses.reload(&st.store).await?;
    tracing::info!(
        labels = %labels.map(label_key).unwrap_or_else(|| "*".into()),
        "queue resumed"
    );
    Ok(())
}

/// The label keys an agent may claim now: its keys less those a pause holds.
pub(super) fn claimable(keys: &[String], pauses: &PauseSet) -> Vec<String> {
    keys.iter().filter(|k| !pauses.holds(k)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::protocol;
    use std::collections::BTreeMap;

    #[test]
    fn a_paused_label_set_is_left_out_of_the_claim() {
        let agent = protocol::parse_labels("os=linux,size=large").unwrap_or_default();
        let keys = protocol::claimable_keys(&agent);
        let none = PauseSet::default();
        assert_eq!(claimable(&keys, &none), keys);
        let large = PauseSet(vec![QueuePause {
            labels: store::pause::key_labels("size=large"),
            since_ms: 0,
        }]);
        assert_eq!(claimable(&keys, &large), vec!["", "os=linux"]);
        let all = PauseSet(vec![QueuePause {
            labels: BTreeMap::new(),
            since_ms: 0,
        }]);
        assert!(claimable(&keys, &all).is_empty());
    }
}
