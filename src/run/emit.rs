//! The events `run/` emits, in one vocabulary: a build's phases ([`phase_started`],
//! [`phase_ended`]), the stages after it and the scan gates ([`Stage`]: one `stage` event
//! when it ends), and runner's own remarks ([`notice`]). Every module of `run/` (and
//! `pipeline/`) reports through these; the JSON shapes are `crate::event`'s.

use crate::buildspec::model::PhaseName;
use crate::event::{Event, Level, PhaseSummary, Reporter, StageSummary};
use std::time::Instant;

/// Something runner itself says about the build.
pub(crate) fn notice(reporter: &dyn Reporter, level: Level, message: impl Into<String>) {
    reporter.event(&Event::Notice {
        level,
        message: message.into(),
    });
}

/// A phase of a build begins.
pub(crate) fn phase_started(reporter: &dyn Reporter, phase: PhaseName) {
    reporter.event(&Event::PhaseStarted { phase });
}

/// A phase of a build ended as `summary` says.
pub(crate) fn phase_ended(reporter: &dyn Reporter, summary: &PhaseSummary) {
    reporter.event(&Event::PhaseEnded {
        phase: summary.phase,
        status: summary.status,
        duration_ms: summary.duration_ms,
        context: summary.context.clone(),
    });
}

/// One stage in progress (image, scan, push, sign, gitops): reports its end once, as a
/// success with a detail or as a failure whose message is also the error returned.
pub(crate) struct Stage<'r> {
    reporter: &'r dyn Reporter,
    name: &'static str,
    started: Instant,
}

impl<'r> Stage<'r> {
    /// A stage starting now.
    pub(crate) fn start(reporter: &'r dyn Reporter, name: &'static str) -> Self {
        Self::since(reporter, name, Instant::now())
    }

    /// A stage that started at `started` (its work began before its outcome was known).
    pub(crate) fn since(reporter: &'r dyn Reporter, name: &'static str, started: Instant) -> Self {
        Self {
            reporter,
            name,
            started,
        }
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Reports the stage's end.
    pub(crate) fn report(&self, ok: bool, message: String, detail: serde_json::Value) {
        self.reporter.event(&Event::Stage(StageSummary {
            stage: self.name,
            ok,
            message,
            detail,
            duration_ms: self.started.elapsed().as_millis() as u64,
        }));
    }

    pub(crate) fn ok(&self, message: String, detail: serde_json::Value) {
        self.report(true, message, detail);
    }

    /// Reports the failure (its message, no detail) and hands the error back for the
    /// `Err`.
    pub(crate) fn fail<E: std::fmt::Display>(&self, error: E) -> E {
        self.report(false, error.to_string(), serde_json::Value::Null);
        error
    }
}
