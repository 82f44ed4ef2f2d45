//! `runner jobs list|show|logs|cancel|retry|watch|stats|artifacts|queue|pause|resume`: jobs
//! on a `runner server`. Also
//! the connection flags and the log follower `runner submit --wait` shares.

use super::exit::ExitStatus;
use crate::pool::client::{ClientError, PoolClient};
use crate::pool::protocol::{JobState, JobView, LogPage, MAX_WAIT_SECS};
use serde_json::Value;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Where the server is and the token to use.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// The server's URL
    #[arg(
        long,
        env = "RUNNER_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8420"
    )]
    pub server: String,
    /// The token (`runner server token create`); prefer RUNNER_TOKEN, which `ps` does not show
    #[arg(
        long,
        env = "RUNNER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: String,
}

impl Conn {
    pub fn client(&self) -> Result<PoolClient, ClientError> {
        PoolClient::new(&self.server, &self.token)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first
    List {
        #[command(flatten)]
        conn: Conn,
        /// Only jobs in this state (queued, running, succeeded, failed, cancelled, error)
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// A job's state, attempts and outcome
    Show {
        #[command(flatten)]
        conn: Conn,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A job's log (the current attempt's unless --attempt)
    Logs {
        #[command(flatten)]
        conn: Conn,
        id: String,
        /// Follow the log until the job ends (across attempts); exit with its exit code
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long, value_name = "N")]
        attempt: Option<u32>,
        /// The events as JSON lines (as `runner build --json` prints them)
        #[arg(long)]
        json: bool,
        /// Prefix every line (build output included) with the RFC 3339 time the agent
        /// recorded it
        #[arg(long, conflicts_with = "json")]
        timestamps: bool,
    },
    /// Ask for a job to be cancelled (a running build is stopped within seconds)
    Cancel {
        #[command(flatten)]
        conn: Conn,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a finished job again (a new attempt)
    Retry {
        #[command(flatten)]
        conn: Conn,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Print job state changes (queued, started, phase, finished) as they happen, from a
    /// server-sent event stream; reconnects after a dropped connection without missing any
    Watch {
        #[command(flatten)]
        conn: Conn,
        /// Only this project's jobs
        #[arg(long)]
        project: Option<String>,
        /// Each event as one line of JSON (a CloudEvent, as notification receivers get it)
        #[arg(long)]
        json: bool,
    },
    /// Delivery metrics per project over a window: deployment frequency, lead time for
    /// changes, change failure rate, time to restore (deployments are merged GitOps pull
    /// requests; see the README's "Delivery metrics")
    Stats {
        #[command(flatten)]
        conn: Conn,
        /// Only this project
        #[arg(long)]
        project: Option<String>,
        /// The window's length, ending at --to (or now): 30d, 2w, 12h, 90m
        #[arg(
            long,
            value_name = "SPAN",
            default_value = "30d",
            conflicts_with = "from"
        )]
        window: String,
        /// The window's start (RFC 3339)
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// The window's end, excluded (RFC 3339; default now)
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A job's artifacts, or download them
    Artifacts {
        #[command(flatten)]
        conn: Conn,
        id: String,
        /// Download every artifact into DIR (created if missing)
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The queue: pauses in force, queued jobs per label set and how long they waited
    Queue {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Stop agents from taking queued jobs (all, or those with --labels), on every
    /// replica; running jobs go on (admin token)
    Pause {
        #[command(flatten)]
        conn: Conn,
        /// Only jobs that have all these labels (KEY=VALUE,…)
        #[arg(long, value_name = "LABELS")]
        labels: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// End a pause (the one of --labels, else every pause); waiting agents take jobs at
    /// once (admin token)
    Resume {
        #[command(flatten)]
        conn: Conn,
        /// The pause of exactly these labels (KEY=VALUE,…)
        #[arg(long, value_name = "LABELS")]
        labels: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: JobsCommand) -> ExitStatus {
    match jobs(cmd).await {
        Ok(s) => s,
        Err(e) => client_error(&e),
    }
}

/// A client failure: `error: …`, exit 2.
pub(super) fn client_error(e: &ClientError) -> ExitStatus {
    eprintln!("error: {e}");
    ExitStatus::Setup
}

fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

async fn jobs(cmd: JobsCommand) -> Result<ExitStatus, ClientError> {
    match cmd {
        JobsCommand::List {
            conn,
            state,
            limit,
            json,
        } => {
            let list = conn.client()?.list(state.as_deref(), Some(limit)).await?;
            if json {
                print_json(&list);
            } else {
                println!(
                    "{:<28} {:<10} {:>7} {:>4}  {:<20} CREATED",
                    "ID", "STATE", "ATTEMPT", "EXIT", "PROJECT"
                );
                for j in &list.jobs {
                    println!(
                        "{:<28} {:<10} {:>7} {:>4}  {:<20} {}",
                        j.id,
                        j.state.as_str(),
                        j.attempt,
                        j.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                        j.project,
                        j.created_at
                    );
                }
            }
        }
        JobsCommand::Show { conn, id, json } => {
            let job = conn.client()?.job(&id).await?;
            if json {
                print_json(&job);
            } else {
                print_job(&job);
            }
        }
        JobsCommand::Logs {
            conn,
            id,
            follow: f,
            attempt,
            json,
            timestamps,
        } => {
            let client = conn.client()?;
            let job = follow(&client, &id, attempt, LogForm::new(json, timestamps), f).await?;
            if f {
                return Ok(job_exit(&job));
            }
        }
        JobsCommand::Cancel { conn, id, json } => {
            let job = conn.client()?.cancel(&id).await?;
            if json {
                print_json(&job);
            } else if job.state.is_final() {
                println!("job {} is {}", job.id, job.state.as_str());
            } else {
                println!("cancel requested for job {}", job.id);
            }
        }
        JobsCommand::Retry { conn, id, json } => {
            let job = conn.client()?.retry(&id).await?;
            if json {
                print_json(&job);
            } else {
                println!("job {} queued again", job.id);
            }
        }
        JobsCommand::Watch {
            conn,
            project,
            json,
        } => {
            watch(&conn.client()?, project.as_deref(), json).await?;
        }
        JobsCommand::Queue { conn, json } => return Ok(queue(&conn, None, json).await),
        JobsCommand::Pause { conn, labels, json } => {
            return Ok(queue(&conn, Some((true, labels)), json).await)
        }
        JobsCommand::Resume { conn, labels, json } => {
            return Ok(queue(&conn, Some((false, labels)), json).await)
        }
        JobsCommand::Stats {
            conn,
            project,
            window,
            from,
            to,
            json,
        } => {
            let window = from.is_none().then_some(window.as_str());
            let report = conn
                .client()?
                .stats(project.as_deref(), from.as_deref(), to.as_deref(), window)
                .await?;
            if json {
                print_json(&report);
            } else {
                print_stats(&report);
            }
        }
        JobsCommand::Artifacts {
            conn,
            id,
            download,
            json,
        } => {
            let client = conn.client()?;
            let list = client.artifacts(&id).await?;
            if json {
                print_json(&list);
            } else if download.is_none() {
                for a in &list.artifacts {
                    println!("{:>12}  {}  {}", a.size, a.sha256, a.name);
                }
            }
            if let Some(dir) = download {
                for a in &list.artifacts {
                    match download_one(&client, &id, &a.name, &a.sha256, &dir).await {
                        Ok(path) => {
                            if !json {
                                println!("{}", path.display());
                            }
                        }
                        Err(e) => {
                            eprintln!("error: {e}");
                            return Ok(ExitStatus::Setup);
                        }
                    }
                }
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// `runner jobs queue|pause|resume`: `change` is (pause?, --labels).
async fn queue(conn: &Conn, change: Option<(bool, Option<String>)>, json: bool) -> ExitStatus {
    let labels = match change.as_ref().and_then(|(_, l)| l.as_deref()) {
        None => None,
        Some(l) => match crate::pool::protocol::parse_labels(l) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitStatus::Setup;
            }
        },
    };
    let result = async {
        let client = conn.client()?;
        match change {
            None => client.queue().await,
            Some((true, _)) => {
                let req = crate::pool::protocol::PauseQueue {
                    labels: labels.unwrap_or_default(),
                };
                client.pause_queue(&req).await
            }
            Some((false, _)) => {
                let req = crate::pool::protocol::ResumeQueue { labels };
                client.resume_queue(&req).await
            }
        }
    }
    .await;
    let view = match result {
        Ok(v) => v,
        Err(e) => return client_error(&e),
    };
    if json {
        print_json(&view);
        return ExitStatus::Success;
    }
    let set = |l: &std::collections::BTreeMap<String, String>| {
        if l.is_empty() {
            "(every job)".to_string()
        } else {
            crate::pool::protocol::label_key(l)
        }
    };
    if view.pauses.is_empty() {
        println!("queue: running (no pause)");
    }
    for p in &view.pauses {
        println!("paused: {} since {}", set(&p.labels), p.since);
    }
    if view.queued.is_empty() {
        println!("no queued jobs");
    } else {
        println!("{:>6} {:>10}  {:<8} LABELS", "QUEUED", "OLDEST", "");
        for q in &view.queued {
            println!(
                "{:>6} {:>9}s  {:<8} {}",
                q.count,
                q.oldest_age_secs,
                if q.paused { "paused" } else { "" },
                if q.labels.is_empty() {
                    "(none)".to_string()
                } else {
                    crate::pool::protocol::label_key(&q.labels)
                }
            );
        }
    }
    ExitStatus::Success
}

fn print_stats(report: &crate::pool::protocol::StatsReport) {
    println!("delivery metrics from {} to {}", report.from, report.to);
    if report.projects.is_empty() {
        println!("no project has builds or deployments in this window");
        return;
    }
    println!(
        "{:<24} {:>11} {:>8} {:>12} {:>13} {:>15}",
        "PROJECT", "DEPLOYMENTS", "PER DAY", "LEAD TIME", "FAILURE RATE", "TIME TO RESTORE"
    );
    for p in &report.projects {
        let f = &p.figures;
        println!(
            "{:<24} {:>11} {:>8.2} {:>12} {:>13} {:>15}",
            p.project,
            f.deployments,
            f.deployments_per_day,
            f.lead_time_seconds
                .map(crate::pool::dora::human_span)
                .unwrap_or_else(|| "-".into()),
            f.change_failure_rate
                .map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
            f.time_to_restore_seconds
                .map(crate::pool::dora::human_span)
                .unwrap_or_else(|| "-".into()),
        );
    }
}

fn print_job(job: &JobView) {
    println!("job:       {}", job.id);
    println!("project:   {}", job.project);
    if job.build_number > 0 {
        println!("build:     #{}", job.build_number);
    }
    println!("state:     {}", job.state.as_str());
    if let Some(c) = job.exit_code {
        println!("exit code: {c}");
    }
    if let Some(m) = &job.message {
        println!("message:   {m}");
    }
    if !job.labels.is_empty() {
        println!(
            "labels:    {}",
            crate::pool::protocol::label_key(&job.labels)
        );
    }
    println!("created:   {}", job.created_at);
    if let Some(f) = &job.finished_at {
        println!("finished:  {f}");
    }
    if job.cancel_requested && !job.state.is_final() {
        println!("cancel requested");
    }
    if job.log_truncated {
        println!("log:       truncated at the server's limit");
    }
    println!("attempts:  {} of at most {}", job.attempt, job.max_attempts);
    for a in &job.attempts {
        println!(
            "  #{} on {} from {} to {}: {}",
            a.attempt,
            a.agent,
            a.started_at,
            a.ended_at.as_deref().unwrap_or("…"),
            a.outcome.as_deref().unwrap_or("running")
        );
    }
}

/// The exit code `runner build` would have given: the job's own, else by its state.
pub(super) fn job_exit(job: &JobView) -> ExitStatus {
    match (job.exit_code, job.state) {
        (Some(0), _) => ExitStatus::Success,
        (Some(1), _) => ExitStatus::Failed,
        (Some(3), _) => ExitStatus::Fault,
        (Some(130), _) => ExitStatus::Stopped,
        (Some(_), _) => ExitStatus::Setup,
        (None, JobState::Succeeded) => ExitStatus::Success,
        (None, JobState::Failed) => ExitStatus::Failed,
        (None, JobState::Cancelled) => ExitStatus::Stopped,
        (None, _) => ExitStatus::Setup,
    }
}

/// An artifact's name as a path under `dir` (refused when it would leave it).
fn artifact_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    let ok = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| dir.join(rel))
}

#[derive(Debug, thiserror::Error)]
enum DownloadError {
    #[error("artifact name `{0}` is not a relative path; not written")]
    BadName(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("download of {name} broke off: {detail}; try again")]
    Read { name: String, detail: String },
    #[error("{name}: downloaded content does not match its SHA-256; try again")]
    Digest { name: String },
}

async fn download_one(
    client: &PoolClient,
    id: &str,
    name: &str,
    sha256: &str,
    dir: &Path,
) -> Result<PathBuf, DownloadError> {
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncWriteExt;
    let path = artifact_path(dir, name).ok_or_else(|| DownloadError::BadName(name.into()))?;
    let werr = |source| DownloadError::Write {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(werr)?;
    }
    let mut resp = client.artifact(id, name).await?;
    let tmp = path.with_extension("part~");
    let mut file = tokio::fs::File::create(&tmp).await.map_err(werr)?;
    let mut hasher = Sha256::new();
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                hasher.update(&bytes);
                file.write_all(&bytes).await.map_err(werr)?;
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(DownloadError::Read {
                    name: name.into(),
                    detail: e.to_string(),
                });
            }
        }
    }
    file.flush().await.map_err(werr)?;
    drop(file);
    let got: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !sha256.is_empty() && got != sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(DownloadError::Digest { name: name.into() });
    }
    tokio::fs::rename(&tmp, &path).await.map_err(werr)?;
    Ok(path)
}

/// Prints a job's log. `follow`: until the job ends, across attempts when `attempt` is
/// not pinned; otherwise what is there now. Returns the job as it was last seen.
pub(super) async fn follow(
    client: &PoolClient,
    id: &str,
    attempt: Option<u32>,
    form: LogForm,
    follow: bool,
) -> Result<JobView, ClientError> {
    let pinned = attempt.is_some();
    let mut attempt = attempt;
    let mut after: Option<u64> = None;
    let mut warned_truncated = false;
    loop {
        let wait = if follow { MAX_WAIT_SECS } else { 0 };
        let page: LogPage = client.log(id, attempt, after, wait).await?;
        // Attempt 0 is "not claimed yet": stay unpinned until one runs.
        if attempt.is_none() && page.attempt > 0 {
            attempt = Some(page.attempt);
        }
        for chunk in &page.chunks {
            render_chunk(&chunk.data, form);
        }
        if attempt.is_some() {
            after = Some(page.next);
        }
        if page.truncated && !warned_truncated {
            warned_truncated = true;
            eprintln!("note: this log hit the server's size limit and was cut there");
        }
        if !follow {
            if page.chunks.is_empty() || page.complete {
                return client.job(id).await;
            }
            continue;
        }
        if page.complete || page.chunks.is_empty() {
            let job = client.job(id).await?;
            let cur = page.attempt;
            if !pinned && job.attempt > cur {
                // This attempt was lost or given back and a later one runs: follow it.
                if cur > 0 {
                    let outcome = job
                        .attempts
                        .iter()
                        .find(|a| a.attempt == cur)
                        .and_then(|a| a.outcome.clone())
                        .unwrap_or_else(|| "ended".into());
                    eprintln!(
                        "runner: attempt {cur} {outcome}; following attempt {}",
                        job.attempt
                    );
                }
                attempt = Some(job.attempt);
                after = None;
                continue;
            }
            if job.state.is_final() && (page.complete || cur == 0) {
                return Ok(job);
            }
            if page.complete {
                if pinned {
                    return Ok(job);
                }
                // The attempt is over but the job is not: it is being queued again.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// How `runner jobs logs` (and `submit --wait`) prints a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogForm {
    /// What `runner build` prints: CodeBuild's `[Container] 2026/11/23 18:42:10.123456 …`
    /// lines (at the time each event was recorded), the build's output as it was printed,
    /// and the summary at the end.
    Lines,
    /// [`LogForm::Lines`], every line prefixed with the event's RFC 3339 time.
    Timestamps,
    /// The events as JSON lines, verbatim (`runner build --json`'s form).
    Json,
}

impl LogForm {
    pub(super) fn new(json: bool, timestamps: bool) -> LogForm {
        match (json, timestamps) {
            (true, _) => LogForm::Json,
            (false, true) => LogForm::Timestamps,
            (false, false) => LogForm::Lines,
        }
    }
}

/// One chunk of JSON lines in `form`.
fn render_chunk(data: &str, form: LogForm) {
    let mut out = std::io::stdout().lock();
    for line in data.lines() {
        for text in render_line(line, form) {
            let _ = writeln!(out, "{text}");
        }
    }
    let _ = out.flush();
}

/// The lines one JSON event line prints as.
fn render_line(line: &str, form: LogForm) -> Vec<String> {
    if form == LogForm::Json {
        return vec![line.to_string()];
    }
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return vec![line.to_string()];
    };
    let Some(text) = crate::report::codebuild_line_json(&v) else {
        return Vec::new();
    };
    match form {
        LogForm::Timestamps => {
            let time = v.get("time").and_then(Value::as_str).unwrap_or("");
            text.lines().map(|l| format!("{time} {l}")).collect()
        }
        _ => vec![text],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// `runner jobs logs` prints what `runner build` printed: the events as an agent
    /// ships them (`event_line`), read back, give the reporter's own lines at the
    /// recorded time, and the terminal's summary at the end.
    #[test]
    fn logs_print_runner_builds_lines() {
        use crate::buildspec::model::PhaseName;
        use crate::event::{
            BuildResult, BuildStatus, Diagnostic, Event, Level, PhaseStatus, PhaseSummary, Stream,
        };
        use crate::report::{build_summary, codebuild_line_at, codebuild_timestamp};
        let events = vec![
            Event::PhaseStarted {
                phase: PhaseName::Build,
            },
            Event::CommandStarted {
                phase: PhaseName::Build,
                command: "echo hi".into(),
            },
            Event::Log {
                stream: Stream::Stdout,
                line: "hi".into(),
            },
            Event::PhaseEnded {
                phase: PhaseName::Build,
                status: PhaseStatus::Failed,
                duration_ms: 1200,
                context: Some("COMMAND_EXECUTION_ERROR: Error while executing command: false. Reason: exit status 1".into()),
            },
            Event::Notice {
                level: Level::Warning,
                message: "careful".into(),
            },
            Event::Diagnostic(Diagnostic::general(Level::Error, "bad")),
        ];
        for e in &events {
            let line = crate::pool::agent::event_line(e).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            let at = time::OffsetDateTime::parse(
                v["time"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            let want = match e {
                Event::Diagnostic(d) => d.render(),
                e => codebuild_line_at(e, &codebuild_timestamp(at)).unwrap(),
            };
            assert_eq!(
                render_line(&line, LogForm::Lines),
                vec![want.clone()],
                "{line}"
            );
            assert!(!want.contains(v["time"].as_str().unwrap()), "{want}");
            let stamped = render_line(&line, LogForm::Timestamps);
            assert_eq!(stamped.len(), want.lines().count());
            assert!(
                stamped[0].starts_with(v["time"].as_str().unwrap()),
                "{stamped:?}"
            );
            assert_eq!(render_line(&line, LogForm::Json), vec![line.clone()]);
        }
        let result = BuildResult {
            build_id: "p:1".into(),
            build_number: 1,
            batch_identifier: None,
            status: BuildStatus::Failed,
            phases: vec![PhaseSummary {
                phase: PhaseName::Build,
                status: PhaseStatus::Failed,
                duration_ms: 1200,
                context: None,
            }],
            exported_variables: vec![("A".into(), "1".into())],
            artifacts: Vec::new(),
            cache: Vec::new(),
            duration_ms: 3400,
            log_file: None,
        };
        let line = crate::pool::agent::event_line(&Event::BuildEnded(result.clone())).unwrap();
        assert_eq!(
            render_line(&line, LogForm::Lines),
            vec![build_summary(&result, |_, t| t.to_string())]
        );
        let v: Value = serde_json::from_str(r#"{"event":"command_ended"}"#).unwrap();
        assert_eq!(crate::report::codebuild_line_json(&v), None);
    }

    #[test]
    fn artifact_names_cannot_leave_the_download_directory() {
        let d = Path::new("/dl");
        assert_eq!(
            artifact_path(d, "out/a.txt"),
            Some(PathBuf::from("/dl/out/a.txt"))
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert_eq!(artifact_path(d, bad), None, "{bad}");
        }
    }

    #[test]
    fn exit_codes_follow_runner_build() {
        let mut job: JobView = serde_json::from_value(serde_json::json!({
            "id": "j", "state": "failed", "project": "p", "labels": {}, "attempt": 1,
            "max_attempts": 3, "created_at": "t", "cancel_requested": false,
            "log_truncated": false
        }))
        .unwrap();
        assert_eq!(job_exit(&job), ExitStatus::Failed);
        job.state = JobState::Cancelled;
        assert_eq!(job_exit(&job), ExitStatus::Stopped);
        job.state = JobState::Error;
        assert_eq!(job_exit(&job), ExitStatus::Setup);
        job.exit_code = Some(3);
        assert_eq!(job_exit(&job), ExitStatus::Fault);
        job.exit_code = Some(0);
        assert_eq!(job_exit(&job), ExitStatus::Success);
    }
}

/// `runner jobs watch`: prints events until interrupted; after a dropped connection it
/// connects again with `Last-Event-ID`, so no event is missed or printed twice.
async fn watch(client: &PoolClient, project: Option<&str>, json: bool) -> Result<(), ClientError> {
    use futures_util::StreamExt;
    let mut last: Option<String> = None;
    let mut connected_once = false;
    loop {
        let resp = match client.events(project, last.as_deref()).await {
            Ok(r) => r,
            Err(e) if connected_once && e.is_transient() => {
                tracing::debug!("event stream: {e}; connecting again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        connected_once = true;
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::default();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            for ev in parser.feed(&chunk) {
                if let Some(id) = ev.id {
                    last = Some(id);
                }
                print_event(&ev.data, json);
            }
        }
        // The stream ended (server restart, proxy timeout): resume where it stopped.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn print_event(data: &str, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{data}");
    } else {
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let d = v.get("data").cloned().unwrap_or(Value::Null);
        let kind = s(&v, "type");
        let kind = kind.strip_prefix("dev.runner.job.").unwrap_or(&kind);
        let mut line = format!(
            "{} {:<8} {} #{} {} attempt {} {}",
            s(&v, "time"),
            kind,
            s(&d, "project"),
            d.get("build_number").and_then(Value::as_u64).unwrap_or(0),
            s(&d, "job"),
            d.get("attempt").and_then(Value::as_u64).unwrap_or(0),
            s(&d, "status"),
        );
        if kind == "phase" {
            line.push_str(&format!(" {} {}", s(&d, "phase"), s(&d, "phase_status")));
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
struct SseEvent {
    id: Option<String>,
    data: String,
}

/// A server-sent events parser (the parts `/v1/events` uses: `id:`, `data:`, comments).
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    id: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(SseEvent {
                        id: self.id.take(),
                        data: self.data.join("\n"),
                    });
                    self.data.clear();
                }
                self.id = None;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.id = Some(value.to_string()),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod watch_tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keep-alive\n\nid: 7\nevent: x\nda").is_empty());
        let got = p.feed(b"ta: {\"a\":1}\n\nid: 8\r\ndata: b\r\n\r\n");
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("7".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    id: Some("8".into()),
                    data: "b".into()
                }
            ]
        );
    }
}
