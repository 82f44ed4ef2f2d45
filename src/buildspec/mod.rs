//! Buildspec loading: YAML text → marked YAML tree → typed [`model::BuildSpec`] plus
//! compiler-style [`Diagnostic`]s.

pub mod diagnostic;
pub mod model;
pub mod parse;
pub mod yaml;

pub use diagnostic::{apply_strict, has_errors, render, Diagnostic, Severity};
pub use parse::{parse, Parsed};
