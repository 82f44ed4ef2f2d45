//! The one integration-test binary: one module per feature.

mod support;
mod support_registry;

mod action_act;
mod advisory_freshness;
mod artifacts_e2e;
mod batch;
mod build_credentials;
mod build_docker;
mod build_semantics;
mod buildspec_corpus;
mod cache_e2e;
mod cache_s3;
mod cli_conventions;
mod cli_input;
mod cosign_bundle;
mod cvss_reference;
mod docker_remote;
mod forge_limits;
mod formats_external;
mod gitops_corpus;
mod gitops_e2e;
mod hostile_build;
mod image_e2e;
mod image_inventory;
mod pipeline;
mod registry_cred_helper;
mod registry_limits;
mod registry_retry;
mod reports_e2e;
mod runtime_versions;
mod scan_gate;
mod scan_os_families;
mod secrets_aws;
mod secrets_leak;
mod support_awscli;
mod support_moto;
mod support_pg;

mod pool_e2e;
mod pool_faults;
mod pool_notify;
mod pool_server;
mod pool_web;
mod pool_web_browser;
mod support_pool;
