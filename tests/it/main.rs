//! The one integration-test binary: one module per feature.

mod support;

mod artifacts_e2e;
mod batch;
mod build_semantics;
mod buildspec_corpus;
mod cache_e2e;
mod cache_s3;
mod reports_e2e;
mod secrets_aws;
mod secrets_leak;
mod support_moto;
