//! Pure planning: a validated buildspec plus the user's options become a `BuildPlan`.
//!
//! Architecture invariant: no IO here. Everything the plan needs from the outside
//! (git revision, the host CA bundle's presence, the clock) is passed in `PlanInput`.

mod batch;
mod build_plan;
mod env;

pub use batch::{expand as expand_batch, TaskDef};
pub use build_plan::{plan, BuildPlan, CachePlan, PlanError, PlanInput, PlannedPhase, SourceMode};
pub use env::{parse_env_assignment, parse_env_file, EnvError, CA_BUNDLE_MOUNT, CA_VARIABLES};
