//! Batch builds (`build-list`, `build-graph`, `build-matrix`, `build-fanout`): each task is
//! its own build in its own container; graph order is respected; `fast-fail` stops the
//! rest when a task that may not fail fails.

use super::build::{run_build, RunOptions};
use super::cancel::{Cancel, CancelReason, Canceller};
use crate::docker::DockerEngine;
use crate::event::{BuildResult, BuildStatus, Event, Level, Reporter};
use crate::plan::BuildPlan;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct BatchTaskPlan {
    pub identifier: String,
    pub plan: BuildPlan,
    pub depend_on: Vec<String>,
    pub ignore_failure: bool,
}

#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub fast_fail: bool,
    /// How many builds run at once.
    pub concurrency: usize,
}

/// Runs the tasks; returns each task's result (tasks never started are absent).
pub async fn run_batch(
    engine: &DockerEngine,
    tasks: Vec<BatchTaskPlan>,
    batch: &BatchOptions,
    opts: &RunOptions,
    reporter: Arc<dyn Reporter>,
    mut cancel: Cancel,
) -> Vec<(String, BuildResult, bool)> {
    let (stop_all, stop_rx) = Canceller::new();
    let mut pending: Vec<BatchTaskPlan> = tasks;
    let mut done: HashMap<String, bool> = HashMap::new();
    let mut results = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    let mut running_ids: HashSet<String> = HashSet::new();
    let mut stopping = false;
    loop {
        if !stopping {
            // Start every task whose dependencies succeeded, up to the concurrency limit.
            let mut i = 0;
            while i < pending.len() && running.len() < batch.concurrency.max(1) {
                let deps_ok = pending[i]
                    .depend_on
                    .iter()
                    .all(|d| done.get(d) == Some(&true));
                let deps_failed = pending[i]
                    .depend_on
                    .iter()
                    .any(|d| done.get(d) == Some(&false));
                if deps_failed {
                    let t = pending.remove(i);
                    reporter.event(&Event::Notice {
                        level: Level::Warning,
                        message: format!(
                            "batch: {} not started: a build it depends on failed",
                            t.identifier
                        ),
                    });
                    done.insert(t.identifier, false);
                    continue;
                }
                if deps_ok {
                    let t = pending.remove(i);
                    let engine = engine.clone();
                    let opts = task_opts(opts, &t.identifier);
                    let reporter = reporter.clone();
                    let cancel = stop_rx.clone();
                    running_ids.insert(t.identifier.clone());
                    running.spawn(async move {
                        let r = run_build(&engine, &t.plan, &opts, reporter.as_ref(), cancel).await;
                        (t.identifier, r, t.ignore_failure)
                    });
                    continue;
                }
                i += 1;
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                let Ok((id, result, ignore)) = joined else { continue };
                running_ids.remove(&id);
                let ok = result.status == BuildStatus::Succeeded;
                done.insert(id.clone(), ok || ignore);
                if !ok && !ignore && batch.fast_fail && !stopping {
                    stopping = true;
                    reporter.event(&Event::Notice {
                        level: Level::Warning,
                        message: format!("batch: {id} failed; fast-fail stops the other builds"),
                    });
                    stop_all.cancel(CancelReason::Stopped);
                }
                results.push((id, result, ignore));
            }
            _ = cancel.cancelled(), if !stopping => {
                stopping = true;
                stop_all.cancel(CancelReason::Stopped);
            }
        }
    }
    results
}

fn task_opts(opts: &RunOptions, identifier: &str) -> RunOptions {
    let mut o = opts.clone();
    o.artifacts_dir = opts.artifacts_dir.as_ref().map(|d| d.join(identifier));
    o
}
