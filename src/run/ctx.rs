//! What one build's steps share: its plan, where its events go, and what the phases left
//! behind so far (`Progress`). `build.rs`, `shells.rs` and `cache_steps.rs` take a
//! [`Ctx`]; it depends on none of them.

use super::emit;
use crate::buildspec::model::PhaseName;
use crate::event::{
    ArtifactSummary, CacheSummary, Event, Level, PhaseStatus, PhaseSummary, Reporter,
};
use crate::plan::BuildPlan;
use crate::secrets::Masker;
use std::sync::Mutex;
use std::time::Instant;

/// What the phases left behind for the later steps.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) phases: Vec<PhaseSummary>,
    pub(super) current: Option<(PhaseName, Instant)>,
    pub(super) exported: Vec<(String, String)>,
    pub(super) artifacts: Vec<ArtifactSummary>,
    pub(super) cache: Vec<CacheSummary>,
    pub(super) failed: bool,
}

pub(super) struct Ctx<'a> {
    pub(super) plan: &'a BuildPlan,
    pub(super) reporter: &'a dyn Reporter,
    pub(super) progress: &'a Mutex<Progress>,
    /// The build's secrets, for the shell to mask the pieces of overlong lines.
    pub(super) masker: Masker,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        plan: &'a BuildPlan,
        reporter: &'a dyn Reporter,
        progress: &'a Mutex<Progress>,
    ) -> Self {
        Self {
            plan,
            reporter,
            progress,
            masker: Masker::new(plan.secret_env.iter().map(|(n, s)| (n.as_str(), s))),
        }
    }
}

impl Ctx<'_> {
    pub(super) fn emit(&self, e: Event) {
        self.reporter.event(&e);
    }

    pub(super) fn record_cache(&self, summary: CacheSummary) {
        if let Ok(mut p) = self.progress.lock() {
            p.cache.push(summary.clone());
        }
        self.emit(Event::Cache(summary));
    }

    pub(super) fn record_artifact(&self, summary: ArtifactSummary) {
        if let Ok(mut p) = self.progress.lock() {
            p.artifacts.push(summary.clone());
        }
        self.emit(Event::Artifact(summary));
    }

    pub(super) fn notice(&self, level: Level, message: impl Into<String>) {
        emit::notice(self.reporter, level, message);
    }

    pub(super) fn phase_start(&self, phase: PhaseName) -> Instant {
        let now = Instant::now();
        if let Ok(mut p) = self.progress.lock() {
            p.current = Some((phase, now));
        }
        emit::phase_started(self.reporter, phase);
        now
    }

    pub(super) fn phase_end(&self, phase: PhaseName, status: PhaseStatus, context: Option<String>) {
        let mut summary = PhaseSummary {
            phase,
            status,
            duration_ms: 0,
            context,
        };
        if let Ok(mut p) = self.progress.lock() {
            if let Some((_, started)) = p.current.take() {
                summary.duration_ms = started.elapsed().as_millis() as u64;
            }
            if status == PhaseStatus::Failed || status == PhaseStatus::Fault {
                p.failed = true;
            }
            p.phases.push(summary.clone());
        }
        emit::phase_ended(self.reporter, &summary);
    }

    /// The phase running now, if any.
    pub(super) fn current_phase(&self) -> Option<PhaseName> {
        self.progress
            .lock()
            .ok()
            .and_then(|p| p.current.map(|c| c.0))
    }

    pub(super) fn failed(&self) -> bool {
        self.progress.lock().map(|p| p.failed).unwrap_or(true)
    }
}
