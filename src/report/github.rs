//! The GitHub Actions reporter: the build's lines with workflow commands around them.
//!
//! - `::add-mask::` for every value the build's masker hides, before any other line
//!   (lines reported before [`GithubReporter::add_masks`] are held back until then);
//! - `::group::`/`::endgroup::` per phase and per stage after the phases; in a batch,
//!   whose builds run side by side, each build's lines are held until it ends and then
//!   printed as one group named after its identifier (GitHub's groups do not nest and
//!   would interleave otherwise);
//! - the build's own output with workflow commands stopped (`::stop-commands::`), so a
//!   line the build prints can neither set outputs nor add annotations: outputs come
//!   from the buildspec's `exported-variables`;
//! - diagnostics about the inputs as `::error`/`::warning` annotations at file, line,
//!   column; scan findings as annotations too, the most severe first and at most
//!   [`MAX_FINDING_ANNOTATIONS`] of them (GitHub shows 10 per step), all of them listed
//!   in the job summary;
//! - at the end ([`GithubReporter::finish`]): the job summary appended to
//!   `$GITHUB_STEP_SUMMARY` (kept under [`SUMMARY_CAP`]), the step's outputs to
//!   `$GITHUB_OUTPUT`, the exported variables to `$GITHUB_ENV`, a SARIF file.
//!
//! The file paths come from the caller (the CLI reads the environment); nothing here
//! reads the process environment.

use super::format::codebuild_line;
use crate::event::{BuildResult, Event, Level, Reporter, StageSummary};
use crate::scan::model::{SecretFinding, Severity, VulnFinding};
use crate::secrets::Secret;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// GitHub shows 10 annotations of a kind per step; the summary lists the rest.
pub const MAX_FINDING_ANNOTATIONS: usize = 10;

/// GitHub refuses a step summary of 1 MiB or more; this leaves room for the note that
/// says what was left out.
pub const SUMMARY_CAP: usize = 1024 * 1024 - 4096;

/// The step's fixed outputs (an exported variable of one of these names is not written
/// under it: the fixed one wins).
pub const FIXED_OUTPUTS: [&str; 9] = [
    "status",
    "build-id",
    "exit-code",
    "image",
    "digest",
    "pull-request-url",
    "sarif-file",
    "artifacts-dir",
    "exported-variables",
];

/// Where the reporter writes besides standard output; all taken from the environment
/// by the caller.
#[derive(Debug, Clone, Default)]
pub struct GithubOptions {
    /// `$GITHUB_STEP_SUMMARY`.
    pub step_summary: Option<PathBuf>,
    /// `$GITHUB_OUTPUT`.
    pub output: Option<PathBuf>,
    /// `$GITHUB_ENV`: the exported variables for the next steps.
    pub env: Option<PathBuf>,
    /// `$GITHUB_WORKSPACE`: annotation paths are made relative to it.
    pub workspace: Option<PathBuf>,
    /// The build's source directory (scan findings' paths are relative to it).
    pub source: Option<PathBuf>,
    /// Write the scan findings here as SARIF 2.1.0 (`sarif-file` output).
    pub sarif: Option<PathBuf>,
    /// The artifacts directory (`artifacts-dir` output).
    pub artifacts_dir: Option<PathBuf>,
}

/// How the step ended, in the `status` output's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Succeeded,
    Failed,
    Fault,
    Cancelled,
    /// Nothing ran: bad input or setup.
    Error,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Fault => "fault",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Error => "error",
        }
    }
}

/// `%`, CR and LF escaped, as GitHub's runner expects in a command's message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// [`escape_data`] plus `:` and `,`, for a command's property values.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `::name k=v,k=v::message` with everything escaped.
pub fn command(name: &str, props: &[(&str, String)], message: &str) -> String {
    let mut out = format!("::{name}");
    let props: Vec<String> = props
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", escape_property(v)))
        .collect();
    if !props.is_empty() {
        out.push(' ');
        out.push_str(&props.join(","));
    }
    out.push_str("::");
    out.push_str(&escape_data(message));
    out
}

/// A random delimiter that does not occur in `value`.
fn delimiter(value: &str) -> String {
    loop {
        let d = format!("ghadelimiter_{:032x}", rand::random::<u128>());
        if !value.contains(&d) {
            return d;
        }
    }
}

/// One `name<<delimiter` block of `$GITHUB_OUTPUT` / `$GITHUB_ENV` (works for any value,
/// multi-line included).
pub fn file_command_entry(name: &str, value: &str) -> String {
    let d = delimiter(value);
    format!("{name}<<{d}\n{value}\n{d}\n")
}

/// One scan finding, as the annotations and the summary show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    /// `secret` or `vulnerability`.
    pub kind: &'static str,
    /// Rule or advisory id.
    pub id: String,
    pub title: String,
    /// Relative to the scanned root.
    pub path: String,
    pub line: Option<u32>,
    pub col: Option<u32>,
    /// Which scan: `source` or an image.
    pub target: String,
}

impl Finding {
    fn level(&self) -> &'static str {
        match self.severity {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low | Severity::Unknown => "notice",
        }
    }
}

/// The findings to annotate: the most severe first (secrets before vulnerabilities of
/// the same severity, then by path and line), at most [`MAX_FINDING_ANNOTATIONS`].
pub fn annotated(findings: &[Finding]) -> Vec<&Finding> {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| (a.kind != "secret").cmp(&(b.kind != "secret")))
            .then_with(|| a.path.cmp(&b.path))
            .then_with(|| a.line.cmp(&b.line))
    });
    sorted.truncate(MAX_FINDING_ANNOTATIONS);
    sorted
}

#[derive(Default)]
struct State {
    /// Lines reported before the masks were issued.
    held: Option<Vec<String>>,
    /// The token while workflow commands are stopped.
    stopped: Option<String>,
    /// A group is open.
    group: bool,
    build_id: Option<String>,
    result: Option<BuildResult>,
    batch: Option<crate::event::BatchSummary>,
    stages: Vec<StageSummary>,
    image: Option<String>,
    digest: Option<String>,
    signature: Option<String>,
    pull_requests: Vec<String>,
    findings: Vec<Finding>,
    secrets: Vec<SecretFinding>,
    vulns: Vec<VulnFinding>,
    tests: Vec<(String, u64, u64, u64, u64)>,
    errors: Vec<String>,
    /// The lines of the batch builds still running, by identifier, in start order.
    tasks: Vec<(String, TaskLines)>,
}

/// One batch build's lines, held until it ends, with its own workflow-command state.
#[derive(Default)]
struct TaskLines {
    group: bool,
    stopped: Option<String>,
    lines: Vec<String>,
}

/// See the module documentation.
pub struct GithubReporter<W: Write + Send> {
    out: Mutex<(W, State)>,
    opts: GithubOptions,
}

impl<W: Write + Send> GithubReporter<W> {
    /// A reporter that holds its lines back until [`Self::add_masks`] (or
    /// [`Self::finish`]) is called.
    pub fn new(out: W, opts: GithubOptions) -> Self {
        Self {
            out: Mutex::new((
                out,
                State {
                    held: Some(Vec::new()),
                    ..Default::default()
                },
            )),
            opts,
        }
    }

    /// Issues `::add-mask::` for every value (each line of a multi-line value on its
    /// own, as GitHub masks line by line), then the lines held back so far.
    pub fn add_masks(&self, values: &[Secret]) {
        let Ok(mut guard) = self.out.lock() else {
            return;
        };
        let (out, state) = &mut *guard;
        for v in values {
            // The one place a GitHub step learns the values it must hide from its log.
            let value = v.expose();
            if value.trim().lines().count() > 1 {
                for l in value
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.chars().count() >= crate::secrets::MIN_SECRET_LEN)
                {
                    let _ = writeln!(out, "{}", command("add-mask", &[], l));
                }
            }
            if !value.trim().is_empty() {
                let _ = writeln!(out, "{}", command("add-mask", &[], value.trim()));
            }
        }
        Self::release(out, state);
    }

    fn release(out: &mut W, state: &mut State) {
        if let Some(held) = state.held.take() {
            for l in held {
                let _ = writeln!(out, "{l}");
            }
        }
        let _ = out.flush();
    }

    /// Annotations for the findings, the summary, the outputs, the SARIF file. Call once,
    /// after the build (or after a setup error: `error` is its message).
    pub fn finish(&self, status: StepStatus, exit_code: u8, error: Option<&str>) {
        let Ok(mut guard) = self.out.lock() else {
            return;
        };
        let (out, state) = &mut *guard;
        Self::release(out, state);
        let mut lines = flush_tasks(state);
        close_group(state, &mut lines);
        resume(state, &mut lines);
        if let Some(e) = error {
            lines.push(command("error", &[("title", "runner".into())], e));
            state.errors.push(e.to_string());
        }
        for f in annotated(&state.findings) {
            let file = self.repo_path(&self.source_path(&f.path));
            lines.push(command(
                f.level(),
                &[
                    ("file", file),
                    ("line", f.line.map(|l| l.to_string()).unwrap_or_default()),
                    ("col", f.col.map(|c| c.to_string()).unwrap_or_default()),
                    ("title", format!("{} {}", f.kind, f.id)),
                ],
                &f.title,
            ));
        }
        let mut problems = Vec::new();
        let sarif = self.opts.sarif.as_ref().and_then(|path| {
            let log = crate::scan::sarif::sarif_log(
                env!("CARGO_PKG_VERSION"),
                &state.secrets,
                &state.vulns,
                &[],
            );
            match serde_json::to_vec_pretty(&log)
                .map_err(std::io::Error::other)
                .and_then(|b| std::fs::write(path, b))
            {
                Ok(()) => Some(path.display().to_string()),
                Err(e) => {
                    problems.push(format!("cannot write SARIF to {}: {e}", path.display()));
                    None
                }
            }
        });
        if let Some(path) = &self.opts.step_summary {
            let text = summary(state, status, exit_code);
            if let Err(e) = append(path, &text) {
                problems.push(format!(
                    "cannot write the job summary {}: {e}",
                    path.display()
                ));
            }
        }
        let exported = state
            .result
            .as_ref()
            .map(|r| r.exported_variables.clone())
            .unwrap_or_default();
        if let Some(path) = &self.opts.output {
            let mut text = String::new();
            for (name, value) in &exported {
                if FIXED_OUTPUTS.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                    problems.push(format!(
                        "exported variable {name} is not an output of its own: the step's `{name}` output has that name (read it from `exported-variables`)"
                    ));
                    continue;
                }
                text.push_str(&file_command_entry(name, value));
            }
            let json: serde_json::Map<String, serde_json::Value> = exported
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let fixed = [
                ("status", status.as_str().to_string()),
                (
                    "build-id",
                    state
                        .result
                        .as_ref()
                        .map(|r| r.build_id.clone())
                        .or_else(|| state.build_id.clone())
                        .unwrap_or_default(),
                ),
                ("exit-code", exit_code.to_string()),
                ("image", state.image.clone().unwrap_or_default()),
                ("digest", state.digest.clone().unwrap_or_default()),
                (
                    "pull-request-url",
                    state.pull_requests.first().cloned().unwrap_or_default(),
                ),
                ("sarif-file", sarif.unwrap_or_default()),
                (
                    "artifacts-dir",
                    self.opts
                        .artifacts_dir
                        .as_ref()
                        .filter(|_| state.result.is_some())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ),
                (
                    "exported-variables",
                    serde_json::Value::Object(json).to_string(),
                ),
            ];
            for (name, value) in fixed {
                text.push_str(&file_command_entry(name, &value));
            }
            if let Err(e) = append(path, &text) {
                problems.push(format!(
                    "cannot write the step outputs {}: {e}",
                    path.display()
                ));
            }
        }
        if let Some(path) = &self.opts.env {
            let text: String = exported
                .iter()
                .map(|(n, v)| file_command_entry(n, v))
                .collect();
            if !text.is_empty() {
                if let Err(e) = append(path, &text) {
                    problems.push(format!(
                        "cannot write the exported variables to {}: {e}",
                        path.display()
                    ));
                }
            }
        }
        for p in problems {
            lines.push(command("warning", &[("title", "runner".into())], &p));
        }
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }

    /// A path under the source as the repository names it.
    fn source_path(&self, rel: &str) -> PathBuf {
        match &self.opts.source {
            Some(src) => src.join(rel),
            None => PathBuf::from(rel),
        }
    }

    /// `path` relative to the workspace when it is inside it.
    fn repo_path(&self, path: &Path) -> String {
        if let Some(ws) = &self.opts.workspace {
            if let Ok(rel) = path.strip_prefix(ws) {
                return rel.display().to_string();
            }
        }
        path.display().to_string()
    }

    fn lines_for(&self, state: &mut State, event: &Event) -> Vec<String> {
        let mut lines = Vec::new();
        match event {
            Event::Diagnostic(d) => {
                resume(state, &mut lines);
                let name = match d.level {
                    Level::Error => "error",
                    Level::Warning => "warning",
                    Level::Info => "notice",
                };
                let mut message = d.message.clone();
                if let Some(h) = &d.hint {
                    message.push_str("\nhelp: ");
                    message.push_str(h);
                }
                let file = d
                    .file
                    .as_deref()
                    .map(|f| self.repo_path(Path::new(f)))
                    .unwrap_or_default();
                lines.push(command(
                    name,
                    &[
                        ("file", file),
                        ("line", d.line.map(|l| l.to_string()).unwrap_or_default()),
                        ("col", d.col.map(|c| c.to_string()).unwrap_or_default()),
                    ],
                    &message,
                ));
                if d.level == Level::Error {
                    state.errors.push(d.render());
                }
            }
            Event::BuildStarted { build_id, .. } => {
                state.build_id = Some(build_id.clone());
                close_group(state, &mut lines);
                lines.extend(codebuild_line(event));
            }
            Event::PhaseStarted { phase } => {
                close_group(state, &mut lines);
                resume(state, &mut lines);
                lines.push(format!("::group::{phase}"));
                state.group = true;
                lines.extend(codebuild_line(event));
            }
            Event::PhaseEnded { .. } => {
                resume(state, &mut lines);
                lines.extend(codebuild_line(event));
                close_group(state, &mut lines);
            }
            Event::Log { line, .. } => {
                stop(state, &mut lines);
                lines.push(line.clone());
            }
            Event::Stage(st) => {
                close_group(state, &mut lines);
                resume(state, &mut lines);
                lines.push(format!(
                    "::group::{} {}",
                    st.stage,
                    if st.ok { "done" } else { "FAILED" }
                ));
                stop(state, &mut lines);
                lines.extend(codebuild_line(event));
                resume(state, &mut lines);
                lines.push("::endgroup::".into());
                if !st.ok {
                    lines.push(command(
                        "error",
                        &[("title", format!("runner {}", st.stage))],
                        &st.message,
                    ));
                }
                self.record_stage(state, st);
            }
            Event::Report(r) => {
                state.tests.push((
                    r.group.clone(),
                    r.total,
                    r.passed,
                    r.failed + r.errored,
                    r.skipped,
                ));
                stop(state, &mut lines);
                lines.extend(codebuild_line(event));
            }
            Event::BuildEnded(r) => {
                close_group(state, &mut lines);
                resume(state, &mut lines);
                lines.extend(codebuild_line(event));
                state.result = Some(r.clone());
            }
            Event::BatchEnded(b) => {
                close_group(state, &mut lines);
                lines.extend(codebuild_line(event));
                state.batch = Some(b.clone());
            }
            _ => {
                if let Some(l) = codebuild_line(event) {
                    // runner's own lines inside a phase are as inert as the build's.
                    stop(state, &mut lines);
                    lines.push(l);
                }
            }
        }
        lines
    }

    fn record_stage(&self, state: &mut State, st: &StageSummary) {
        let d = &st.detail;
        let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
        match st.stage {
            "push" if st.ok => {
                state.image = s("reference");
                state.digest = s("digest");
            }
            "image" if st.ok && state.image.is_none() => state.image = s("image"),
            "sign" if st.ok => {
                state.signature = Some(format!(
                    "signed {} with {}",
                    s("digest").unwrap_or_default(),
                    s("key").unwrap_or_default()
                ))
            }
            "gitops" if st.ok => {
                if let Some(url) = d
                    .get("pull_request")
                    .and_then(|p| p.get("url"))
                    .and_then(|u| u.as_str())
                {
                    state.pull_requests.push(url.to_string());
                }
            }
            "scan" => {
                let target = s("target").unwrap_or_else(|| "image".into());
                let secrets: Vec<SecretFinding> = d
                    .get("secrets")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                let vulns: Vec<VulnFinding> = d
                    .get("vulnerabilities")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                for f in &secrets {
                    state.findings.push(Finding {
                        severity: f.severity,
                        kind: "secret",
                        id: f.rule_id.clone(),
                        title: format!("{} ({})", f.description, f.redacted),
                        path: f.location.path.clone(),
                        line: f.location.line,
                        col: f.location.column,
                        target: target.clone(),
                    });
                }
                for v in &vulns {
                    state.findings.push(Finding {
                        severity: v.severity,
                        kind: "vulnerability",
                        id: v.id.clone(),
                        title: format!(
                            "{}@{}: {}{}",
                            v.package.name,
                            v.package.version,
                            v.summary,
                            v.fixed
                                .as_ref()
                                .map(|f| format!(" (fixed in {f})"))
                                .unwrap_or_default()
                        ),
                        path: v.package.location.path.clone(),
                        line: v.package.location.line,
                        col: v.package.location.column,
                        target: target.clone(),
                    });
                }
                // Packages the scan could not decide (unorderable version, no data for
                // the ecosystem): listed, never left out as if clean.
                let undecided: Vec<crate::scan::model::Undecided> = d
                    .get("undecided")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                for u in &undecided {
                    state.findings.push(Finding {
                        severity: Severity::Unknown,
                        kind: "not decided",
                        id: crate::scan::model::UNDECIDED_ID.to_string(),
                        title: format!("{}@{}: {}", u.package.name, u.package.version, u.reason),
                        path: u.package.location.path.clone(),
                        line: u.package.location.line,
                        col: u.package.location.column,
                        target: target.clone(),
                    });
                }
                state.secrets.extend(secrets);
                state.vulns.extend(vulns);
            }
            _ => {}
        }
        state.stages.push(st.clone());
    }
}

fn close_group(state: &mut State, lines: &mut Vec<String>) {
    if state.group {
        resume(state, lines);
        lines.push("::endgroup::".into());
        state.group = false;
    }
}

/// Workflow commands off until [`resume`]: the build's lines are printed inert.
fn stop(state: &mut State, lines: &mut Vec<String>) {
    if state.stopped.is_none() {
        let token = format!("runner-{:032x}", rand::random::<u128>());
        lines.push(format!("::stop-commands::{token}"));
        state.stopped = Some(token);
    }
}

fn resume(state: &mut State, lines: &mut Vec<String>) {
    if let Some(token) = state.stopped.take() {
        lines.push(format!("::{token}::"));
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The job summary in Markdown, at most [`SUMMARY_CAP`] bytes: findings past what fits
/// are counted, not listed.
fn summary(state: &State, status: StepStatus, exit_code: u8) -> String {
    let mut s = String::new();
    let id = state
        .result
        .as_ref()
        .map(|r| r.build_id.as_str())
        .or(state.build_id.as_deref())
        .unwrap_or("(not started)");
    let _ = writeln!(
        s,
        "## runner build: {} (exit code {exit_code})\n\nBuild `{}`\n",
        status.as_str(),
        md(id)
    );
    for e in &state.errors {
        let _ = writeln!(s, "> **Error:** {}\n", md(e));
    }
    if let Some(r) = &state.result {
        let _ = writeln!(
            s,
            "### Phases\n\n| Phase | Status | Duration |\n| --- | --- | --- |"
        );
        for p in &r.phases {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                p.phase,
                p.status.as_str(),
                secs(p.duration_ms)
            );
        }
        let _ = writeln!(
            s,
            "\nBuild status **{}** in {}.",
            r.status.as_str(),
            secs(r.duration_ms)
        );
        if let Some(failed) = r.phases.iter().find(|p| {
            matches!(
                p.status,
                crate::event::PhaseStatus::Failed
                    | crate::event::PhaseStatus::TimedOut
                    | crate::event::PhaseStatus::Fault
                    | crate::event::PhaseStatus::Stopped
            )
        }) {
            let _ = writeln!(
                s,
                "\n**Phase {} {}**{}",
                failed.phase,
                failed.status.as_str(),
                failed
                    .context
                    .as_deref()
                    .map(|c| format!(": {}", md(c)))
                    .unwrap_or_default()
            );
        }
        s.push('\n');
    }
    if let Some(b) = &state.batch {
        let _ = writeln!(s, "### Batch\n\n| Build | Status |\n| --- | --- |");
        for e in &b.builds {
            let _ = writeln!(
                s,
                "| {} | {} |",
                md(&e.identifier),
                e.status.map(|x| x.as_str()).unwrap_or("NOT STARTED")
            );
        }
        s.push('\n');
    }
    if !state.tests.is_empty() {
        let _ = writeln!(
            s,
            "### Tests\n\n| Report | Total | Passed | Failed | Skipped |\n| --- | --- | --- | --- | --- |"
        );
        for (g, t, p, f, k) in &state.tests {
            let _ = writeln!(s, "| {} | {t} | {p} | {f} | {k} |", md(g));
        }
        s.push('\n');
    }
    if !state.stages.is_empty() {
        let _ = writeln!(
            s,
            "### Stages\n\n| Stage | Result | Duration | |\n| --- | --- | --- | --- |"
        );
        for st in &state.stages {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                st.stage,
                if st.ok { "ok" } else { "failed" },
                secs(st.duration_ms),
                md(&st.message)
            );
        }
        s.push('\n');
    }
    if state.image.is_some() || state.signature.is_some() || !state.pull_requests.is_empty() {
        let _ = writeln!(s, "### Release\n");
        if let Some(i) = &state.image {
            let _ = writeln!(s, "- Image: `{}`", md(i));
        }
        if let Some(d) = &state.digest {
            let _ = writeln!(s, "- Digest: `{}`", md(d));
        }
        let _ = writeln!(
            s,
            "- Signature: {}",
            state
                .signature
                .as_deref()
                .map(md)
                .unwrap_or("not signed".into())
        );
        for pr in &state.pull_requests {
            let _ = writeln!(s, "- GitOps pull request: {}", md(pr));
        }
        s.push('\n');
    }
    if !state.findings.is_empty() {
        let _ = writeln!(s, "### Findings\n\n| Severity | Count |\n| --- | --- |");
        for sev in [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Unknown,
        ] {
            let n = state.findings.iter().filter(|f| f.severity == sev).count();
            if n > 0 {
                let _ = writeln!(s, "| {sev:?} | {n} |");
            }
        }
        let _ = writeln!(
            s,
            "\n| Severity | Kind | Id | Where | Scan | |\n| --- | --- | --- | --- | --- | --- |"
        );
        let mut sorted: Vec<&Finding> = state.findings.iter().collect();
        sorted.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.path.cmp(&b.path)));
        let note_room = 200;
        for (i, f) in sorted.iter().enumerate() {
            let row = format!(
                "| {:?} | {} | {} | {}{} | {} | {} |\n",
                f.severity,
                f.kind,
                md(&f.id),
                md(&f.path),
                f.line.map(|l| format!(":{l}")).unwrap_or_default(),
                md(&f.target),
                md(&f.title)
            );
            if s.len() + row.len() + note_room > SUMMARY_CAP {
                let _ = writeln!(
                    s,
                    "\n… and {} more findings not listed here (GitHub's summary limit); the log and the SARIF file have them all.",
                    sorted.len() - i
                );
                break;
            }
            s.push_str(&row);
        }
    }
    if s.len() > SUMMARY_CAP {
        let mut end = SUMMARY_CAP;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("\n\n… (cut at GitHub's summary limit)\n");
    }
    s
}

/// The group of the batch build `task` with its held lines (its workflow commands
/// resumed at the end), after the step's own open group is closed.
fn task_group(state: &mut State, task: &str, status: &str, mut buf: TaskLines) -> Vec<String> {
    let mut lines = Vec::new();
    close_group(state, &mut lines);
    resume(state, &mut lines);
    let title = task.replace(['\r', '\n'], " ");
    if status.is_empty() {
        lines.push(format!("::group::{title}"));
    } else {
        lines.push(format!("::group::{title}: {status}"));
    }
    lines.append(&mut buf.lines);
    if let Some(token) = buf.stopped.take() {
        lines.push(format!("::{token}::"));
    }
    lines.push("::endgroup::".into());
    lines
}

/// The groups of the batch builds that have not ended (a batch stopped or broken).
fn flush_tasks(state: &mut State) -> Vec<String> {
    let mut lines = Vec::new();
    for (task, buf) in std::mem::take(&mut state.tasks) {
        lines.extend(task_group(state, &task, "", buf));
    }
    lines
}

fn emit<W: Write>(out: &mut W, state: &mut State, lines: Vec<String>) {
    match &mut state.held {
        Some(held) => held.extend(lines),
        None => {
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
        }
    }
}

impl<W: Write + Send> Reporter for GithubReporter<W> {
    fn event(&self, event: &Event) {
        let Ok(mut guard) = self.out.lock() else {
            return;
        };
        let (out, state) = &mut *guard;
        let mut lines = Vec::new();
        if matches!(event, Event::BatchEnded(_)) {
            lines = flush_tasks(state);
        }
        lines.extend(self.lines_for(state, event));
        emit(out, state, lines);
    }

    /// A batch build's event: its lines (phases without groups of their own) are held
    /// until its `build_ended`, then printed as one group, so the builds a batch runs
    /// side by side do not interleave in GitHub's log.
    fn task_event(&self, task: &str, event: &Event) {
        let Ok(mut guard) = self.out.lock() else {
            return;
        };
        let (out, state) = &mut *guard;
        let i = match state.tasks.iter().position(|(t, _)| t == task) {
            Some(i) => i,
            None => {
                state.tasks.push((task.to_string(), TaskLines::default()));
                state.tasks.len() - 1
            }
        };
        let mut buf = std::mem::take(&mut state.tasks[i].1);
        // The task's own command state in place of the step's while its lines are made.
        std::mem::swap(&mut state.group, &mut buf.group);
        std::mem::swap(&mut state.stopped, &mut buf.stopped);
        let lines = self.lines_for(state, event);
        std::mem::swap(&mut state.group, &mut buf.group);
        std::mem::swap(&mut state.stopped, &mut buf.stopped);
        buf.group = false;
        buf.lines.extend(
            lines
                .into_iter()
                .filter(|l| !l.starts_with("::group::") && l != "::endgroup::"),
        );
        if let Event::BuildEnded(r) = event {
            state.tasks.remove(i);
            let lines = task_group(state, task, r.status.as_str(), buf);
            emit(out, state, lines);
        } else {
            state.tasks[i].1 = buf;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::scan::model::Location;

    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn escaping_follows_githubs_rules() {
        assert_eq!(escape_data("50% a\r\nb:c,d"), "50%25 a%0D%0Ab:c,d");
        assert_eq!(escape_property("a:b,c%\nd"), "a%3Ab%2Cc%25%0Ad");
        assert_eq!(
            command(
                "warning",
                &[
                    ("file", "dir,1/buildspec:x.yml".into()),
                    ("line", "4".into()),
                    ("col", String::new())
                ],
                "bad: 100%\nnext"
            ),
            "::warning file=dir%2C1/buildspec%3Ax.yml,line=4::bad: 100%25%0Anext"
        );
        assert_eq!(command("endgroup", &[], ""), "::endgroup::");
    }

    fn finding(sev: Severity, kind: &'static str, path: &str, line: u32) -> Finding {
        Finding {
            severity: sev,
            kind,
            id: format!("{kind}-{line}"),
            title: "t".into(),
            path: path.into(),
            line: Some(line),
            col: None,
            target: "source".into(),
        }
    }

    #[test]
    fn ten_annotations_most_severe_first() {
        let mut all = Vec::new();
        for i in 0..8 {
            all.push(finding(Severity::Low, "vulnerability", "a", i));
        }
        for i in 0..5 {
            all.push(finding(Severity::Medium, "vulnerability", "b", i));
        }
        all.push(finding(Severity::High, "vulnerability", "c", 1));
        all.push(finding(Severity::High, "secret", "z", 2));
        for i in 0..3 {
            all.push(finding(Severity::Critical, "vulnerability", "d", i));
        }
        let picked = annotated(&all);
        assert_eq!(picked.len(), MAX_FINDING_ANNOTATIONS);
        let sev: Vec<Severity> = picked.iter().map(|f| f.severity).collect();
        assert_eq!(&sev[..3], &[Severity::Critical; 3]);
        // The secret comes before the vulnerability of the same severity.
        assert_eq!(picked[3].kind, "secret");
        assert_eq!(picked[4].kind, "vulnerability");
        assert_eq!(&sev[5..], &[Severity::Medium; 5]);
        assert!(picked.iter().all(|f| f.severity != Severity::Low));
    }

    #[test]
    fn summary_stays_under_the_cap_and_counts_the_rest() {
        let mut state = State::default();
        for i in 0..40_000 {
            state
                .findings
                .push(finding(Severity::High, "vulnerability", "Cargo.lock", i));
        }
        let s = summary(&state, StepStatus::Failed, 1);
        assert!(s.len() <= SUMMARY_CAP, "{}", s.len());
        assert!(s.contains("| High | 40000 |"));
        assert!(s.contains("more findings not listed here"), "no note");
        let small = summary(&State::default(), StepStatus::Succeeded, 0);
        assert!(!small.contains("not listed"));
    }

    #[test]
    fn outputs_use_a_random_delimiter_absent_from_the_value() {
        let e = file_command_entry("NOTES", "line one\nline two");
        let (head, rest) = e.split_once('\n').unwrap();
        let d = head.strip_prefix("NOTES<<").unwrap();
        assert!(d.starts_with("ghadelimiter_") && d.len() > 20);
        assert_eq!(rest, format!("line one\nline two\n{d}\n"));
        assert_ne!(e, file_command_entry("NOTES", "line one\nline two"));
    }

    #[test]
    fn masks_come_first_and_build_output_is_inert() {
        let buf = Buf::default();
        let r = GithubReporter::new(buf.clone(), GithubOptions::default());
        r.event(&Event::Diagnostic(crate::event::Diagnostic {
            level: Level::Warning,
            file: Some("buildspec.yml".into()),
            line: Some(3),
            col: Some(5),
            message: "unknown key".into(),
            hint: None,
        }));
        assert_eq!(buf.text(), "", "held back until the masks");
        r.add_masks(&[Secret::new("s3cr3t-value"), Secret::new("two\nlines-here")]);
        r.event(&Event::PhaseStarted {
            phase: crate::buildspec::model::PhaseName::Build,
        });
        r.event(&Event::Log {
            stream: crate::event::Stream::Stdout,
            line: "::set-output name=x::y".into(),
        });
        r.event(&Event::PhaseEnded {
            phase: crate::buildspec::model::PhaseName::Build,
            status: crate::event::PhaseStatus::Succeeded,
            duration_ms: 5,
            context: None,
        });
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "::add-mask::s3cr3t-value");
        assert_eq!(lines[1], "::add-mask::lines-here");
        assert_eq!(lines[2], "::add-mask::two%0Alines-here");
        assert_eq!(
            lines[3],
            "::warning file=buildspec.yml,line=3,col=5::unknown key"
        );
        assert_eq!(lines[4], "::group::BUILD");
        let stop = lines
            .iter()
            .position(|l| l.starts_with("::stop-commands::"))
            .unwrap();
        let token = lines[stop].strip_prefix("::stop-commands::").unwrap();
        assert_eq!(lines[stop + 1], "::set-output name=x::y");
        assert_eq!(lines[stop + 2], format!("::{token}::"));
        assert_eq!(*lines.last().unwrap(), "::endgroup::");
    }

    #[test]
    fn finish_writes_outputs_env_and_summary() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GithubOptions {
            step_summary: Some(dir.path().join("summary")),
            output: Some(dir.path().join("output")),
            env: Some(dir.path().join("env")),
            ..Default::default()
        };
        let buf = Buf::default();
        let r = GithubReporter::new(buf.clone(), opts);
        r.add_masks(&[]);
        r.event(&Event::Stage(StageSummary {
            stage: "scan",
            ok: false,
            message: "Scan of source: 1 secrets".into(),
            detail: serde_json::json!({"target": "source", "secrets": [SecretFinding {
                rule_id: "aws-access-key-id".into(),
                description: "AWS access key".into(),
                location: Location { path: "app/config.py".into(), line: Some(7), column: Some(9), layer: None },
                redacted: "AKIA***".into(),
                fingerprint: "f".into(),
                severity: Severity::High,
                verified_format: true,
            }]}),
            duration_ms: 3,
        }));
        r.finish(StepStatus::Failed, 1, None);
        let out = std::fs::read_to_string(dir.path().join("output")).unwrap();
        assert!(out.contains("status<<ghadelimiter_"));
        assert!(out.contains("\nfailed\n"));
        assert!(out.contains("exit-code<<"));
        let summary = std::fs::read_to_string(dir.path().join("summary")).unwrap();
        assert!(summary.contains("| High | 1 |"), "{summary}");
        assert!(summary.contains("app/config.py:7"));
        assert!(buf.text().contains(
            "::error file=app/config.py,line=7,col=9,title=secret aws-access-key-id::AWS access key (AKIA***)"
        ));
        // Nothing exported: no env file written.
        assert!(!dir.path().join("env").exists());
    }

    /// Two batch builds running side by side: each one's lines come out together, in
    /// one group named after it, when it ends (not interleaved phase groups).
    #[test]
    fn batch_builds_come_out_one_group_each() {
        use crate::buildspec::model::PhaseName;
        use crate::event::{BuildStatus, Stream};
        let buf = Buf::default();
        let r = GithubReporter::new(buf.clone(), GithubOptions::default());
        r.add_masks(&[]);
        let ended = |id: &str, status| {
            Event::BuildEnded(BuildResult {
                build_id: format!("p:{id}"),
                build_number: 1,
                batch_identifier: Some(id.into()),
                status,
                phases: Vec::new(),
                exported_variables: Vec::new(),
                artifacts: Vec::new(),
                cache: Vec::new(),
                duration_ms: 1,
                log_file: None,
            })
        };
        let log = |id: &str, n: u32| Event::Log {
            stream: Stream::Stdout,
            line: format!("[{id}] line {n}"),
        };
        let build = Event::PhaseStarted {
            phase: PhaseName::Build,
        };
        r.task_event("a", &build);
        r.task_event("b", &build);
        r.task_event("a", &log("a", 1));
        r.task_event("b", &log("b", 1));
        r.task_event("a", &log("a", 2));
        r.task_event("b", &log("b", 2));
        r.task_event("b", &ended("b", BuildStatus::Failed));
        r.task_event("a", &log("a", 3));
        r.task_event("a", &ended("a", BuildStatus::Succeeded));
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        let groups: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("::group::"))
            .collect();
        assert_eq!(
            groups,
            ["::group::b: FAILED", "::group::a: SUCCEEDED"],
            "{text}"
        );
        let opened = lines.iter().filter(|l| l.starts_with("::group::")).count();
        let closed = lines.iter().filter(|l| **l == "::endgroup::").count();
        assert_eq!(opened, closed, "{text}");
        // Each build's lines sit inside its own group, in order, none of the other's.
        for (id, n) in [("b", 2), ("a", 3)] {
            let start = lines
                .iter()
                .position(|l| l.starts_with(&format!("::group::{id}:")))
                .unwrap();
            let end = start
                + lines[start..]
                    .iter()
                    .position(|l| *l == "::endgroup::")
                    .unwrap();
            let inside = &lines[start..end];
            let own: Vec<&str> = inside
                .iter()
                .copied()
                .filter(|l| l.starts_with("[a]") || l.starts_with("[b]"))
                .collect();
            let want: Vec<String> = (1..=n).map(|k| format!("[{id}] line {k}")).collect();
            assert_eq!(own, want, "{text}");
            // The build's output is inert inside the group (commands stopped, resumed).
            let stop = inside
                .iter()
                .position(|l| l.starts_with("::stop-commands::"))
                .unwrap();
            let token = inside[stop].strip_prefix("::stop-commands::").unwrap();
            let resumed = inside.iter().position(|l| *l == format!("::{token}::"));
            assert!(
                resumed
                    > inside
                        .iter()
                        .rposition(|l| l.starts_with(&format!("[{id}]"))),
                "{text}"
            );
        }
    }

    /// A package the scan could not decide is listed in the job summary (and
    /// annotated), never left out as if clean.
    #[test]
    fn summary_lists_undecided_packages() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GithubOptions {
            step_summary: Some(dir.path().join("summary")),
            ..Default::default()
        };
        let buf = Buf::default();
        let r = GithubReporter::new(buf.clone(), opts);
        let undecided = crate::scan::model::Undecided {
            package: crate::scan::model::Package {
                ecosystem: "Amazon Linux:2".into(),
                name: "openssl".into(),
                version: "1:1.0.2k-19.amzn2".into(),
                purl: "pkg:rpm/amzn/openssl@1.0.2k-19.amzn2".into(),
                source_name: None,
                location: Location {
                    path: "var/lib/rpm/Packages".into(),
                    ..Location::default()
                },
            },
            reason: "no advisory data for Amazon Linux:2".into(),
            advisories: Vec::new(),
        };
        r.event(&Event::Stage(StageSummary {
            stage: "scan",
            ok: false,
            message: "Scan of image: 1 not decided".into(),
            detail: serde_json::json!({"target": "image", "undecided": [undecided]}),
            duration_ms: 3,
        }));
        r.finish(StepStatus::Failed, 1, None);
        let summary = std::fs::read_to_string(dir.path().join("summary")).unwrap();
        assert!(
            summary.contains("| Unknown | not decided | undecided | var/lib/rpm/Packages | image | openssl@1:1.0.2k-19.amzn2: no advisory data for Amazon Linux:2 |"),
            "{summary}"
        );
    }
}
