//! Delivery metrics (DORA's four keys) from the server's own records. Pure: the store
//! edge (`crate::pool::store`) collects a project's [`History`]; this module turns it
//! into the four figures over a window `[from, to)` ([`figures`]) or per bucket of the
//! window ([`series`], the web page's charts). No IO, no clock, no panics on any input.
//!
//! Definitions (after Google's Four Keys), for one project and a window `[from, to)`
//! (milliseconds since the epoch):
//!
//! - **Deployment**: a GitOps pull request a build of the project opened (its job
//!   reported the pull request's URL) that was merged (GitHub's `pull_request` `closed`
//!   delivery with `merged: true`). Its time is the merge. Deployments merged at or after
//!   `to` do not exist yet for this window.
//! - **Deployment frequency**: the deployments merged in `[from, to)`; also given per
//!   day (`deployments / ((to - from) / 1 day)`).
//! - **Lead time for changes**: the median, over the changes of the deployments in the
//!   window, of `merge time - commit time` (a change is a build whose pull request the
//!   deployment merged, with its commit's time; one whose commit time is unknown is left
//!   out; one committed after the merge counts as 0).
//! - **Failure of a deployment**: the first failure event at or after its merge and
//!   before the next deployment's merge (or `to`): a failed build of the project that is
//!   not a pull request's or a side branch's (at its finish), or a revert commit built
//!   for the project (when its job was created).
//! - **Change failure rate**: deployments in the window with a failure / deployments in
//!   the window (none when there were no deployments).
//! - **Time to restore**: an incident starts at the failure of a deployment that follows
//!   a deployment without one (or no deployment), lasts through the failed deployments
//!   after it and ends at the merge of the next deployment without a failure (the next
//!   successful deployment). The median of `end - start` over the incidents that started
//!   in the window and ended before `to`; incidents still open are counted apart.
//!
//! A median of an even count is the mean of the two middle values. Durations are given
//! in seconds (milliseconds / 1000).

pub mod chart;

use serde::{Deserialize, Serialize};

/// One change a deployment carries: the build whose GitOps pull request was merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub job: String,
    /// When its commit was made (ms), when known.
    pub commit_ms: Option<i64>,
}

/// A merged GitOps pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The pull request's URL (as the job reported it).
    pub pr: String,
    /// When the job reported the pull request (ms): about when it was opened.
    pub opened_ms: Option<i64>,
    pub merged_ms: i64,
    pub changes: Vec<Change>,
}

/// A finished build of the project's main line (not a pull request's, not a side
/// branch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build {
    pub finished_ms: i64,
    pub failed: bool,
}

/// What happened on one project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub deployments: Vec<Deployment>,
    pub builds: Vec<Build>,
    /// When each revert commit's job was created (ms).
    pub reverts: Vec<i64>,
}

/// A window `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

const DAY_MS: f64 = 86_400_000.0;

/// The four figures over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Deployments merged in the window.
    pub deployments: u64,
    /// `deployments` per day of the window.
    pub deployments_per_day: f64,
    /// Median commit → merge over the window's deployments' changes, in seconds.
    pub lead_time_seconds: Option<f64>,
    /// Changes with a known commit time (the lead time's sample).
    pub changes: u64,
    /// Deployments in the window followed by a failure before the next one.
    pub failed_deployments: u64,
    /// `failed_deployments / deployments`.
    pub change_failure_rate: Option<f64>,
    /// Median failure → next successful deployment, in seconds.
    pub time_to_restore_seconds: Option<f64>,
    /// Incidents that started in the window and were restored before its end.
    pub restored: u64,
    /// Incidents that started in the window and were not restored by its end.
    pub unrestored: u64,
}

/// The median of `v` (sorted here), `None` when empty.
fn median_ms(v: &mut [i64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
    };
    Some(m / 1000.0)
}

/// The four figures of `history` over `window`. An empty or inverted window has none.
pub fn figures(history: &History, window: Window) -> Figures {
    let Window { from_ms, to_ms } = window;
    if to_ms <= from_ms {
        return Figures::default();
    }
    let mut deps: Vec<&Deployment> = history
        .deployments
        .iter()
        .filter(|d| d.merged_ms < to_ms)
        .collect();
    deps.sort_by(|a, b| a.merged_ms.cmp(&b.merged_ms).then_with(|| a.pr.cmp(&b.pr)));
    let mut failures: Vec<i64> = history
        .builds
        .iter()
        .filter(|b| b.failed)
        .map(|b| b.finished_ms)
        .chain(history.reverts.iter().copied())
        .filter(|t| *t < to_ms)
        .collect();
    failures.sort_unstable();
    // The first failure of each deployment: at or after its merge, before the next's.
    let failure: Vec<Option<i64>> = deps
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let next = deps.get(i + 1).map_or(to_ms, |n| n.merged_ms);
            let first = failures.partition_point(|t| *t < d.merged_ms);
            failures.get(first).copied().filter(|t| *t < next)
        })
        .collect();
    let in_window = |d: &Deployment| d.merged_ms >= from_ms && d.merged_ms < to_ms;

    let mut out = Figures::default();
    let mut lead: Vec<i64> = Vec::new();
    for (i, d) in deps.iter().enumerate() {
        if !in_window(d) {
            continue;
        }
        out.deployments += 1;
        if failure[i].is_some() {
            out.failed_deployments += 1;
        }
        for c in &d.changes {
            if let Some(at) = c.commit_ms {
                lead.push(d.merged_ms.saturating_sub(at).max(0));
            }
        }
    }
    out.changes = lead.len() as u64;
    out.lead_time_seconds = median_ms(&mut lead);
    out.deployments_per_day = out.deployments as f64 / ((to_ms - from_ms) as f64 / DAY_MS);
    if out.deployments > 0 {
        out.change_failure_rate = Some(out.failed_deployments as f64 / out.deployments as f64);
    }

    // Incidents: a run of failed deployments, from the first one's failure to the merge
    // of the next deployment without a failure.
    let mut restore: Vec<i64> = Vec::new();
    let mut i = 0;
    while i < deps.len() {
        let Some(start) = failure[i] else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < deps.len() && failure[j].is_some() {
            j += 1;
        }
        if start >= from_ms && start < to_ms {
            match deps.get(j) {
                Some(fix) => restore.push(fix.merged_ms.saturating_sub(start).max(0)),
                None => out.unrestored += 1,
            }
        }
        i = j;
    }
    out.restored = restore.len() as u64;
    out.time_to_restore_seconds = median_ms(&mut restore);
    out
}

/// One bucket of a [`series`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub window: Window,
    pub figures: Figures,
}

/// The figures of each `bucket_ms`-long bucket of `window`, oldest first, counted back
/// from its end (so the oldest may be shorter). At most 1,000 buckets (a longer series is
/// cut at its start).
pub fn series(history: &History, window: Window, bucket_ms: i64) -> Vec<Bucket> {
    let mut out = Vec::new();
    if bucket_ms <= 0 || window.to_ms <= window.from_ms {
        return out;
    }
    let span = window.to_ms - window.from_ms;
    let n = (span / bucket_ms + i64::from(span % bucket_ms != 0)).min(1000);
    for k in (0..n).rev() {
        let to_ms = window.to_ms - k * bucket_ms;
        let from_ms = to_ms.saturating_sub(bucket_ms).max(window.from_ms);
        let w = Window { from_ms, to_ms };
        out.push(Bucket {
            window: w,
            figures: figures(history, w),
        });
    }
    out
}

/// A pull request's repository (`owner/name`, lower case) and number, read from its URL:
/// GitHub's `…/OWNER/NAME/pull/N`, Gitea's `…/pulls/N`, GitLab's `…/-/merge_requests/N`.
pub fn pull_request_key(url: &str) -> Option<(String, i64)> {
    let rest = url
        .trim()
        .strip_prefix("https://")
        .or_else(|| url.trim().strip_prefix("http://"))?;
    let path = rest.split(['?', '#']).next()?;
    let segs: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    let at = segs
        .iter()
        .position(|s| matches!(*s, "pull" | "pulls" | "merge_requests"))?;
    let number: i64 = segs.get(at + 1)?.parse().ok().filter(|n| *n > 0)?;
    let repo: Vec<&str> = segs[..at].iter().copied().filter(|s| *s != "-").collect();
    if repo.len() < 2 {
        return None;
    }
    Some((repo.join("/").to_ascii_lowercase(), number))
}

/// The GitOps pull requests a log chunk (the agent's JSON-line events) reports: each
/// successful `gitops` stage's `detail.pull_request.url`.
pub fn reported_pull_requests(chunk: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !chunk.contains("\"gitops\"") {
        return out;
    }
    for raw in chunk.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
            continue;
        };
        let is = |k: &str, want: &str| v.get(k).and_then(|x| x.as_str()) == Some(want);
        if !(is("event", "stage") && is("stage", "gitops")) {
            continue;
        }
        if v.get("ok").and_then(|x| x.as_bool()) != Some(true) {
            continue;
        }
        if let Some(url) = v
            .get("detail")
            .and_then(|d| d.get("pull_request"))
            .and_then(|p| p.get("url"))
            .and_then(|u| u.as_str())
        {
            out.push(url.to_string());
        }
    }
    out
}

/// Whether a commit message is a revert (`git revert`'s `Revert "…"`, or a conventional
/// `revert:` subject).
pub fn is_revert_message(message: &str) -> bool {
    let subject = message.lines().next().unwrap_or("").trim_start();
    subject.starts_with("Revert \"") || subject.to_ascii_lowercase().starts_with("revert:")
}

/// A span of time as `30d`, `2w`, `12h` or `90m` in milliseconds (positive, at most
/// 100 years), or `None`.
pub fn parse_span(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s.get(..s.len() - unit.len_utf8())?.parse().ok()?;
    let ms = match unit {
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    };
    let span = n.checked_mul(ms)?;
    (span > 0 && span <= 100 * 366 * 86_400_000).then_some(span)
}

/// Seconds as `3d 04h`, `2h 05m`, `4m 10s` or `12s`.
pub fn human_span(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs > 0.0 && secs < 1.0 {
        // Under a second (a fast restore): whole milliseconds, not a misleading "0s".
        return format!("{}ms", ((secs * 1000.0).round() as u64).max(1));
    }
    let s = secs.round() as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {:02}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// Prometheus gauges of each project's figures over `window` (a figure without data,
/// such as a lead time without deployments, is left out).
pub fn prometheus(window: Window, projects: &[(String, Figures)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let secs = (window.to_ms - window.from_ms) as f64 / 1000.0;
    let _ = writeln!(
        out,
        "# HELP runner_dora_window_seconds The window the delivery metrics cover (it ends now)."
    );
    let _ = writeln!(out, "# TYPE runner_dora_window_seconds gauge");
    let _ = writeln!(out, "runner_dora_window_seconds {secs}");
    type Get = fn(&Figures) -> Option<f64>;
    let gauges: [(&str, &str, Get); 6] = [
        (
            "runner_dora_deployments",
            "GitOps pull requests merged in the window, per project.",
            |f| Some(f.deployments as f64),
        ),
        (
            "runner_dora_deployments_per_day",
            "Deployment frequency: deployments per day of the window, per project.",
            |f| Some(f.deployments_per_day),
        ),
        (
            "runner_dora_lead_time_seconds",
            "Lead time for changes: median commit to deployment pull request merged, per project.",
            |f| f.lead_time_seconds,
        ),
        (
            "runner_dora_failed_deployments",
            "Deployments in the window followed by a failed main-line build or a revert before the next one.",
            |f| Some(f.failed_deployments as f64),
        ),
        (
            "runner_dora_change_failure_rate",
            "Change failure rate: failed deployments / deployments, per project.",
            |f| f.change_failure_rate,
        ),
        (
            "runner_dora_time_to_restore_seconds",
            "Time to restore: median failure to the next successful deployment, per project.",
            |f| f.time_to_restore_seconds,
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (project, f) in projects {
            if let Some(v) = get(f) {
                let p = project
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = writeln!(out, "{name}{{project=\"{p}\"}} {v}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
