//! `runtime-versions`: the runtimes a build image declares and CodeBuild's rules for
//! picking one of them. Pure: text in, selections out.
//!
//! An image declares its runtimes the way CodeBuild's standard images do, in
//! [`RUNTIMES_YML`] (the format of `runtimes.yml` in aws/aws-codebuild-docker-images):
//!
//! ```yaml
//! version: 0.1
//! runtimes:
//!   nodejs:
//!     versions:
//!       18:
//!         commands:
//!           - n $NODE_18_VERSION
//!       20:
//!         commands:
//!           - n $NODE_20_VERSION
//!       default:            # optional: any other exact version, `$VERSION` in the commands
//!         commands:
//!           - n $VERSION
//!   android:
//!     versions:
//!       29:
//!         requires:
//!           java: ["corretto8"]
//! ```
//!
//! [`manifest::parse`] reads that file; [`resolve::resolve`] turns a buildspec's
//! `runtime-versions` into the commands to run at the start of INSTALL, or CodeBuild's
//! error naming what the image has.

pub mod manifest;
pub mod resolve;

pub use manifest::{parse, Manifest, ManifestError, Runtime, RuntimeVersion};
pub use resolve::{resolve, ResolveError, Selection};

/// Where CodeBuild's images keep their runtimes file; runner reads it from the build
/// container at the start of INSTALL.
pub const RUNTIMES_YML: &str = "/codebuild/image/config/runtimes.yml";

/// The largest runtimes file runner reads (CodeBuild's own are about 20 KiB).
pub const MAX_RUNTIMES_YML: u64 = 1024 * 1024;
