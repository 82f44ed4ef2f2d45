//! Scanners: the shared finding model (`model`), the offline OSV advisory database
//! (`osv`) with each ecosystem's version ordering (`version`), lockfile parsers
//! (`deps`), and, beside them, secrets, images, policy and SARIF.
//!
//! Architecture invariant: scanners read files and return findings; none of them decides
//! pass or fail (that is `policy`) or prints (that is `cli`).

pub mod deps;
pub mod image;
pub mod model;
pub mod osv;
pub mod policy;
pub mod sarif;
pub mod secrets;
pub mod version;
