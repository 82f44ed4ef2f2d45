//! The Docker Engine edge: the only module that imports `bollard`.
//!
//! Architecture invariant: a build container is owned by a `BuildContainer` value; when the
//! value goes away (normal end, error, cancellation, even `SIGKILL` of runner) the
//! container goes away too (see `container.rs` for the dead-man's switch).

mod client;
mod container;
mod error;
pub mod gate;
mod image;
mod network;
mod shell;
mod volume;

pub use client::{DockerEngine, EngineEndpoint};
pub use container::{BuildContainer, ContainerSpec, LABEL_BUILD_ID, LABEL_OWNER};
pub use error::DockerError;

/// The `io.runner.owner` label of objects this process creates (`host:pid`).
pub fn owner_label() -> String {
    container::owner()
}
pub use gate::DockerGate;
pub use image::{ImageBuildSpec, ImageInfo};
pub use network::{CREDENTIALS_GATEWAY, CREDENTIALS_NETWORK, CREDENTIALS_SUBNET};
pub use shell::{CommandExit, DockerShell};
