//! Secret values and the masking that keeps them out of everything runner prints or stores.
//!
//! [`Secret`] wraps a resolved value (Parameter Store, Secrets Manager, a local secrets file):
//! it prints as `***`, is never serialized and is zeroed on drop. [`Masker`] is built once from
//! all resolved secrets and replaces every occurrence (and common encodings) with `***` in log
//! lines, events, error messages and reports; [`StreamMasker`] does the same for raw byte
//! streams whose line boundaries are unknown.

pub mod aws;
pub mod error;
pub mod local;
mod mask;
pub mod reference;
mod secret;

pub use error::{Problem, ResolveError};
pub use mask::{Masker, SkipReason, SkippedSecret, StreamMasker, MASK, MIN_SECRET_LEN};
pub use secret::{NamedSecrets, Secret};
