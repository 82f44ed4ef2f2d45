//! The agent pool: `runner server` keeps a queue of jobs, `runner agent`s claim them under
//! leases and run them through the same [`crate::pipeline`] as `runner build`, and
//! `runner submit` / `runner jobs` put jobs in and follow them.
//!
//! - [`protocol`]: the versioned wire types both sides share.
//! - [`archive`]: source archives (tar.zst), packed deterministically, validated before
//!   they are stored or unpacked.
//! - [`store`]: the job store (SQLite or PostgreSQL): jobs, attempts, leases, logs,
//!   artifacts, tokens; wake-ups ([`store::hub`]) in-process or via LISTEN/NOTIFY.
//! - [`server`]: `runner server`'s HTTP API (axum) over the store and the blob store.
//! - [`client`]: the protocol client `runner agent`, `runner submit` and `runner jobs`
//!   share.
//! - [`agent`]: claim slots that run jobs through the pipeline and ship their masked
//!   events, heartbeats, cancel watch, artifacts and completion.
//! - [`dora`]: delivery metrics (deployment frequency, lead time, change failure rate,
//!   time to restore) computed from the server's records (pure).
//!
//! Architecture invariants:
//! - A job is never lost and never completed twice: a claim is a lease with a fencing
//!   token (the attempt number and a lease id); an expired lease puts the job back in
//!   the queue; a request under a lost lease is refused (409) and changes nothing.
//! - Secrets never reach the server: agents resolve them and mask every line before it
//!   leaves the agent.
//! - Nothing here reads the process environment.

pub mod agent;
pub mod archive;
pub mod client;
pub mod dora;
pub mod markup;
pub mod protocol;
pub mod server;
pub mod store;
