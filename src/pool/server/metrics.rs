//! `/metrics` in the Prometheus text format.

use crate::pool::store::Counts;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lease expiries this process's reaper handled.
pub static LEASE_EXPIRIES: AtomicU64 = AtomicU64::new(0);

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
