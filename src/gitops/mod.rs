//! GitOps write-back: after a build pushes an image, move the deployed image in a config
//! repository to the new digest through a pull request (or a direct push).
//!
//! - [`edit`]: format-preserving edits (kustomize, Helm values, manifests, Flux setters,
//!   Argo CD write-back files);
//! - [`git`]: the real `git` CLI (clone, commit, push with re-apply on conflicts);
//! - [`forge`]: GitHub / GitLab / Gitea pull requests;
//! - [`worktree`]: every read and write of the clone's files (never through a link);
//! - [`bump`]: the orchestration, [`bump::bump`].

pub mod bump;
pub mod edit;
pub mod error;
pub mod forge;
pub mod git;
pub mod worktree;

pub use bump::{bump, BumpOutcome, BumpRequest, BumpStatus, GitopsConfig};
pub use error::GitopsError;
