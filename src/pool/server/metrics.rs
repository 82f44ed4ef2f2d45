//! `/metrics` in the Prometheus text format.

use crate::pool::store::{Counts, PendingDeliveries};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Lease expiries this process's reaper handled.
pub static LEASE_EXPIRIES: AtomicU64 = AtomicU64::new(0);

/// Notification and commit-status delivery tries this process made, per receiver:
/// (delivered, failed).
static DELIVERIES: Mutex<BTreeMap<String, (u64, u64)>> = Mutex::new(BTreeMap::new());

/// A delivery try to `receiver` (a notification URL or the commit-status receiver) ended:
/// `ok` = delivered.
pub fn observe_delivery(receiver: &str, ok: bool) {
    let mut map = DELIVERIES.lock().unwrap_or_else(|p| p.into_inner());
    let entry = map.entry(receiver.to_string()).or_default();
    if ok {
        entry.0 += 1;
    } else {
        entry.1 += 1;
    }
}

/// A receiver as a label: its URL without user information, query or fragment (where a
/// receiver's URL may carry a credential), escaped for the text format.
fn receiver_label(receiver: &str) -> String {
    let shown = match reqwest::Url::parse(receiver) {
        Ok(mut u) if u.has_host() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        _ => receiver.to_string(),
    };
    shown
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The notification outbox's series: delivery tries of this process per receiver and
/// outcome, and (from the store, every replica's) pending deliveries and the age of the
/// oldest, per receiver, as of `now_ms`.
pub fn render_outbox(pending: &[PendingDeliveries], now_ms: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP runner_notify_deliveries_total Notification and commit-status delivery tries this server made, per receiver and result (ok, failed)."
    );
    let _ = writeln!(out, "# TYPE runner_notify_deliveries_total counter");
    let tries: Vec<(String, (u64, u64))> = DELIVERIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(r, n)| (r.clone(), *n))
        .collect();
    for (receiver, (ok, failed)) in &tries {
        let r = receiver_label(receiver);
        let _ = writeln!(
            out,
            "runner_notify_deliveries_total{{receiver=\"{r}\",result=\"ok\"}} {ok}"
        );
        let _ = writeln!(
            out,
            "runner_notify_deliveries_total{{receiver=\"{r}\",result=\"failed\"}} {failed}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP runner_notify_pending Notifications and commit statuses waiting to be delivered, per receiver (all replicas)."
    );
    let _ = writeln!(out, "# TYPE runner_notify_pending gauge");
    for p in pending {
        let _ = writeln!(
            out,
            "runner_notify_pending{{receiver=\"{}\"}} {}",
            receiver_label(&p.receiver),
            p.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP runner_notify_oldest_pending_seconds Age of the oldest notification or commit status waiting to be delivered, per receiver."
    );
    let _ = writeln!(out, "# TYPE runner_notify_oldest_pending_seconds gauge");
    for p in pending {
        let age = (now_ms - p.oldest_ms).max(0) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "runner_notify_oldest_pending_seconds{{receiver=\"{}\"}} {age}",
            receiver_label(&p.receiver)
        );
    }
    out
}

/// Upper bounds of the pickup latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// This process's counters.
#[derive(Default)]
pub struct Metrics {
    /// Per bucket (non-cumulative), then +Inf.
    pickup: [AtomicU64; BUCKETS.len() + 1],
    pickup_sum_ms: AtomicU64,
    pickup_count: AtomicU64,
    /// Claims answered "no job" because the store was overloaded.
    shed: AtomicU64,
}

impl Metrics {
    /// A claim took a job `ms` after it was queued.
    pub fn observe_pickup(&self, ms: i64) {
        let ms = u64::try_from(ms.max(0)).unwrap_or(0);
        let secs = ms as f64 / 1000.0;
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.pickup[i].fetch_add(1, Ordering::Relaxed);
        self.pickup_sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.pickup_count.fetch_add(1, Ordering::Relaxed);
    }

    /// A claim was shed (answered 204 under overload, having taken nothing).
    pub fn observe_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, counts: &Counts, claims_waiting: usize, followers: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP runner_followers_waiting Log reads and cancel watches long-polling this server now."
        );
        let _ = writeln!(out, "# TYPE runner_followers_waiting gauge");
        let _ = writeln!(out, "runner_followers_waiting {followers}");
        let _ = writeln!(
            out,
            "# HELP runner_claims_waiting Agent claims long-polling this server now."
        );
        let _ = writeln!(out, "# TYPE runner_claims_waiting gauge");
        let _ = writeln!(out, "runner_claims_waiting {claims_waiting}");
        let _ = writeln!(
            out,
            "# HELP runner_claims_shed_total Claims answered \"no job\" because the job store was overloaded (they took nothing)."
        );
        let _ = writeln!(out, "# TYPE runner_claims_shed_total counter");
        let _ = writeln!(
            out,
            "runner_claims_shed_total {}",
            self.shed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP runner_queue_depth Jobs queued, per label set.");
        let _ = writeln!(out, "# TYPE runner_queue_depth gauge");
        for (key, n) in &counts.queued_by_key {
            let key = key.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "runner_queue_depth{{labels=\"{key}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP runner_jobs_running Jobs running on agents.");
        let _ = writeln!(out, "# TYPE runner_jobs_running gauge");
        let _ = writeln!(out, "runner_jobs_running {}", counts.running);
        let _ = writeln!(
            out,
            "# HELP runner_agents_online Agents that asked for work lately."
        );
        let _ = writeln!(out, "# TYPE runner_agents_online gauge");
        let _ = writeln!(out, "runner_agents_online {}", counts.agents_online);
        let _ = writeln!(
            out,
            "# HELP runner_lease_expiries_total Leases this server found expired (jobs requeued or failed)."
        );
        let _ = writeln!(out, "# TYPE runner_lease_expiries_total counter");
        let _ = writeln!(
            out,
            "runner_lease_expiries_total {}",
            LEASE_EXPIRIES.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP runner_pickup_latency_seconds From queued to claimed by an agent."
        );
        let _ = writeln!(out, "# TYPE runner_pickup_latency_seconds histogram");
        let mut cumulative = 0u64;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.pickup[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "runner_pickup_latency_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += self.pickup[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "runner_pickup_latency_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "runner_pickup_latency_seconds_sum {}",
            self.pickup_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "runner_pickup_latency_seconds_count {}",
            self.pickup_count.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_receivers_credentials_stay_out_of_its_label() {
        assert_eq!(
            receiver_label("https://user:pw@ci.example:8443/hook?token=abc#x"),
            "https://ci.example:8443/hook"
        );
        assert_eq!(receiver_label("github:statuses"), "github:statuses");
        assert_eq!(receiver_label("a\"b"), "a\\\"b");
    }

    #[test]
    fn pending_deliveries_show_depth_and_age() {
        observe_delivery("http://127.0.0.1:1/unit-hook", true);
        observe_delivery("http://127.0.0.1:1/unit-hook", false);
        observe_delivery("http://127.0.0.1:1/unit-hook", false);
        let text = render_outbox(
            &[PendingDeliveries {
                receiver: "http://127.0.0.1:1/unit-hook".into(),
                count: 3,
                oldest_ms: 1_000,
            }],
            3_500,
        );
        let r = "receiver=\"http://127.0.0.1:1/unit-hook\"";
        assert!(
            text.contains(&format!(
                "runner_notify_deliveries_total{{{r},result=\"ok\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "runner_notify_deliveries_total{{{r},result=\"failed\"}} 2"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("runner_notify_pending{{{r}}} 3")),
            "{text}"
        );
        assert!(
            text.contains(&format!("runner_notify_oldest_pending_seconds{{{r}}} 2.5")),
            "{text}"
        );
    }
}
