//! Signatures and attestations in cosign's format: keys (`keys`), the registry layout and
//! verification (`cosign`; Sigstore bundles attached as OCI referrers in `bundle`), and the statements runner attests (`provenance`).
//!
//! Architecture invariant: the private key never leaves `SigningKey`; nothing here
//! prints key material or the key's password.

pub mod bundle;
pub mod cosign;
mod error;
pub mod keys;
pub mod provenance;

pub use error::SignError;
pub use keys::{generate_key_pair, SigningKey, VerifyingKey};
