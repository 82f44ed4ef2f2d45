//! The one integration-test binary: one module per feature.

mod support;

mod build_semantics;
mod buildspec_corpus;
