//! What a prepared build came to, and the one verdict every entry point maps to its own
//! terms (the CLI to an exit code, an agent to a job status).

use crate::event::{BatchSummary, BuildResult, BuildStatus};
use crate::run::Released;

/// How a request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The source scan's policy refused the source; no build started.
    SourceRefused,
    /// The source scan could not read the source; no build started.
    ScanFailed(crate::run::scans::ScanError),
    /// One build ran.
    Build {
        result: BuildResult,
        release: Release,
    },
    /// A batch ran.
    Batch(BatchSummary),
}

/// The stages after a build's phases.
#[derive(Debug)]
pub enum Release {
    /// Nothing to release: the build did not succeed, or the project has no `image:`.
    None,
    Released(Box<Released>),
    /// A stage failed (reported as a failed `stage` event).
    Failed(Box<crate::run::ReleaseError>),
}

/// The verdict of an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    /// A build failed or timed out, a gate or a release stage refused, a batch build
    /// never started.
    Failed,
    /// The runner or the engine broke during a build.
    Fault,
    /// Stopped by the caller's cancel token.
    Stopped,
    /// Nothing could run (the source scan could not read the source).
    NotStarted,
}

impl Verdict {
    pub fn of_build(status: BuildStatus) -> Self {
        match status {
            BuildStatus::Succeeded => Verdict::Succeeded,
            BuildStatus::Failed | BuildStatus::TimedOut => Verdict::Failed,
            BuildStatus::Fault => Verdict::Fault,
            BuildStatus::Stopped => Verdict::Stopped,
        }
    }
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        match self {
            Outcome::SourceRefused => Verdict::Failed,
            Outcome::ScanFailed(_) => Verdict::NotStarted,
            Outcome::Build { result, release } => match (Verdict::of_build(result.status), release)
            {
                (Verdict::Succeeded, Release::Failed(_)) => Verdict::Failed,
                (v, _) => v,
            },
            Outcome::Batch(summary) => batch_verdict(summary),
        }
    }
}

/// A batch's verdict, independent of the order its builds finished in: STOPPED when the
/// user stopped it; else FAULT when a build that may not fail faulted; else FAILED when
/// one failed or timed out, or when a build never started (its dependency failed, or
/// fast-fail stopped the batch); else SUCCEEDED. Builds that fast-fail stopped count
/// through the failure that stopped them; builds with `ignore-failure` never count.
pub fn batch_verdict(summary: &BatchSummary) -> Verdict {
    if summary.stopped_by_user {
        return Verdict::Stopped;
    }
    let counted = || summary.builds.iter().filter(|b| !b.ignore_failure);
    if counted().any(|b| b.status == Some(BuildStatus::Fault)) {
        return Verdict::Fault;
    }
    // A build that never started counts even with ignore-failure: the batch did not do
    // what it was asked.
    if summary.builds.iter().any(|b| b.status.is_none())
        || counted().any(|b| b.status != Some(BuildStatus::Succeeded))
    {
        return Verdict::Failed;
    }
    Verdict::Succeeded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchEntry;

    fn entry(id: &str, status: Option<BuildStatus>, ignore: bool) -> BatchEntry {
        BatchEntry {
            identifier: id.into(),
            status,
            ignore_failure: ignore,
        }
    }

    fn summary(builds: Vec<BatchEntry>, stopped: bool) -> BatchSummary {
        BatchSummary {
            builds,
            stopped_by_user: stopped,
        }
    }

    #[test]
    fn batch_verdicts() {
        use BuildStatus::*;
        let ok = summary(
            vec![
                entry("a", Some(Succeeded), false),
                entry("b", Some(Failed), true),
            ],
            false,
        );
        assert_eq!(batch_verdict(&ok), Verdict::Succeeded);
        let fault_ignored = summary(
            vec![
                entry("a", Some(Fault), true),
                entry("b", Some(Failed), false),
            ],
            false,
        );
        assert_eq!(batch_verdict(&fault_ignored), Verdict::Failed);
        let fault = summary(
            vec![
                entry("a", Some(Failed), false),
                entry("b", Some(Fault), false),
            ],
            false,
        );
        assert_eq!(batch_verdict(&fault), Verdict::Fault);
        let not_started = summary(
            vec![entry("a", Some(Succeeded), false), entry("b", None, true)],
            false,
        );
        assert_eq!(batch_verdict(&not_started), Verdict::Failed);
        assert_eq!(
            batch_verdict(&summary(vec![entry("a", Some(Fault), false)], true)),
            Verdict::Stopped
        );
    }
}
