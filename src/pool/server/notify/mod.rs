//! Notifications instead of polling: job state changes pushed to configured URLs, and a
//! server-sent event stream for scripts.
//!
//! The store records every change as a CloudEvents 1.0 event with one pending delivery
//! per receiver (see [`crate::pool::store::outbox`]). Here, one sender task per receiver
//! claims that receiver's due deliveries with a lease (so replicas sharing PostgreSQL
//! split the work and a replica that dies mid-delivery leaves the row to another after
//! the lease), POSTs the stored body, and settles the row: delivered on a 2xx answer,
//! else pending again after an exponential backoff with jitter, until `max_age` after
//! the event (then given up, logged). A receiver's slow answers, hangs (bounded by
//! `timeout`) and outages only hold its own task: jobs and other receivers go on.
//!
//! ```text
//! POST <receiver>   Content-Type: application/cloudevents+json
//!                   X-Runner-Signature-256: sha256=<hex HMAC-SHA256 of the body, key = secret>
//!                   X-Runner-Event-Id: <the event id: deduplicate on it>
//! GET /v1/events?project=   (submit token) server-sent events: `id:` the event's sequence
//!                           number (send it back as Last-Event-ID to resume), `event:` its
//!                           type, `data:` the CloudEvent
//! ```

use super::{auth, AppState, Res, St};
use crate::pool::protocol::Role;
use crate::pool::store::{new_lease_id, now_ms, OutboxConfig, Store};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Runner-Signature-256";
/// The header repeating the event id.
pub const EVENT_ID_HEADER: &str = "X-Runner-Event-Id";

/// Where and how job state changes are pushed (the CLI edge fills it).
#[derive(Clone, Default)]
pub struct NotifyConfig {
    /// Receiver URLs (http or https).
    pub receivers: Vec<String>,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: Option<String>,
    /// The server's URL as users reach it (links to job pages, the events' `source`).
    pub public_url: Option<String>,
    /// One delivery attempt's limit (connect + answer).
    pub timeout: Option<Duration>,
    /// The first retry's delay (doubled each time, with jitter, up to `max_backoff`).
    pub backoff: Option<Duration>,
    pub max_backoff: Option<Duration>,
    /// An event not delivered this long after it happened is given up.
    pub max_age: Option<Duration>,
    /// Delivered and given-up deliveries, and events with no delivery left (but those of
    /// jobs unfinished or finished within the last hour, which the start-up
    /// reconciliation would record again), are deleted this long after the event
    /// (default 7 days).
    pub retention: Option<Duration>,
    /// GitHub webhook delivery ids are kept this long (default 30 days), so a redelivery
    /// within it still creates nothing.
    pub webhook_retention: Option<Duration>,
}

/// How a failed delivery is tried again (notifications and commit statuses).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first retry's delay (doubled each time, with jitter, up to `max_backoff`).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A delivery not made this long after its event is given up.
    pub max_age: Duration,
}

impl NotifyConfig {
    /// The retry settings, defaults filled in.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff: self.backoff.unwrap_or(DEFAULT_BACKOFF),
            max_backoff: self.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF),
            max_age: self.max_age.unwrap_or(DEFAULT_MAX_AGE),
        }
    }
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("receivers", &self.receivers)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Jobs finished this long ago or less are reconciled at start-up.
const RECONCILE_WINDOW: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Settled outbox rows are kept this long.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Webhook delivery ids are kept this long: GitHub lets a delivery be redelivered (by
/// hand or through its API) for a few days (3, as documented), so a month covers that
/// and scripts that redeliver failed deliveries late, while the table stays bounded.
pub const DEFAULT_WEBHOOK_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often a replica runs the retention sweep.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Why notifications cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "--notify `{0}` is not an http(s) URL; pass a receiver such as https://ci.example/hook"
    )]
    BadUrl(String),
    #[error(
        "--notify needs --notify-secret (or RUNNER_NOTIFY_SECRET): deliveries are signed with it"
    )]
    NoSecret,
    #[error("cannot build the notification HTTP client: {0}")]
    Client(String),
}

pub use crate::pool::server::webhooks::signature::hmac_sha256;

/// The signature header's value: `sha256=<lower-case hex>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), body);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Whether `header` is the signature of `body` (constant time in the signature).
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let want = signature(secret, body);
    let (a, b) = (want.as_bytes(), header.trim().as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the configuration, records it in the store (new events get deliveries to the
/// receivers) and starts one sender per receiver; the tasks run until aborted.
pub fn start(
    store: &Store,
    config: &NotifyConfig,
) -> Result<Vec<tokio::task::JoinHandle<()>>, NotifyError> {
    for r in &config.receivers {
        match reqwest::Url::parse(r) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(NotifyError::BadUrl(r.clone())),
        }
    }
    let secret = match (&config.secret, config.receivers.is_empty()) {
        (Some(s), _) if !s.is_empty() => s.clone(),
        (_, true) => String::new(),
        (_, false) => return Err(NotifyError::NoSecret),
    };
    store.set_outbox(OutboxConfig {
        receivers: config.receivers.clone(),
        public_url: config
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
    });
    // Events of changes committed just before a crash (see Store::reconcile_outbox).
    let reconcile = store.clone();
    tokio::spawn(async move {
        match reconcile.reconcile_outbox(RECONCILE_WINDOW).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("recorded {n} job change notifications lost by a crash"),
            Err(e) => tracing::warn!("cannot reconcile the notification outbox: {e}"),
        }
    });
    let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let http = reqwest::Client::builder()
        .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| NotifyError::Client(e.to_string()))?;
    let retry = config.retry_policy();
    let sender = Sender {
        store: store.clone(),
        http,
        secret: Arc::new(secret),
        lease_for: timeout + Duration::from_secs(30),
        backoff: retry.backoff,
        max_backoff: retry.max_backoff,
        max_age: retry.max_age,
    };
    let mut tasks: Vec<_> = config
        .receivers
        .iter()
        .map(|r| tokio::spawn(sender.clone().run(r.clone())))
        .collect();
    tasks.push(tokio::spawn(prune(
        store.clone(),
        config.retention.unwrap_or(DEFAULT_RETENTION),
        config
            .webhook_retention
            .unwrap_or(DEFAULT_WEBHOOK_RETENTION),
    )));
    Ok(tasks)
}

/// The retention sweep, every [`PRUNE_EVERY`] (the first a random part of it after
/// start-up, so replicas started together do not sweep in step; sweeps are idempotent
/// `DELETE`s, so replicas running them at once only repeat each other's work).
async fn prune(store: Store, retention: Duration, webhooks: Duration) {
    tokio::time::sleep(PRUNE_EVERY.mul_f64(rand::random::<f64>())).await;
    loop {
        match store
            .prune(now_ms(), retention, webhooks, RECONCILE_WINDOW)
            .await
        {
            Ok(p) if p == Default::default() => {}
            Ok(p) => tracing::info!(
                deliveries = p.deliveries,
                events = p.events,
                webhook_deliveries = p.webhook_deliveries,
                "pruned old notification and webhook records"
            ),
            Err(e) => tracing::warn!("cannot prune old notification records: {e}"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

#[derive(Clone)]
struct Sender {
    store: Store,
    http: reqwest::Client,
    secret: Arc<String>,
    lease_for: Duration,
    backoff: Duration,
    max_backoff: Duration,
    max_age: Duration,
}

/// The delay before try `tries + 1`: `backoff * 2^(tries-1)` capped at `max`, then a
/// random point in its upper half (jitter: replicas and receivers do not retry in step).
pub(crate) fn retry_delay(backoff: Duration, max: Duration, tries: u32) -> Duration {
    let exp = backoff.saturating_mul(1u32 << tries.saturating_sub(1).min(20));
    let d = exp.min(max);
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}

impl Sender {
    async fn run(self, receiver: String) {
        loop {
            let lease = new_lease_id();
            match self
                .store
                .claim_delivery(&receiver, &lease, self.lease_for)
                .await
            {
                Ok(Some(d)) => self.deliver(&receiver, &lease, d).await,
                Ok(None) => self.store.outbox_wait(Duration::from_millis(500)).await,
                Err(e) => {
                    tracing::warn!(%receiver, "notifications: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn deliver(&self, receiver: &str, lease: &str, d: crate::pool::store::DueDelivery) {
        let sent = self
            .http
            .post(receiver)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/cloudevents+json; charset=utf-8",
            )
            .header(SIGNATURE_HEADER, signature(&self.secret, d.body.as_bytes()))
            .header(EVENT_ID_HEADER, &d.id)
            .body(d.body.clone())
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("it answered {}", r.status())),
            Err(e) => Some(error_chain(&e)),
        };
        super::metrics::observe_delivery(receiver, failure.is_none());
        let now = now_ms();
        let retry_at = match &failure {
            None => None,
            Some(why) => {
                let at =
                    now + retry_delay(self.backoff, self.max_backoff, d.tries).as_millis() as i64;
                if at - d.created_ms > self.max_age.as_millis() as i64 {
                    tracing::warn!(%receiver, event = %d.id, tries = d.tries,
                        "giving up on a notification: {why}");
                    None
                } else {
                    tracing::info!(%receiver, event = %d.id, tries = d.tries,
                        "notification not delivered, trying again: {why}");
                    Some(at)
                }
            }
        };
        if let Err(e) = self
            .store
            .settle_delivery(receiver, d.seq, lease, failure.is_none(), retry_at)
            .await
        {
            // The lease runs out and the delivery is tried again: at least once.
            tracing::warn!(%receiver, event = %d.id, "cannot record a notification's delivery: {e}");
        }
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

// ---- GET /v1/events ---------------------------------------------------------------

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/events", get(events))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    project: Option<String>,
    /// Start after this sequence number (as `Last-Event-ID`); default: from now on.
    after: Option<i64>,
}

/// How long after an event is recorded a stream still looks for events with a lower
/// `seq` (PostgreSQL: a sequence number can commit after a higher one).
const LATE_WINDOW_MS: i64 = 10_000;

struct Stream {
    store: Store,
    project: Option<String>,
    /// The highest `seq` sent (what `Last-Event-ID` resumes after).
    after: i64,
    /// PostgreSQL: every `seq` below this is settled; those above it already sent are in
    /// `sent` (with when they were recorded), so a late commit is sent, once.
    floor: i64,
    sent: std::collections::BTreeMap<i64, i64>,
    queue: VecDeque<SseEvent>,
}

impl Stream {
    fn push(&mut self, seq: i64, body: String, created: i64) {
        let kind = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(String::from))
            .unwrap_or_else(|| "message".into());
        self.after = self.after.max(seq);
        if self.store.is_postgres() {
            self.sent.insert(seq, created);
        }
        self.queue.push_back(
            SseEvent::default()
                .id(self.after.to_string())
                .event(kind)
                .data(body),
        );
    }

    /// Reads what is new; false when nothing was.
    async fn poll(&mut self) -> Result<bool, crate::pool::store::StoreError> {
        let project = self.project.clone();
        let mut any = false;
        if self.store.is_postgres() && self.floor < self.after {
            let late = self
                .store
                .events_between(self.floor, self.after, project.as_deref(), 1000)
                .await?;
            for (seq, body, created) in late {
                if !self.sent.contains_key(&seq) {
                    self.push(seq, body, created);
                    any = true;
                }
            }
            let settled = now_ms() - LATE_WINDOW_MS;
            while let Some((&seq, &created)) = self.sent.first_key_value() {
                if created >= settled {
                    break;
                }
                self.floor = self.floor.max(seq);
                self.sent.remove(&seq);
            }
        }
        let rows = self
            .store
            .events_between(self.after, i64::MAX, project.as_deref(), 200)
            .await?;
        for (seq, body, created) in rows {
            self.push(seq, body, created);
            any = true;
        }
        if !self.store.is_postgres() {
            self.floor = self.after;
        }
        Ok(any)
    }
}

async fn events(State(st): St, headers: HeaderMap, Query(q): Query<EventsQuery>) -> Res<Response> {
    auth(&st, &headers, Role::Submit).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = match resume.or(q.after) {
        Some(a) => a,
        None => st.store.last_event().await?,
    };
    let s = Stream {
        store: st.store.clone(),
        project: q.project.filter(|p| !p.is_empty()),
        after,
        floor: after,
        sent: Default::default(),
        queue: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if let Some(e) = s.queue.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(e), s));
            }
            match s.poll().await {
                Ok(true) => {}
                Ok(false) => s.store.outbox_wait(Duration::from_secs(1)).await,
                Err(e) => {
                    tracing::warn!("event stream: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than a block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_tampered_body_does_not_verify() {
        let sig = signature("s3cret", b"{\"a\":1}");
        assert!(verify("s3cret", b"{\"a\":1}", &sig));
        assert!(!verify("s3cret", b"{\"a\":2}", &sig));
        assert!(!verify("other", b"{\"a\":1}", &sig));
    }

    #[test]
    fn retries_back_off_with_jitter_up_to_the_cap() {
        let b = Duration::from_millis(500);
        let max = Duration::from_secs(60);
        for tries in 1..30 {
            let d = retry_delay(b, max, tries);
            let full = b.saturating_mul(1 << (tries - 1).min(20)).min(max);
            assert!(d >= full / 2 && d <= full, "try {tries}: {d:?}");
        }
    }
}
