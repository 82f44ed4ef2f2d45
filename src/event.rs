//! What a build tells the world while it runs.
//!
//! Architecture invariant: the engine only *emits* events; it never prints. Reporters
//! (terminal, JSON lines, log file, and later the agent and GitHub Actions) consume them.
//! Every entry point drives the same engine and differs only in its reporters.

use crate::buildspec::model::PhaseName;
use serde::Serialize;
use std::sync::Arc;

/// Where a line of build output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The outcome of one phase, as CodeBuild names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhaseStatus {
    Succeeded,
    Failed,
    /// Not run because an earlier phase failed (CodeBuild leaves such phases out).
    Skipped,
    TimedOut,
    Stopped,
    Fault,
}

impl PhaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Succeeded => "SUCCEEDED",
            PhaseStatus::Failed => "FAILED",
            PhaseStatus::Skipped => "SKIPPED",
            PhaseStatus::TimedOut => "TIMED_OUT",
            PhaseStatus::Stopped => "STOPPED",
            PhaseStatus::Fault => "FAULT",
        }
    }
}

/// The final status of a build, as CodeBuild names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildStatus {
    Succeeded,
    Failed,
    /// The runner or the engine broke (not the build's commands).
    Fault,
    TimedOut,
    /// Cancelled by Ctrl-C or SIGTERM.
    Stopped,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Succeeded => "SUCCEEDED",
            BuildStatus::Failed => "FAILED",
            BuildStatus::Fault => "FAULT",
            BuildStatus::TimedOut => "TIMED_OUT",
            BuildStatus::Stopped => "STOPPED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSummary {
    pub phase: PhaseName,
    pub status: PhaseStatus,
    pub duration_ms: u64,
    /// CodeBuild's phase context, e.g. `COMMAND_EXECUTION_ERROR: Error while executing command: false. Reason: exit status 1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactSummary {
    pub identifier: String,
    pub path: String,
    pub files: usize,
    pub bytes: u64,
}

/// A cache restore or save (`cache:` in the buildspec).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheSummary {
    /// `restore` or `save`.
    pub action: &'static str,
    /// The key asked for (after shell expansion).
    pub key: String,
    /// Restore: whether an entry was found. Save: whether an entry was written.
    pub hit: bool,
    /// Restore: the key of the entry used (the key itself or a fallback match).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_key: Option<String>,
    pub files: u64,
    /// Uncompressed bytes restored or saved.
    pub bytes: u64,
    /// Compressed size of the entry.
    pub compressed_bytes: u64,
    pub duration_ms: u64,
    /// Restore: where the files came from, `volume` (the local cache volumes held them
    /// already) or `archive` (extracted from the store's entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// Why nothing happened, or what went wrong (a cache problem never fails a build).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CacheSummary {
    /// A summary of `action` for `key` with nothing done yet.
    pub fn new(action: &'static str, key: &str) -> Self {
        Self {
            action,
            key: key.to_string(),
            hit: false,
            matched_key: None,
            files: 0,
            bytes: 0,
            compressed_bytes: 0,
            source: None,
            duration_ms: 0,
            note: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildResult {
    pub build_id: String,
    pub build_number: u64,
    /// Set for the builds of a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_identifier: Option<String>,
    pub status: BuildStatus,
    pub phases: Vec<PhaseSummary>,
    /// `env.exported-variables` with their values at the end of POST_BUILD.
    pub exported_variables: Vec<(String, String)>,
    pub artifacts: Vec<ArtifactSummary>,
    pub cache: Vec<CacheSummary>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
}

/// One stage after the phases (image build and push, scans, signing, GitOps): what it
/// did, in one line for people and in `detail` for machines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSummary {
    /// `image`, `scan`, `sign`, `gitops`.
    pub stage: &'static str,
    pub ok: bool,
    pub message: String,
    pub detail: serde_json::Value,
    pub duration_ms: u64,
}

/// A problem or remark about the inputs, found before or while setting a build up: a
/// buildspec or project-file diagnostic (with its position), a policy warning, a secret too
/// short to mask, a cache that is off. Reporters for people render it like a compiler
/// would (`buildspec.yml:4:15: error: ...`, `warning: ...`); an agent or a GitHub Actions
/// step can turn it into an annotation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub level: Level,
    /// The file it is about (as the user named it), when it is about a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line and column in `file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
    pub message: String,
    /// A suggestion (`= help: ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A remark that is not about a position in a file.
    pub fn general(level: Level, message: impl Into<String>) -> Self {
        Self {
            level,
            file: None,
            line: None,
            col: None,
            message: message.into(),
            hint: None,
        }
    }

    /// A buildspec-style diagnostic (buildspec, project file, policy) found in `file`.
    pub fn located(file: &str, d: &crate::buildspec::Diagnostic) -> Self {
        Self {
            level: match d.severity {
                crate::buildspec::diagnostic::Severity::Error => Level::Error,
                crate::buildspec::diagnostic::Severity::Warning => Level::Warning,
            },
            file: Some(file.to_string()),
            line: Some(d.line),
            col: Some(d.col),
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }

    /// The compiler-style text: `file:line:col: error: message` with an indented
    /// `= help:` line, or `warning: message` / `note: message` when not about a file.
    pub fn render(&self) -> String {
        let severity = match self.level {
            Level::Info => "note",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        let mut out = match (&self.file, self.line) {
            (Some(file), Some(line)) => format!(
                "{file}:{line}:{}: {severity}: {}",
                self.col.unwrap_or(1),
                self.message
            ),
            (Some(file), None) => format!("{file}: {severity}: {}", self.message),
            (None, _) => format!("{severity}: {}", self.message),
        };
        if let Some(hint) = &self.hint {
            out.push_str("\n  = help: ");
            out.push_str(hint);
        }
        out
    }
}

/// How one build of a batch ended, for the batch's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchEntry {
    pub identifier: String,
    /// `None`: never started (a build it depends on failed, or the batch stopped first).
    pub status: Option<BuildStatus>,
    pub ignore_failure: bool,
}

/// The end of a batch: every planned build in the buildspec's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchSummary {
    pub builds: Vec<BatchEntry>,
    /// The user stopped the batch (Ctrl-C, SIGTERM, a cancelled job).
    pub stopped_by_user: bool,
}

/// One thing that happened. Serialized as one JSON object per line with an `event` tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    BuildStarted {
        build_id: String,
        build_number: u64,
        project: String,
        image: String,
        buildspec: String,
        source: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        batch_identifier: Option<String>,
    },
    PhaseStarted {
        phase: PhaseName,
    },
    PhaseEnded {
        phase: PhaseName,
        status: PhaseStatus,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<String>,
    },
    CommandStarted {
        phase: PhaseName,
        command: String,
    },
    CommandEnded {
        phase: PhaseName,
        exit_code: i64,
        duration_ms: u64,
    },
    /// A line the build printed (without its newline).
    Log {
        stream: Stream,
        line: String,
    },
    /// Something runner itself says about the build.
    Notice {
        level: Level,
        message: String,
    },
    Artifact(ArtifactSummary),
    Cache(CacheSummary),
    Report(crate::reports::ReportResult),
    BuildEnded(BuildResult),
    /// A stage after the build's phases (after `build_ended`).
    Stage(StageSummary),
    /// A diagnostic about the inputs (before the build's own events).
    Diagnostic(Diagnostic),
    /// A batch finished (after every `build_ended` of its builds).
    BatchEnded(BatchSummary),
}

/// Consumes events. Implementations use interior mutability so one reporter can be
/// shared by the concurrent builds of a batch.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);

    /// An event of the batch build `task` (its identifier), from one of the builds a
    /// batch runs side by side. A reporter that shows builds one after another (the
    /// GitHub reporter's groups) keeps each task's events together; the default treats
    /// it as any other event.
    fn task_event(&self, task: &str, event: &Event) {
        let _ = task;
        self.event(event);
    }
}

/// A shared handle to a reporter.
pub type SharedReporter = Arc<dyn Reporter>;

/// Sends every event to several reporters, in order.
pub struct Fanout(pub Vec<SharedReporter>);

impl Reporter for Fanout {
    fn event(&self, event: &Event) {
        for r in &self.0 {
            r.event(event);
        }
    }

    fn task_event(&self, task: &str, event: &Event) {
        for r in &self.0 {
            r.task_event(task, event);
        }
    }
}

/// Collects events in memory (used by tests and by the batch scheduler).
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Recorder {
    fn event(&self, event: &Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event.clone());
        }
    }
}
