//! The process environment, read at the edge. The library never reads it: every setting
//! and credential below is passed in (a [`crate::pipeline::BuildRequest`],
//! [`ConnectOptions`](crate::publish::connect::ConnectOptions), a GitOps request), so an
//! agent can run two jobs with different credentials in one process.

use crate::publish::auth::RegistryAuth;
use crate::secrets::{NamedSecrets, Secret};
use std::path::PathBuf;

fn var_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

/// A variable's value as a secret (unset or not UTF-8: none).
pub fn secret(name: &str) -> Option<Secret> {
    std::env::var(name).ok().map(Secret::new)
}

/// runner's data directory: RUNNER_DATA_DIR, else `$XDG_DATA_HOME/runner`, else
/// `~/.local/share/runner`, else `./.runner`.
pub fn data_dir() -> PathBuf {
    crate::datadir::default_data_dir(
        var_path("RUNNER_DATA_DIR"),
        var_path("XDG_DATA_HOME"),
        var_path("HOME"),
    )
}

/// The Docker engine: DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (default
/// `~/.docker`), as docker's CLI reads them.
pub fn engine_endpoint() -> Result<crate::docker::EngineEndpoint, crate::docker::DockerError> {
    let cert_dir = var_path("DOCKER_CERT_PATH")
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| var_path("HOME").map(|h| h.join(".docker")));
    crate::docker::EngineEndpoint::from_docker_env(
        std::env::var("DOCKER_HOST").ok().as_deref(),
        std::env::var("DOCKER_TLS_VERIFY").ok().as_deref(),
        cert_dir.as_deref(),
    )
}

/// RUNNER_ADVISORIES: the OSV dumps (default `<data dir>/advisories`).
pub fn advisories() -> Option<PathBuf> {
    var_path("RUNNER_ADVISORIES").filter(|p| !p.as_os_str().is_empty())
}

/// RUNNER_PUSH_CONCURRENCY: blob uploads at once (a positive number; anything else
/// keeps the default).
pub fn push_concurrency() -> Option<usize> {
    std::env::var("RUNNER_PUSH_CONCURRENCY")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
}

/// Registry credentials: RUNNER_REGISTRY_USER and RUNNER_REGISTRY_PASSWORD, else the
/// `auths` of docker's `config.json` in DOCKER_CONFIG (default `~/.docker`).
pub fn registry_auth() -> RegistryAuth {
    let basic = match (
        std::env::var("RUNNER_REGISTRY_USER"),
        secret("RUNNER_REGISTRY_PASSWORD"),
    ) {
        (Ok(user), Some(password)) => Some((user, password)),
        _ => None,
    };
    RegistryAuth {
        basic,
        docker_config: var_path("DOCKER_CONFIG")
            .or_else(|| var_path("HOME").map(|h| h.join(".docker"))),
    }
}

/// GitOps tokens by variable name (a target's `token-env`, RUNNER_GITOPS_TOKEN,
/// GITHUB_TOKEN, GITLAB_TOKEN, GITEA_TOKEN): answered from this process's environment
/// when a target asks.
pub fn gitops_tokens() -> NamedSecrets {
    NamedSecrets::from_fn(secret)
}

/// Values runner itself holds that must never appear in a build's output: its own AWS
/// secret key and session token. Real secret access keys are 40 characters and session
/// tokens far longer; shorter values are local stand-ins' dummies (`test`), and masking
/// them would blank every "test" in the log.
pub fn own_masked_values() -> Vec<(String, Secret)> {
    ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
        .iter()
        .filter_map(|n| {
            std::env::var(n)
                .ok()
                .filter(|v| v.len() >= 16)
                .map(|v| (n.to_string(), Secret::new(v)))
        })
        .collect()
}

/// What `runner build` serves the build of AWS: runner's own credentials (or the role's)
/// and the endpoint overrides it uses itself (`AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_<SERVICE>`), when asked for.
pub fn build_aws(
    source: super::args::BuildCredentialsSource,
    role: Option<String>,
) -> crate::build_credentials::BuildAwsSettings {
    let role = role.filter(|r| !r.trim().is_empty());
    let serve = source == super::args::BuildCredentialsSource::Runner || role.is_some();
    let mut endpoints: Vec<(String, String)> = if serve {
        std::env::vars()
            .filter(|(name, value)| {
                (name == "AWS_ENDPOINT_URL" || name.starts_with("AWS_ENDPOINT_URL_"))
                    && !value.trim().is_empty()
            })
            .collect()
    } else {
        Vec::new()
    };
    endpoints.sort();
    let ecs = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    crate::build_credentials::BuildAwsSettings {
        serve,
        role_arn: role,
        endpoints,
        host_uses_ecs_endpoint: ecs("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            || std::env::var("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                .is_ok_and(|v| v.contains("169.254.170.2")),
    }
}

/// Where `cache:` entries go, from `--no-cache`, `--cache-s3`, `--cache-dir` and
/// `--cache-size` (MiB), as `runner build` and `runner agent` both take them.
pub fn cache_choice(
    no_cache: bool,
    cache_s3: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_size_mib: u64,
) -> crate::pipeline::CacheChoice {
    use crate::pipeline::CacheChoice;
    match (no_cache, cache_s3) {
        (true, _) => CacheChoice::Off,
        (false, Some(url)) => CacheChoice::S3(url),
        (false, None) => CacheChoice::Local {
            dir: cache_dir,
            max_bytes: cache_size_mib.saturating_mul(1024 * 1024),
        },
    }
}
