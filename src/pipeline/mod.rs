//! The build pipeline every entry point calls: `runner build` today, the agent and the
//! GitHub Actions step next. A caller fills in a [`BuildRequest`] (flags, a job from a
//! server, an Action's inputs, with credentials read at its own edge), then:
//!
//! ```text
//! prepare(request, reporter) ──▶ Prepared ──execute(prepared, reporter, cancel)──▶ Outcome ──▶ verdict
//!  (facts, buildspec + diagnostics,          (source scan gate, phases or batch,
//!   secrets, masker, engine + image,          image, image scan gate, push, sign,
//!   cache store, plans, policy)               attest, GitOps)
//! ```
//!
//! Architecture invariants:
//! - `prepare` does every fallible setup step before any container starts; a bad
//!   buildspec, project file, policy, secret reference, image or cache location is a
//!   [`PrepareError`], never a failed build.
//! - Neither step prints: diagnostics (buildspec, project file, policy, masking, cache)
//!   are [`crate::event::Event::Diagnostic`]s, a batch's summary is
//!   [`crate::event::Event::BatchEnded`]; the reporters render them.
//! - `execute` puts every reporter behind the build's masker.
//! - Nothing here reads the process environment: the request carries it all.

mod execute;
mod outcome;
mod prepare;
mod request;

pub use execute::execute;
pub use outcome::{batch_verdict, Outcome, Release, Verdict};
pub use prepare::{prepare, PrepareError, Prepared};
pub use request::{BuildRequest, CacheChoice, Credentials, HostCa};
