use super::format::codebuild_line;
use crate::event::{BatchSummary, Event, Level, PhaseStatus, Reporter};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// How the terminal is written to; the caller decides from its environment (a TTY,
/// `NO_COLOR`, `TERM=dumb`, `CI`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalOptions {
    /// ANSI colours (only on a terminal, and never with `NO_COLOR`).
    pub color: bool,
    /// A live spinner on standard error (only on a terminal, never in CI).
    pub progress: bool,
    /// Leave out the build's own output (phase lines and the summary remain).
    pub quiet: bool,
}

/// The batch's summary: every planned build with how it ended.
///
/// ```text
/// Batch:
///   a                        FAILED
///   b                        NOT STARTED
/// ```
pub fn batch_table(b: &BatchSummary) -> String {
    let mut s = String::from("Batch:");
    for entry in &b.builds {
        let line = match entry.status {
            Some(status) => format!(
                "{}{}",
                status.as_str(),
                if entry.ignore_failure {
                    " (ignore-failure)"
                } else {
                    ""
                }
            ),
            None => "NOT STARTED".to_string(),
        };
        s.push_str(&format!("\n  {:<24} {line}", entry.identifier));
    }
    s
}

/// CodeBuild-style lines on standard output, a spinner on a terminal, a summary at the end.
pub struct TerminalReporter {
    opts: TerminalOptions,
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalReporter {
    pub fn new(opts: TerminalOptions) -> Self {
        Self {
            opts,
            bar: Mutex::new(None),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.opts.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn print(&self, text: &str) {
        let bar = self.bar.lock().ok().and_then(|b| b.clone());
        let write = || {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        };
        match bar {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }

    /// Diagnostics go to standard error, as a compiler's would.
    fn print_err(&self, text: &str) {
        let bar = self.bar.lock().ok().and_then(|b| b.clone());
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        };
        match bar {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }

    fn set_spinner(&self, message: Option<String>) {
        if !self.opts.progress {
            return;
        }
        let Ok(mut slot) = self.bar.lock() else {
            return;
        };
        match message {
            Some(msg) => {
                let bar = slot.get_or_insert_with(|| {
                    let b = ProgressBar::new_spinner();
                    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
                        b.set_style(style);
                    }
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                bar.set_message(msg);
            }
            None => {
                if let Some(b) = slot.take() {
                    b.finish_and_clear();
                }
            }
        }
    }

    fn summary(&self, r: &crate::event::BuildResult) -> String {
        super::format::build_summary(r, |code, text| self.paint(code, text))
    }
}

impl Reporter for TerminalReporter {
    fn event(&self, event: &Event) {
        match event {
            Event::Log { line, .. } => {
                if !self.opts.quiet {
                    self.print(line);
                }
            }
            Event::PhaseStarted { phase } => {
                self.set_spinner(Some(format!("{phase}")));
                if let Some(l) = codebuild_line(event) {
                    self.print(&self.paint("1;36", &l));
                }
            }
            Event::PhaseEnded { status, .. } => {
                if let Some(l) = codebuild_line(event) {
                    let colour = if *status == PhaseStatus::Succeeded {
                        "36"
                    } else {
                        "31"
                    };
                    self.print(&self.paint(colour, &l));
                }
            }
            Event::Notice { level, .. } => {
                if let Some(l) = codebuild_line(event) {
                    let colour = match level {
                        Level::Info => "0",
                        Level::Warning => "33",
                        Level::Error => "31",
                    };
                    self.print(&self.paint(colour, &l));
                }
            }
            Event::BuildEnded(r) => {
                self.set_spinner(None);
                self.print(&self.summary(r));
            }
            Event::Diagnostic(d) => self.print_err(&d.render()),
            Event::BatchEnded(b) => {
                self.set_spinner(None);
                self.print(&format!("\n{}", batch_table(b)));
            }
            Event::CommandStarted { phase, command } => {
                self.set_spinner(Some(format!(
                    "{phase}: {}",
                    command.lines().next().unwrap_or("")
                )));
                if let Some(l) = codebuild_line(event) {
                    self.print(&self.paint("2", &l));
                }
            }
            other => {
                if let Some(l) = codebuild_line(other) {
                    self.print(&l);
                }
            }
        }
    }
}
