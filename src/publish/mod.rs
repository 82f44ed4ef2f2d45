//! Images out: build with the engine, push through the registry HTTP API (ECR auth at
//! the edge), and the references and digests that tie them to signatures and GitOps.
//!
//! Architecture invariant: nothing here knows about buildspecs; `run` hands it an image
//! and gets a pushed digest back.

pub mod auth;
pub mod connect;
pub mod context;
pub mod ecr;
mod error;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;

pub use error::PublishError;
pub use reference::ImageRef;
