//! The AWS SDK configuration shared by the runner's AWS clients (`secrets::aws` for
//! Parameter Store and Secrets Manager, `cache::s3` for the S3 cache store).
//!
//! Configuration is the SDK's standard chain (`aws_config::defaults`): credentials from
//! env, profile (incl. SSO and `credential_process`), web identity, ECS/IMDS; region from
//! env/profile/IMDS; endpoints from `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>` or
//! the profile's `endpoint_url` / `services` section (the SDK applies those itself).
//! [`AwsSettings`] overrides any of them explicitly (tests use it instead of
//! process-global env vars).
//!
//! HTTP: hyper 1 + rustls with the `ring` provider (no aws-lc build), trusting the
//! platform's root store. Retries: standard mode, exponential backoff with jitter, 5
//! attempts by default, short base delay so an unreachable endpoint fails within a few
//! seconds. Timeouts: 3 s to connect, 30 s per attempt (clients that move large bodies
//! override the attempt timeout per operation).
//!
//! Errors: [`classify`] reduces any SDK error to a [`Failure`] whose text never quotes a
//! request or response body (secret values, object contents).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Static credentials for [`AwsSettings`] (its `Debug` redacts the secret key).
pub use aws_credential_types::Credentials;

/// Explicit overrides of the SDK's standard configuration chain; `Default` = none.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Endpoint for every service; wins over `AWS_ENDPOINT_URL*` and the profile.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// Skip the credential chain and use these.
    pub credentials: Option<Credentials>,
    /// Total attempts per request, first one included (default 5).
    pub max_attempts: Option<u32>,
    /// TCP/TLS connect timeout (default 3 s).
    pub connect_timeout: Option<Duration>,
    /// Base delay of the exponential backoff (default 200 ms, capped at 5 s).
    pub initial_backoff: Option<Duration>,
}

/// Default time limit of one attempt of a request.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The SDK's standard configuration chain with `settings` applied on top.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let retry = RetryConfig::standard()
        .with_max_attempts(settings.max_attempts.unwrap_or(5).max(1))
        .with_initial_backoff(
            settings
                .initial_backoff
                .unwrap_or(Duration::from_millis(200)),
        )
        .with_max_backoff(Duration::from_secs(5));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout.unwrap_or(Duration::from_secs(3)))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(credentials) = &settings.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    let config = loader.load().await;
    // Which settings were given, never their values (credentials stay out of logs).
    tracing::debug!(
        region = ?config.region(),
        endpoint_url = ?settings.endpoint_url,
        explicit_credentials = settings.credentials.is_some(),
        "AWS configuration loaded"
    );
    config
}

/// The SDK's HTTPS client: hyper 1 + rustls with the `ring` provider (no aws-lc build),
/// trusting the platform's root store (`/etc/ssl/certs/ca-certificates.crt` on Debian).
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The endpoint configured for a service, if any, with the precedence of the generated
/// `Config::from(&SdkConfig)`: an explicit `endpoint_url` (settings, loader) wins, then
/// `AWS_ENDPOINT_URL_<SERVICE>` / the profile's service section, then `AWS_ENDPOINT_URL`
/// / profile `endpoint_url`. `service_id` is the SDK's service id (`SSM`,
/// `Secrets Manager`, `S3`).
pub fn endpoint_override(config: &SdkConfig, service_id: &str) -> Option<String> {
    let explicit = config.get_origin("endpoint_url").is_client_config();
    let service_specific = if explicit {
        None
    } else {
        config.service_config().and_then(|conf| {
            let key = aws_types::service_config::ServiceConfigKey::builder()
                .service_id(service_id)
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .ok()?;
            conf.load_config(key)
        })
    };
    service_specific.or_else(|| config.endpoint_url().map(str::to_string))
}

/// The endpoint URL a client built from `config` sends requests to: the override (see
/// [`endpoint_override`]), else the regional AWS endpoint `https://<prefix>.<region>...`.
pub fn effective_endpoint(config: &SdkConfig, service_id: &str, prefix: &str) -> String {
    if let Some(url) = endpoint_override(config, service_id) {
        return url;
    }
    match config.region() {
        Some(region) => {
            let suffix = if region.as_ref().starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("https://{prefix}.{region}.{suffix}")
        }
        None => format!("https://{prefix}.<region>.amazonaws.com"),
    }
}

/// What went wrong with one SDK call, reduced to text that cannot contain a request or
/// response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused, DNS failure, timeout...
    Unreachable(String),
    /// The request could not be built or signed (no credentials, no region...).
    Setup(String),
    /// The service answered with an error code.
    Service {
        /// The error code; `None` if the body could not be parsed or was empty (S3's
        /// `HeadObject` 404, moto's XML answers to JSON-protocol services).
        code: Option<String>,
        message: Option<String>,
        status: u16,
    },
    /// The service answered with something the SDK could not parse (HTTP status).
    Response(u16),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(d) => write!(f, "endpoint unreachable: {d}"),
            Failure::Setup(d) => write!(f, "{d}"),
            Failure::Service {
                code,
                message,
                status,
            } => write!(
                f,
                "{} (HTTP {status}){}",
                code.as_deref().unwrap_or("error"),
                message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            Failure::Response(status) => write!(f, "unexpected answer (HTTP {status})"),
        }
    }
}

impl Failure {
    /// The service's error code, if it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Failure::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Service { status, .. } | Failure::Response(status) => Some(*status),
            _ => None,
        }
    }
}

/// Reduces an SDK error to a [`Failure`]. `setup_hint` is appended to setup failures
/// that mention credentials (e.g. what to set or run to get some).
pub fn classify<E>(err: &SdkError<E, HttpResponse>, setup_hint: &str) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let setup = |e: &(dyn std::error::Error + 'static)| {
        let mut detail = error_chain(e);
        if detail.contains("credential") && !setup_hint.is_empty() {
            detail.push_str(" — ");
            detail.push_str(setup_hint);
        }
        Failure::Setup(detail)
    };
    match err {
        SdkError::TimeoutError(_) => Failure::Unreachable("timed out".to_string()),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            Failure::Unreachable("timed out".to_string())
        }
        SdkError::DispatchFailure(d) if d.is_io() => Failure::Unreachable(
            d.as_connector_error()
                .map(|c| network_detail(c))
                .unwrap_or_else(|| "network error".to_string()),
        ),
        // Construction and non-network dispatch failures (credentials, signing, endpoint
        // resolution) never carry request or response data.
        SdkError::DispatchFailure(d) => setup(
            d.as_connector_error()
                .and_then(std::error::Error::source)
                .unwrap_or(err),
        ),
        SdkError::ConstructionFailure(_) => setup(std::error::Error::source(err).unwrap_or(err)),
        SdkError::ServiceError(e) => Failure::Service {
            code: e.err().code().map(str::to_string),
            message: e.err().message().map(str::to_string),
            status: e.raw().status().as_u16(),
        },
        // Parse errors can quote the response body.
        SdkError::ResponseError(r) => Failure::Response(r.raw().status().as_u16()),
        _ => Failure::Setup("unexpected SDK error".to_string()),
    }
}

/// A one-line description of an error: the chain's messages joined with `: `, each
/// message once.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The most specific description of a network failure: `connection refused`, or the
/// innermost error's text (DNS, TLS...).
pub fn network_detail(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current: &(dyn std::error::Error + 'static) = err;
    loop {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut => return "timed out".into(),
                _ => {}
            }
        }
        match current.source() {
            Some(next) => current = next,
            None => return current.to_string(),
        }
    }
}
