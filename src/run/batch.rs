//! Batch builds (`build-list`, `build-graph`, `build-matrix`, `build-fanout`): each task is
//! its own build in its own container; graph order is respected; `fast-fail` stops the
//! rest when a task that may not fail fails.

use super::build::{run_build, RunOptions};
use super::cancel::{Cancel, CancelReason, Canceller};
use crate::docker::DockerEngine;
use crate::event::{BatchEntry, BatchSummary, BuildStatus, Event, Level, Reporter};
use crate::plan::BuildPlan;
use std::collections::HashMap;
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

/// Runs the tasks; returns how each planned build ended, in the order of `tasks` (a
/// build never started has no status), and whether `cancel` stopped the batch.
pub async fn run_batch(
    engine: &DockerEngine,
    tasks: Vec<BatchTaskPlan>,
    batch: &BatchOptions,
    opts: &RunOptions,
    reporter: Arc<dyn Reporter>,
    mut cancel: Cancel,
) -> BatchSummary {
    let planned: Vec<(String, bool)> = tasks
        .iter()
        .map(|t| (t.identifier.clone(), t.ignore_failure))
        .collect();
    let (stop_all, stop_rx) = Canceller::new();
    let mut pending: Vec<BatchTaskPlan> = tasks;
    let mut done: HashMap<String, bool> = HashMap::new();
    let mut results = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    // Which batch task each spawned task runs (to account for one that panicked).
    let mut running_ids: HashMap<tokio::task::Id, String> = HashMap::new();
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
                    let reporter = Tagged {
                        id: t.identifier.clone(),
                        inner: reporter.clone(),
                    };
                    let cancel = stop_rx.clone();
                    let identifier = t.identifier.clone();
                    let handle = running.spawn(async move {
                        let r = run_build(&engine, &t.plan, &opts, &reporter, cancel).await;
                        (t.identifier, r, t.ignore_failure)
                    });
                    running_ids.insert(handle.id(), identifier);
                    continue;
                }
                i += 1;
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            // A stop request wins over a build that ended at the same moment, so a build
            // the user stopped is never taken for a failure that triggers fast-fail.
            biased;
            _ = cancel.cancelled(), if !stopping => {
                stopping = true;
                stop_all.cancel(CancelReason::Stopped);
            }
            joined = running.join_next_with_id() => {
                let Some(joined) = joined else { break };
                let (id, result, ignore) = match joined {
                    Ok((task, r)) => {
                        running_ids.remove(&task);
                        r
                    }
                    Err(e) => {
                        // The build's task panicked: its dependents must not wait for it.
                        if let Some(id) = running_ids.remove(&e.id()) {
                            reporter.event(&Event::Notice {
                                level: Level::Error,
                                message: format!("batch: {id}: the build ended abnormally: {e}"),
                            });
                            done.insert(id, false);
                        }
                        continue;
                    }
                };
                let ok = result.status == BuildStatus::Succeeded;
                done.insert(id.clone(), ok || ignore);
                // A STOPPED build was stopped by a request, not a failure of its own.
                let failed = !ok && result.status != BuildStatus::Stopped;
                if failed && !ignore && batch.fast_fail && !stopping {
                    stopping = true;
                    reporter.event(&Event::Notice {
                        level: Level::Warning,
                        message: format!("batch: {id} failed; fast-fail stops the other builds"),
                    });
                    stop_all.cancel(CancelReason::Stopped);
                }
                results.push((id, result.status));
            }
        }
    }
    let stopped_by_user = {
        use futures_util::FutureExt;
        cancel.cancelled().now_or_never().is_some()
    };
    let builds = planned
        .into_iter()
        .map(|(identifier, ignore_failure)| BatchEntry {
            status: results
                .iter()
                .find(|(id, _)| *id == identifier)
                .map(|(_, status)| *status),
            ignore_failure,
            identifier,
        })
        .collect();
    BatchSummary {
        builds,
        stopped_by_user,
    }
}

fn task_opts(opts: &RunOptions, identifier: &str) -> RunOptions {
    let mut o = opts.clone();
    o.artifacts_dir = opts.artifacts_dir.as_ref().map(|d| d.join(identifier));
    o
}

/// Prefixes the output lines and notices of one build of a batch with its identifier, so
/// the interleaved output of concurrent builds can be told apart (the structured events
/// carry `batch_identifier` themselves).
struct Tagged {
    id: String,
    inner: Arc<dyn Reporter>,
}

impl Reporter for Tagged {
    fn event(&self, event: &Event) {
        let tagged;
        let event = match event {
            Event::Log { stream, line } => {
                tagged = Event::Log {
                    stream: *stream,
                    line: format!("[{}] {line}", self.id),
                };
                &tagged
            }
            Event::Notice { level, message } => {
                tagged = Event::Notice {
                    level: *level,
                    message: format!("[{}] {message}", self.id),
                };
                &tagged
            }
            other => other,
        };
        self.inner.task_event(&self.id, event);
    }
}
