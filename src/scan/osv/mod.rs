//! Offline OSV advisory database: the record model, dump loading (`<ecosystem>/all.zip`,
//! loose `*.json`, Alpine secdb YAML), a lazy per-package index, matching, and
//! `db update` downloads.

pub mod cvss;
pub mod db;
pub mod error;
pub mod freshness;
pub mod matching;
pub mod names;
pub mod record;
pub mod secdb;
pub mod source;
pub mod update;

pub use db::{AdvisoryDb, EcosystemStats};
pub use error::OsvError;
pub use freshness::{data_age, DataAge, DEFAULT_MAX_AGE_HOURS};
pub use update::{update, Fetch, FetchError, DEFAULT_BASE_URL};

#[cfg(test)]
mod db_tests;
