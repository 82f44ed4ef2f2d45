use crate::event::BuildStatus;

/// What `runner` exits with. Documented in README ("Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: the build SUCCEEDED / the buildspecs are valid.
    Success,
    /// 1: the build FAILED or TIMED_OUT / a buildspec has errors.
    Failed,
    /// 2: bad input or setup (unreadable or invalid buildspec, no Docker, bad flags).
    Setup,
    /// 3: FAULT: the runner or the engine broke during the build.
    Fault,
    /// 130: STOPPED by Ctrl-C or SIGTERM.
    Stopped,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Setup => 2,
            ExitStatus::Fault => 3,
            ExitStatus::Stopped => 130,
        }
    }

    pub fn from_build(status: BuildStatus) -> Self {
        match status {
            BuildStatus::Succeeded => ExitStatus::Success,
            BuildStatus::Failed | BuildStatus::TimedOut => ExitStatus::Failed,
            BuildStatus::Fault => ExitStatus::Fault,
            BuildStatus::Stopped => ExitStatus::Stopped,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s.code())
    }
}
