//! The Docker Engine edge: the only module that imports `bollard`.
//!
//! Architecture invariant: a build container is owned by a `BuildContainer` value; when the
//! value goes away (normal end, error, cancellation, even `SIGKILL` of runner) the
//! container goes away too (see `container.rs` for the dead-man's switch).

mod client;
mod container;
mod error;
mod image;
mod shell;
mod volume;

pub use client::{DockerEngine, EngineEndpoint};
pub use container::{BuildContainer, ContainerSpec, LABEL_BUILD_ID, LABEL_OWNER};
pub use error::DockerError;
pub use image::{ImageBuildSpec, ImageInfo};
pub use shell::{CommandExit, DockerShell};
