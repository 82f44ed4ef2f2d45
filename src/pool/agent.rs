//! `runner agent`: claims jobs from a `runner server` and runs them through the same
//! [`crate::pipeline`] as `runner build`.
//!
//! Per slot (`capacity` of them): long-poll a claim → a work directory
//! `<work root>/<job>-<attempt>/` → the source (an archive unpacked, or a git clone) →
//! [`pipeline::prepare`] / [`pipeline::execute`] with a reporter that ships every event
//! as a JSON line (as `runner build --json` prints it) to the server → artifacts uploaded →
//! the log flushed → `complete` → the work directory removed.
//!
//! Architecture invariants:
//! - Nothing leaves the agent unmasked: `execute` puts the shipping reporter behind the
//!   build's masker, and the events and errors of `prepare` (which runs before the build's
//!   masker exists) go through a masker of the agent's own secrets.
//! - A 409 (the lease is lost) on any call stops the build and every further call for
//!   that attempt: a zombie never completes a job.
//! - A drain drops the claim long-poll at once (an idle agent stops promptly); a claim
//!   answered after the agent began draining is released at once, and one the server
//!   committed as the agent stopped is never confirmed, so it is queued again within
//!   its unconfirmed lease: shutdown never leaves a job assigned to nobody. A claim is
//!   confirmed (a heartbeat) before anything else happens to it.

use super::archive;
use super::client::{ClientError, PoolClient};
use super::protocol::{
    Assignment, Claim, Complete, Conclusion, LogAppend, SourceSpec, MAX_WAIT_SECS,
};
use crate::event::{Event, Level, Reporter, SharedReporter};
use crate::pipeline::{self, BuildRequest, Outcome, Verdict};
use crate::report::MaskingReporter;
use crate::run::{CancelReason, Canceller};
use crate::secrets::Masker;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// A log chunk is sent once it holds this much …
pub const CHUNK_BYTES: usize = 256 * 1024;
/// … or its first line is this old.
pub const CHUNK_DELAY: Duration = Duration::from_millis(250);

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The agent's name in the pool.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Jobs at once.
    pub capacity: usize,
    /// Work directories go under it (`<data dir>/agent`).
    pub work_root: PathBuf,
    /// The settings every job's build starts from (cache, credentials, secrets file,
    /// image, data directory); the job fills in source, buildspec, project, env, timeout
    /// and the artifacts directory.
    pub template: BuildRequest,
    /// How long a claim waits on the server (≤ 30 s).
    pub claim_wait_secs: u64,
}

/// Why the agent stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the server refuses this agent: {0}")]
    Refused(ClientError),
    #[error("cannot create the work directory {}: {source} (pass --data-dir to a writable directory)", path.display())]
    WorkRoot {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the agent tells its operator (the CLI prints one line each).
#[derive(Debug, Clone, PartialEq)]
pub enum AgentNote {
    Started {
        name: String,
        capacity: usize,
    },
    Claimed {
        job: String,
        attempt: u32,
    },
    Finished {
        job: String,
        attempt: u32,
        conclusion: Conclusion,
        exit_code: i32,
    },
    /// The lease was lost (409): the job was abandoned here.
    Lost {
        job: String,
        attempt: u32,
    },
    /// Given back to the queue (shutdown).
    Released {
        job: String,
        attempt: u32,
    },
    /// Something went wrong that the agent works around (server unreachable, …).
    Problem(String),
    Draining,
    Aborting,
}

impl std::fmt::Display for AgentNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentNote::Started { name, capacity } => {
                write!(f, "agent {name} waiting for jobs ({capacity} at once)")
            }
            AgentNote::Claimed { job, attempt } => {
                write!(f, "claimed job {job} attempt {attempt}")
            }
            AgentNote::Finished {
                job,
                attempt,
                conclusion,
                exit_code,
            } => write!(
                f,
                "finished job {job} attempt {attempt}: {} (exit {exit_code})",
                conclusion_str(*conclusion)
            ),
            AgentNote::Lost { job, attempt } => write!(
                f,
                "lost the lease of job {job} attempt {attempt}: abandoned here (it runs again elsewhere)"
            ),
            AgentNote::Released { job, attempt } => {
                write!(f, "released job {job} attempt {attempt} back to the queue")
            }
            AgentNote::Problem(p) => write!(f, "warning: {p}"),
            AgentNote::Draining => write!(
                f,
                "draining: finishing running jobs, taking no new one (signal again to cancel them)"
            ),
            AgentNote::Aborting => {
                write!(f, "cancelling running jobs and giving them back to the queue")
            }
        }
    }
}

fn conclusion_str(c: Conclusion) -> &'static str {
    match c {
        Conclusion::Succeeded => "succeeded",
        Conclusion::Failed => "failed",
        Conclusion::Cancelled => "cancelled",
        Conclusion::Error => "error",
    }
}

/// Receives the agent's notes.
pub type Notifier = Arc<dyn Fn(&AgentNote) + Send + Sync>;

/// How far shutdown has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    Run,
    /// Finish running jobs, take no new one.
    Drain,
    /// Cancel running jobs, ship their logs, release them.
    Abort,
}

/// The sending half: the CLI calls `drain` on the first signal, `abort` on the second.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<Stop>>);

/// The receiving half, given to [`run`].
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<Stop>);

impl StopHandle {
    pub fn new() -> (StopHandle, StopSignal) {
        let (tx, rx) = watch::channel(Stop::Run);
        (StopHandle(Arc::new(tx)), StopSignal(rx))
    }

    /// One step further: run → drain → abort.
    pub fn escalate(&self) -> Stop {
        let mut now = Stop::Run;
        self.0.send_modify(|s| {
            *s = match *s {
                Stop::Run => Stop::Drain,
                _ => Stop::Abort,
            };
            now = *s;
        });
        now
    }
}

impl StopSignal {
    pub fn get(&self) -> Stop {
        *self.0.borrow()
    }

    /// Resolves once shutdown has reached `level`.
    pub async fn reached(&mut self, level: Stop) {
        loop {
            if *self.0.borrow_and_update() >= level {
                return;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What the agent did before it stopped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentSummary {
    pub completed: u64,
    pub released: u64,
    pub lost: u64,
}

struct Ctx {
    client: PoolClient,
    config: AgentConfig,
    notify: Notifier,
    /// Masks the agent's own secrets in what `prepare` says.
    own_masker: Masker,
}

/// Runs the agent until `stop` reaches [`Stop::Drain`] and every slot is idle (or
/// [`Stop::Abort`] and every running job was given back).
pub async fn run(
    client: PoolClient,
    config: AgentConfig,
    stop: StopSignal,
    notify: Notifier,
) -> Result<AgentSummary, AgentError> {
    std::fs::create_dir_all(&config.work_root).map_err(|source| AgentError::WorkRoot {
        path: config.work_root.clone(),
        source,
    })?;
    let own_masker = Masker::new(
        config
            .template
            .credentials
            .masked
            .iter()
            .map(|(n, s)| (n.as_str(), s)),
    );
    let capacity = config.capacity.max(1);
    notify(&AgentNote::Started {
        name: config.name.clone(),
        capacity,
    });
    let ctx = Arc::new(Ctx {
        client,
        config,
        notify,
        own_masker,
    });
    // A fatal answer (bad token, wrong role) stops every slot.
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<ClientError>(capacity);
    let (slot_stop_tx, slot_stop) = StopHandle::new();
    // Slots are ordinary tasks: `pipeline::prepare`'s future is `Send`, so they run on
    // every worker thread.
    supervise(
        ctx,
        stop,
        capacity,
        slot_stop_tx,
        slot_stop,
        fatal_tx,
        &mut fatal_rx,
    )
    .await
}

async fn supervise(
    ctx: Arc<Ctx>,
    stop: StopSignal,
    capacity: usize,
    slot_stop_tx: StopHandle,
    slot_stop: StopSignal,
    fatal_tx: mpsc::Sender<ClientError>,
    fatal_rx: &mut mpsc::Receiver<ClientError>,
) -> Result<AgentSummary, AgentError> {
    let mut slots = tokio::task::JoinSet::new();
    for _ in 0..capacity {
        slots.spawn(slot(ctx.clone(), slot_stop.clone(), fatal_tx.clone()));
    }
    drop(fatal_tx);
    let mut stop = stop;
    let mut fatal = None;
    let mut summary = AgentSummary::default();
    let mut level = Stop::Run;
    let mut signals_open = true;
    loop {
        tokio::select! {
            joined = slots.join_next() => match joined {
                Some(Ok(s)) => {
                    summary.completed += s.completed;
                    summary.released += s.released;
                    summary.lost += s.lost;
                }
                Some(Err(e)) => (ctx.notify)(&AgentNote::Problem(format!("a job slot ended abnormally: {e}"))),
                None => break,
            },
            changed = stop.0.changed(), if level < Stop::Abort && signals_open => {
                if changed.is_err() {
                    signals_open = false;
                    continue;
                }
                let now = stop.get();
                while level < now {
                    level = slot_stop_tx.escalate();
                    (ctx.notify)(&if level == Stop::Drain { AgentNote::Draining } else { AgentNote::Aborting });
                }
            }
            Some(e) = fatal_rx.recv(), if fatal.is_none() => {
                fatal = Some(e);
                if level < Stop::Drain {
                    level = slot_stop_tx.escalate();
                }
            }
        }
    }
    match fatal {
        Some(e) => Err(AgentError::Refused(e)),
        None => Ok(summary),
    }
}

/// One slot: claims and runs jobs one after another until told to stop.
async fn slot(
    ctx: Arc<Ctx>,
    mut stop: StopSignal,
    fatal: mpsc::Sender<ClientError>,
) -> AgentSummary {
    let mut summary = AgentSummary::default();
    let claim = Claim {
        agent: ctx.config.name.clone(),
        labels: ctx.config.labels.clone(),
        wait_secs: ctx.config.claim_wait_secs.min(MAX_WAIT_SECS),
    };
    let mut failures = 0u32;
    while stop.get() == Stop::Run {
        // A drain drops the claim in flight at once: the server stops waiting when the
        // connection closes, and a claim it committed just before is never confirmed,
        // so it returns to the queue within the claim's short unconfirmed lease.
        let answer = tokio::select! {
            a = ctx.client.claim(&claim) => a,
            _ = stop.reached(Stop::Drain) => break,
        };
        match answer {
            Ok(Some(assignment)) => {
                failures = 0;
                if stop.get() != Stop::Run {
                    release(&ctx, &assignment).await;
                    summary.released += 1;
                    break;
                }
                if !confirm(&ctx, &assignment).await {
                    summary.lost += 1;
                    continue;
                }
                if stop.get() != Stop::Run {
                    release(&ctx, &assignment).await;
                    summary.released += 1;
                    break;
                }
                match run_job(&ctx, assignment, stop.clone()).await {
                    JobEnd::Completed => summary.completed += 1,
                    JobEnd::Released => summary.released += 1,
                    JobEnd::Lost => summary.lost += 1,
                }
            }
            Ok(None) => failures = 0,
            Err(e @ (ClientError::Unauthorized(_) | ClientError::Forbidden(_))) => {
                let _ = fatal.send(e).await;
                break;
            }
            Err(e @ ClientError::Refused { .. }) => {
                // 400: the server does not speak this protocol, or refuses the claim.
                let _ = fatal.send(e).await;
                break;
            }
            Err(e) => {
                failures += 1;
                (ctx.notify)(&AgentNote::Problem(format!("claim failed: {e}")));
                let delay = backoff(failures);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.reached(Stop::Drain) => break,
                }
            }
        }
    }
    summary
}

fn backoff(failures: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << failures.min(5));
    Duration::from_millis(ms.min(5000))
}

/// Confirms a fresh claim (a heartbeat) before its unconfirmed lease runs out; `false`
/// when the server no longer holds it for this agent (409: it was queued again).
/// Transient failures are retried within the confirm window; past it the build goes
/// ahead and the fence decides (a lost lease stops it at the next heartbeat).
async fn confirm(ctx: &Ctx, a: &Assignment) -> bool {
    let until = tokio::time::Instant::now() + Duration::from_secs(a.confirm_secs);
    let mut failures = 0;
    loop {
        match ctx.client.heartbeat(&a.job_id, a.attempt, &a.lease).await {
            Ok(_) => return true,
            Err(ClientError::Fenced(_)) => {
                (ctx.notify)(&AgentNote::Lost {
                    job: a.job_id.clone(),
                    attempt: a.attempt,
                });
                return false;
            }
            Err(e) => {
                failures += 1;
                let delay = backoff(failures);
                if tokio::time::Instant::now() + delay >= until {
                    (ctx.notify)(&AgentNote::Problem(format!(
                        "could not confirm job {} attempt {} ({e}); running it anyway",
                        a.job_id, a.attempt
                    )));
                    return true;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn release(ctx: &Ctx, a: &Assignment) {
    match ctx.client.release(&a.job_id, a.attempt, &a.lease).await {
        Ok(()) => (ctx.notify)(&AgentNote::Released {
            job: a.job_id.clone(),
            attempt: a.attempt,
        }),
        Err(e) => (ctx.notify)(&AgentNote::Problem(format!(
            "could not release job {} attempt {} ({e}); it returns to the queue when its lease expires",
            a.job_id, a.attempt
        ))),
    }
}

enum JobEnd {
    Completed,
    Released,
    Lost,
}

/// What is known about an attempt while it runs.
#[derive(Default)]
struct Flags {
    /// A 409: stop everything for this attempt.
    lost: AtomicBool,
    /// A user asked to cancel.
    cancel: AtomicBool,
}

async fn run_job(ctx: &Ctx, a: Assignment, stop: StopSignal) -> JobEnd {
    (ctx.notify)(&AgentNote::Claimed {
        job: a.job_id.clone(),
        attempt: a.attempt,
    });
    let flags = Arc::new(Flags::default());
    let (canceller, cancel) = Canceller::new();
    let keeper_done = Arc::new(tokio::sync::Notify::new());
    let keeper = tokio::spawn(keep_lease(
        ctx.client.clone(),
        a.clone(),
        flags.clone(),
        canceller.clone(),
        stop.clone(),
        keeper_done.clone(),
        ctx.notify.clone(),
    ));
    let (shipper, ship_task) = Shipper::start(ctx.client.clone(), &a, flags.clone());
    let reporter: SharedReporter = Arc::new(MaskingReporter::new(
        ctx.own_masker.clone(),
        Arc::new(shipper.reporter()),
    ));
    reporter.event(&Event::Notice {
        level: Level::Info,
        message: format!(
            "agent {}: job {} attempt {}",
            ctx.config.name, a.job_id, a.attempt
        ),
    });

    let work = ctx.config.work_root.join(format!(
        "{}-{}",
        crate::datadir::safe_name(&a.job_id),
        a.attempt
    ));
    let result = build(ctx, &a, &work, reporter.clone(), cancel, &flags).await;
    let aborted = stop.get() == Stop::Abort;
    let (mut conclusion, exit_code, mut message) = result;
    if flags.cancel.load(Ordering::SeqCst) && !aborted {
        conclusion = Conclusion::Cancelled;
    }

    let end = if flags.lost.load(Ordering::SeqCst) {
        shipper.abandon();
        JobEnd::Lost
    } else if aborted && conclusion != Conclusion::Succeeded && conclusion != Conclusion::Failed {
        // Stopped by the second signal: ship the log, give the job back.
        reporter.event(&Event::Notice {
            level: Level::Warning,
            message: format!(
                "agent {} is shutting down: this attempt is given back to the queue",
                ctx.config.name
            ),
        });
        let _ = shipper.finish(ship_task).await;
        release(ctx, &a).await;
        JobEnd::Released
    } else {
        if let Err(e) = upload_artifacts(ctx, &a, &work.join("artifacts"), reporter.as_ref()).await
        {
            match e {
                ClientError::Fenced(_) => flags.lost.store(true, Ordering::SeqCst),
                e => {
                    let m = format!("artifacts were not all uploaded: {e}");
                    reporter.event(&Event::Notice {
                        level: Level::Error,
                        message: m.clone(),
                    });
                    message.get_or_insert(m);
                    if conclusion == Conclusion::Succeeded {
                        conclusion = Conclusion::Error;
                    }
                }
            }
        }
        drop(reporter);
        match shipper.finish(ship_task).await {
            Some(chunks) if !flags.lost.load(Ordering::SeqCst) => {
                let exit_code = match conclusion {
                    Conclusion::Cancelled => 130,
                    Conclusion::Error if exit_code == 0 => 2,
                    _ => exit_code,
                };
                let complete = Complete {
                    lease: a.lease.clone(),
                    conclusion,
                    exit_code,
                    message: message.map(|m| ctx.own_masker.mask(&m).into_owned()),
                    log_chunks: chunks,
                };
                if complete_job(ctx, &a, &complete, &flags).await {
                    (ctx.notify)(&AgentNote::Finished {
                        job: a.job_id.clone(),
                        attempt: a.attempt,
                        conclusion,
                        exit_code,
                    });
                    JobEnd::Completed
                } else {
                    JobEnd::Lost
                }
            }
            _ => JobEnd::Lost,
        }
    };
    if matches!(end, JobEnd::Lost) {
        (ctx.notify)(&AgentNote::Lost {
            job: a.job_id.clone(),
            attempt: a.attempt,
        });
    }
    keeper_done.notify_one();
    let _ = keeper.await;
    let w = work.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(w)).await;
    end
}

/// Completes the attempt, trying again until the server answers (200) or refuses (409).
async fn complete_job(ctx: &Ctx, a: &Assignment, complete: &Complete, flags: &Flags) -> bool {
    let mut failures = 0;
    loop {
        match ctx.client.complete(&a.job_id, a.attempt, complete).await {
            Ok(_) => return true,
            Err(ClientError::Fenced(_)) => {
                flags.lost.store(true, Ordering::SeqCst);
                return false;
            }
            Err(e) if e.is_transient() && !flags.lost.load(Ordering::SeqCst) => {
                failures += 1;
                (ctx.notify)(&AgentNote::Problem(format!(
                    "completing job {} failed: {e}; trying again",
                    a.job_id
                )));
                tokio::time::sleep(backoff(failures)).await;
            }
            Err(e) => {
                (ctx.notify)(&AgentNote::Problem(format!(
                    "the server refused to complete job {}: {e}",
                    a.job_id
                )));
                return false;
            }
        }
    }
}

/// Source, prepare, execute: the conclusion, exit code and message.
async fn build(
    ctx: &Ctx,
    a: &Assignment,
    work: &Path,
    reporter: SharedReporter,
    cancel: crate::run::Cancel,
    flags: &Flags,
) -> (Conclusion, i32, Option<String>) {
    let setup_error = |m: String| {
        let m = ctx.own_masker.mask(&m).into_owned();
        reporter.event(&Event::Notice {
            level: Level::Error,
            message: m.clone(),
        });
        (Conclusion::Error, 2, Some(m))
    };
    let src = work.join("src");
    if let Err(e) = fresh_dir(work).await {
        return setup_error(format!(
            "cannot create the work directory {}: {e}",
            work.display()
        ));
    }
    if let Err(m) = fetch_source(&ctx.client, &a.source, &src).await {
        return setup_error(m);
    }
    let request = match job_request(&ctx.config, a, &src, &work.join("artifacts")) {
        Ok(r) => r,
        Err(m) => return setup_error(m),
    };
    let prepared = match pipeline::prepare(request, reporter.as_ref()).await {
        Ok(p) => p,
        Err(e) => return setup_error(e.to_string()),
    };
    if flags.cancel.load(Ordering::SeqCst) || flags.lost.load(Ordering::SeqCst) {
        return (Conclusion::Cancelled, 130, None);
    }
    let outcome = pipeline::execute(prepared, reporter.clone(), cancel).await;
    if let Outcome::ScanFailed(e) = &outcome {
        return setup_error(e.to_string());
    }
    match outcome.verdict() {
        Verdict::Succeeded => (Conclusion::Succeeded, 0, None),
        Verdict::Failed => (Conclusion::Failed, 1, None),
        Verdict::Fault => (
            Conclusion::Error,
            3,
            Some("FAULT: the runner or the Docker engine broke during the build".into()),
        ),
        Verdict::Stopped => (Conclusion::Cancelled, 130, None),
        Verdict::NotStarted => (Conclusion::Error, 2, None),
    }
}

async fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&d)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Puts the job's source in `dest` (which must not exist yet).
async fn fetch_source(client: &PoolClient, source: &SourceSpec, dest: &Path) -> Result<(), String> {
    match source {
        SourceSpec::Archive { sha256 } => {
            let bytes = client
                .agent_blob(sha256)
                .await
                .map_err(|e| format!("cannot download the source archive: {e}"))?;
            if archive::sha256_hex(&bytes) != *sha256 {
                return Err(format!(
                    "the source archive downloaded is not {sha256} (its SHA-256 differs); the job's source is corrupt"
                ));
            }
            let dest = dest.to_path_buf();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dest)
                    .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
                archive::unpack(&bytes, &dest, archive::Limits::default())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("unpacking the source ended abnormally: {e}"))?
        }
        SourceSpec::Git { url, revision } => git_checkout(url, revision, dest).await,
    }
}

/// `git clone --no-checkout URL dest && git checkout --detach REV`.
async fn git_checkout(url: &str, revision: &str, dest: &Path) -> Result<(), String> {
    if url.starts_with('-') || revision.starts_with('-') {
        return Err("git source: the URL and revision may not start with `-`".into());
    }
    let run = |args: Vec<&std::ffi::OsStr>, cwd: Option<&Path>| {
        let mut c = tokio::process::Command::new("git");
        c.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        c.output()
    };
    let out = run(
        vec![
            "clone".as_ref(),
            "--quiet".as_ref(),
            "--no-checkout".as_ref(),
            "--".as_ref(),
            url.as_ref(),
            dest.as_os_str(),
        ],
        None,
    )
    .await
    .map_err(|e| format!("cannot run git (is it installed on the agent?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git clone {url} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let out = run(
        vec![
            "checkout".as_ref(),
            "--quiet".as_ref(),
            "--detach".as_ref(),
            revision.as_ref(),
            "--".as_ref(),
        ],
        Some(dest),
    )
    .await
    .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git checkout {revision} failed: {} (is the revision pushed to {url}?)",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The job's build request: the agent's template with the job's fields.
fn job_request(
    config: &AgentConfig,
    a: &Assignment,
    src: &Path,
    artifacts: &Path,
) -> Result<BuildRequest, String> {
    let mut req = config.template.clone();
    req.source = src.to_path_buf();
    req.buildspec = match &a.buildspec {
        Some(b) => Some(src.join(inside_path(b).ok_or_else(|| {
            format!("buildspec `{b}` must be a relative path inside the source")
        })?)),
        None => None,
    };
    req.project = Some(a.project.clone());
    // The server numbers the project's builds; an older server's 0 leaves it to the
    // data directory.
    req.build_number = (a.build_number > 0).then_some(a.build_number);
    req.env.extend(a.env.iter().cloned());
    if let Some(trigger) = &a.trigger {
        // Only the webhook's own variables: a trigger never overrides runner's others.
        req.trigger_variables = trigger
            .variables
            .iter()
            .filter(|(k, _)| {
                k.starts_with("CODEBUILD_WEBHOOK_") || k.as_str() == "CODEBUILD_SOURCE_VERSION"
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        req.untrusted = trigger.untrusted;
    }
    if let Some(t) = a.timeout_minutes {
        req.timeout_minutes = Some(f64::from(t));
    }
    req.artifacts = Some(artifacts.to_path_buf());
    req.zip = false;
    req.batch = None;
    req.initiator = format!("runner-agent/{}", config.name);
    Ok(req)
}

/// `p` when it is relative and stays inside (no `..`, no root).
fn inside_path(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| path.to_path_buf())
}

/// Every file under `dir`, as (`a/b/c` name, path), sorted.
fn artifact_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e.path().strip_prefix(dir).ok()?;
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_str())
                .collect::<Option<Vec<_>>>()?
                .join("/");
            Some((name, e.path().to_path_buf()))
        })
        .collect();
    files.sort();
    files
}

async fn upload_artifacts(
    ctx: &Ctx,
    a: &Assignment,
    dir: &Path,
    reporter: &dyn Reporter,
) -> Result<(), ClientError> {
    let d = dir.to_path_buf();
    let files = tokio::task::spawn_blocking(move || artifact_files(&d))
        .await
        .unwrap_or_default();
    let mut bytes_total = 0u64;
    for (name, path) in &files {
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) => {
                reporter.event(&Event::Notice {
                    level: Level::Warning,
                    message: format!("artifact {name} not uploaded: cannot read it: {e}"),
                });
                continue;
            }
        };
        bytes_total += bytes.len() as u64;
        ctx.client
            .put_artifact(&a.job_id, a.attempt, &a.lease, name, bytes.into())
            .await?;
    }
    if !files.is_empty() {
        reporter.event(&Event::Notice {
            level: Level::Info,
            message: format!(
                "uploaded {} artifact file(s), {bytes_total} bytes",
                files.len()
            ),
        });
    }
    Ok(())
}

/// Keeps the lease (heartbeat every lease/3) and watches for a cancel (long poll);
/// a 409 or a cancel stops the build; an abort of the agent stops it too.
async fn keep_lease(
    client: PoolClient,
    a: Assignment,
    flags: Arc<Flags>,
    canceller: Canceller,
    mut stop: StopSignal,
    done: Arc<tokio::sync::Notify>,
    notify: Notifier,
) {
    let every = Duration::from_secs((a.lease_secs / 3).max(1));
    let heartbeats = async {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match client.heartbeat(&a.job_id, a.attempt, &a.lease).await {
                Ok(hb) if hb.cancel => return false,
                Ok(_) => {}
                Err(ClientError::Fenced(_)) => return true,
                Err(e) => notify(&AgentNote::Problem(format!(
                    "heartbeat for job {} failed: {e}",
                    a.job_id
                ))),
            }
        }
    };
    let watch = async {
        let mut failures = 0;
        loop {
            match client
                .watch(&a.job_id, a.attempt, &a.lease, MAX_WAIT_SECS - 5)
                .await
            {
                Ok(hb) if hb.cancel => return false,
                Ok(_) => failures = 0,
                Err(ClientError::Fenced(_)) => return true,
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    };
    tokio::select! {
        lost = heartbeats => stop_build(lost, &flags, &canceller),
        lost = watch => stop_build(lost, &flags, &canceller),
        _ = stop.reached(Stop::Abort) => {
            canceller.cancel(CancelReason::Stopped);
            // Keep the lease while the log is shipped and the job released.
            tokio::select! {
                _ = done.notified() => {}
                lost = async {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tick.tick().await;
                        if let Err(ClientError::Fenced(_)) = client.heartbeat(&a.job_id, a.attempt, &a.lease).await {
                            return true;
                        }
                    }
                } => stop_build(lost, &flags, &canceller),
            }
            return;
        }
        _ = done.notified() => return,
    }
    // Keep nothing running past the attempt's end.
    done.notified().await;
}

fn stop_build(lost: bool, flags: &Flags, canceller: &Canceller) {
    if lost {
        flags.lost.store(true, Ordering::SeqCst);
    } else {
        flags.cancel.store(true, Ordering::SeqCst);
    }
    canceller.cancel(CancelReason::Stopped);
}

/// Ships the attempt's events to the server in order, in chunks.
struct Shipper {
    tx: mpsc::UnboundedSender<ShipMsg>,
}

enum ShipMsg {
    Line(String),
    /// Flush and answer with the number of chunks sent (`None`: the lease is lost).
    Finish(oneshot::Sender<Option<u64>>),
    /// Drop everything: the lease is lost.
    Abandon,
}

/// The reporter half: one JSON line per event, as `runner build --json` prints it.
struct ShipReporter {
    tx: mpsc::UnboundedSender<ShipMsg>,
}

impl Reporter for ShipReporter {
    fn event(&self, event: &Event) {
        if let Some(line) = event_line(event) {
            let _ = self.tx.send(ShipMsg::Line(line));
        }
    }
}

/// `{"time": …, "event": …, …}` for one event (diagnostics included: in a job's log they
/// are the only place a buildspec error shows).
pub fn event_line(event: &Event) -> Option<String> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) else {
        return None;
    };
    let mut obj = serde_json::Map::new();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    obj.insert("time".into(), serde_json::Value::String(now));
    obj.extend(fields);
    serde_json::to_string(&obj).ok()
}

impl Shipper {
    fn start(
        client: PoolClient,
        a: &Assignment,
        flags: Arc<Flags>,
    ) -> (Shipper, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = ChunkSink {
            client,
            job: a.job_id.clone(),
            attempt: a.attempt,
            lease: a.lease.clone(),
            flags,
        };
        let task = tokio::spawn(ship(rx, sink));
        (Shipper { tx }, task)
    }

    fn reporter(&self) -> ShipReporter {
        ShipReporter {
            tx: self.tx.clone(),
        }
    }

    /// Sends what is left; the number of chunks, or `None` when the lease was lost.
    async fn finish(self, task: tokio::task::JoinHandle<()>) -> Option<u64> {
        let (reply, answer) = oneshot::channel();
        let _ = self.tx.send(ShipMsg::Finish(reply));
        let n = answer.await.ok().flatten();
        let _ = task.await;
        n
    }

    fn abandon(self) {
        let _ = self.tx.send(ShipMsg::Abandon);
    }
}

/// Where chunks go (the server, or a test's recorder).
trait Sink: Send {
    /// Appends chunk `seq`; `false` when the lease is lost.
    fn append(&mut self, seq: u64, data: String) -> impl std::future::Future<Output = bool> + Send;
}

struct ChunkSink {
    client: PoolClient,
    job: String,
    attempt: u32,
    lease: String,
    flags: Arc<Flags>,
}

impl Sink for ChunkSink {
    async fn append(&mut self, seq: u64, data: String) -> bool {
        let append = LogAppend {
            lease: self.lease.clone(),
            seq,
            data,
        };
        let mut failures = 0;
        loop {
            if self.flags.lost.load(Ordering::SeqCst) {
                return false;
            }
            match self
                .client
                .append_log(&self.job, self.attempt, &append)
                .await
            {
                Ok(()) => return true,
                Err(ClientError::Fenced(_)) => {
                    self.flags.lost.store(true, Ordering::SeqCst);
                    return false;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!("log append {seq} of job {} failed: {e}", self.job);
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }
}

async fn ship(mut rx: mpsc::UnboundedReceiver<ShipMsg>, mut sink: impl Sink) {
    let mut buf = String::new();
    let mut seq = 0u64;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut lost = false;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                if !lost && !sink.append(seq, std::mem::take(&mut buf)).await {
                    lost = true;
                }
                seq += 1;
                deadline = None;
                continue;
            }
        };
        match msg {
            Some(ShipMsg::Line(line)) => {
                if lost {
                    continue;
                }
                if !buf.is_empty() && buf.len() + line.len() + 1 > CHUNK_BYTES {
                    if !sink.append(seq, std::mem::take(&mut buf)).await {
                        lost = true;
                    }
                    seq += 1;
                    deadline = None;
                }
                if buf.is_empty() {
                    deadline = Some(tokio::time::Instant::now() + CHUNK_DELAY);
                }
                buf.push_str(&line);
                buf.push('\n');
            }
            Some(ShipMsg::Finish(reply)) => {
                if !lost && !buf.is_empty() {
                    if sink.append(seq, std::mem::take(&mut buf)).await {
                        seq += 1;
                    } else {
                        lost = true;
                    }
                }
                let _ = reply.send((!lost).then_some(seq));
                return;
            }
            Some(ShipMsg::Abandon) | None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<(u64, String)>>>, Option<u64>);

    impl Sink for Recorded {
        async fn append(&mut self, seq: u64, data: String) -> bool {
            if Some(seq) == self.1 {
                return false;
            }
            self.0.lock().unwrap().push((seq, data));
            true
        }
    }

    fn line(n: usize, len: usize) -> String {
        format!("{n:06}{}", "x".repeat(len.saturating_sub(6)))
    }

    /// Waits (up to 10 s) until the recorder holds `n` chunks.
    async fn chunks(rec: &Recorded, n: usize) {
        for _ in 0..1000 {
            if rec.0.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} chunks were sent");
    }

    #[tokio::test]
    async fn chunks_are_cut_by_size_and_age_in_order_with_nothing_lost() {
        let rec = Recorded::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ship(rx, rec.clone()));
        // 3 big lines: the third does not fit in the first chunk.
        for n in 0..3 {
            tx.send(ShipMsg::Line(line(n, 100 * 1024))).unwrap();
        }
        chunks(&rec, 1).await;
        // No more lines and no finish: the pending line still goes out once it is old.
        chunks(&rec, 2).await;
        tx.send(ShipMsg::Line(line(3, 10))).unwrap();
        let (reply, answer) = oneshot::channel();
        tx.send(ShipMsg::Finish(reply)).unwrap();
        let sent = answer.await.unwrap();
        task.await.unwrap();
        let got = rec.0.lock().unwrap().clone();
        assert_eq!(sent, Some(got.len() as u64));
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            (0..got.len() as u64).collect::<Vec<_>>()
        );
        let first: Vec<&str> = got[0].1.lines().map(|l| &l[..6]).collect();
        assert_eq!(first, vec!["000000", "000001"]);
        let all: Vec<String> = got
            .iter()
            .flat_map(|(_, d)| d.lines().map(|l| l[..6].to_string()))
            .collect();
        assert_eq!(all, vec!["000000", "000001", "000002", "000003"]);
        for (_, d) in &got {
            assert!(d.len() <= CHUNK_BYTES, "{}", d.len());
        }
    }

    #[tokio::test]
    async fn a_lost_lease_stops_shipping_and_finish_says_so() {
        let rec = Recorded(Default::default(), Some(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ship(rx, rec.clone()));
        tx.send(ShipMsg::Line("a".into())).unwrap();
        tx.send(ShipMsg::Line("b".into())).unwrap();
        let (reply, answer) = oneshot::channel();
        tx.send(ShipMsg::Finish(reply)).unwrap();
        assert_eq!(answer.await.unwrap(), None);
        task.await.unwrap();
        assert!(rec.0.lock().unwrap().is_empty());
    }

    #[test]
    fn event_lines_are_runner_build_json() {
        let l = event_line(&Event::Log {
            stream: crate::event::Stream::Stdout,
            line: "hi".into(),
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "log");
        assert_eq!(v["line"], "hi");
        assert!(v["time"].as_str().unwrap().contains('T'));
        let d = event_line(&Event::Diagnostic(crate::event::Diagnostic::general(
            Level::Error,
            "bad",
        )))
        .unwrap();
        assert!(d.contains("\"event\":\"diagnostic\""), "{d}");
    }

    #[test]
    fn buildspec_paths_stay_inside_the_source() {
        assert_eq!(inside_path("ci/b.yml"), Some(PathBuf::from("ci/b.yml")));
        assert_eq!(inside_path("./b.yml"), Some(PathBuf::from("./b.yml")));
        for bad in ["", "/etc/passwd", "../b.yml", "a/../../b"] {
            assert_eq!(inside_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn artifact_names_are_relative_slash_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("out/sub")).unwrap();
        std::fs::write(d.path().join("out/sub/a.txt"), "a").unwrap();
        std::fs::write(d.path().join("b.bin"), "b").unwrap();
        let names: Vec<String> = artifact_files(d.path()).into_iter().map(|f| f.0).collect();
        assert_eq!(names, vec!["b.bin", "out/sub/a.txt"]);
    }

    #[test]
    fn the_stop_signal_escalates_once_per_call() {
        let (h, s) = StopHandle::new();
        assert_eq!(s.get(), Stop::Run);
        assert_eq!(h.escalate(), Stop::Drain);
        assert_eq!(h.escalate(), Stop::Abort);
        assert_eq!(h.escalate(), Stop::Abort);
        assert_eq!(s.get(), Stop::Abort);
    }

    fn assignment(buildspec: Option<&str>) -> Assignment {
        Assignment {
            job_id: "j".into(),
            attempt: 2,
            lease: "l".into(),
            lease_secs: 30,
            confirm_secs: 10,
            source: SourceSpec::Archive {
                sha256: "0".repeat(64),
            },
            buildspec: buildspec.map(str::to_string),
            project: "p".into(),
            build_number: 7,
            env: vec!["B=2".into()],
            timeout_minutes: Some(5),
            trigger: None,
        }
    }

    #[test]
    fn a_trigger_sets_only_webhook_variables_and_untrusted() {
        let mut a = assignment(None);
        let mut variables = BTreeMap::new();
        variables.insert("CODEBUILD_WEBHOOK_EVENT".to_string(), "PUSH".to_string());
        variables.insert("CODEBUILD_SOURCE_VERSION".to_string(), "pr/3".to_string());
        variables.insert("CODEBUILD_BUILD_ID".to_string(), "forged".to_string());
        a.trigger = Some(crate::pool::protocol::Trigger {
            variables,
            untrusted: true,
        });
        let config = AgentConfig {
            name: "a1".into(),
            labels: BTreeMap::new(),
            capacity: 1,
            work_root: "/data/agent".into(),
            template: BuildRequest::new("/nowhere", "/data"),
            claim_wait_secs: 30,
        };
        let r = job_request(&config, &a, Path::new("/src"), Path::new("/art")).unwrap();
        assert!(r.untrusted);
        assert_eq!(
            r.trigger_variables,
            vec![
                ("CODEBUILD_SOURCE_VERSION".to_string(), "pr/3".to_string()),
                ("CODEBUILD_WEBHOOK_EVENT".to_string(), "PUSH".to_string()),
            ]
        );
    }

    #[test]
    fn a_job_fills_in_the_agents_template() {
        let mut template = BuildRequest::new("/nowhere", "/data");
        template.env = vec!["A=1".into()];
        template.zip = true;
        let config = AgentConfig {
            name: "a1".into(),
            labels: BTreeMap::new(),
            capacity: 1,
            work_root: "/data/agent".into(),
            template,
            claim_wait_secs: 30,
        };
        let src = Path::new("/w/src");
        let r = job_request(
            &config,
            &assignment(Some("ci/b.yml")),
            src,
            Path::new("/w/a"),
        )
        .unwrap();
        assert_eq!(r.source, src);
        assert_eq!(r.buildspec, Some(PathBuf::from("/w/src/ci/b.yml")));
        assert_eq!(r.env, vec!["A=1", "B=2"]);
        assert_eq!(r.project.as_deref(), Some("p"));
        assert_eq!(r.build_number, Some(7));
        assert_eq!(r.timeout_minutes, Some(5.0));
        assert_eq!(r.artifacts, Some(PathBuf::from("/w/a")));
        assert!(!r.zip);
        assert_eq!(r.data_dir, PathBuf::from("/data"));
        assert!(job_request(
            &config,
            &assignment(Some("../x.yml")),
            src,
            Path::new("/w/a")
        )
        .is_err());
    }
}
