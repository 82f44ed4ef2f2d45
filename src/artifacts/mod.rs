//! `artifacts:` — CodeBuild's artifact semantics on a host directory: select files from
//! the build's source directory and write each artifact below an output directory, as a
//! directory tree or a zip file.

pub(crate) mod beneath;
mod collect;
mod error;
pub(crate) mod glob;
mod write;
mod zip;

pub use collect::{collect, collect_all, ArtifactOutput, CollectOptions, PRIMARY_IDENTIFIER};
pub use error::ArtifactError;
