//! AWS credentials for the build, the way CodeBuild gives a build its service role.
//!
//! runner serves the build an ECS-style container-credentials endpoint: an HTTP server on
//! the host at `169.254.170.2:<port>` (an address the AWS SDKs and CLI accept in
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`; the host owns it through the shared
//! credentials network, see `docker/network.rs`) that answers a request carrying the
//! build's authorization token with credentials from runner's own chain, or from a role
//! assumed through STS (`--build-role`). They are refreshed when less than
//! [`REFRESH_BEFORE`] remain. The endpoint's address and token, and runner's endpoint
//! overrides (`AWS_ENDPOINT_URL*`, loopback ones forwarded so the container reaches
//! them), are exported in the build shell over its standard input like resolved
//! secrets: nothing of them is in the container's `Env` (`docker inspect`). The
//! endpoint lives as long as the build's [`Session`].
//!
//! Architecture invariant: credentials leave this module only in the endpoint's answer
//! to a request that carries the token; the library reads no environment (the edge
//! passes [`BuildAwsSettings`] in).

mod endpoint;
mod forward;
mod session_token;

use crate::aws_config::AwsSettings;
use crate::docker::{DockerEngine, CREDENTIALS_GATEWAY};
use crate::secrets::Secret;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Credentials closer than this to their expiry are refreshed before they are served.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The variables the build shell gets.
pub const FULL_URI_VAR: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const TOKEN_VAR: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";

/// What the caller asks for, read at its edge (flags, runner.yml, environment).
#[derive(Debug, Clone, Default)]
pub struct BuildAwsSettings {
    /// Serve credentials to the build (`--build-credentials runner`); `false`: nothing is
    /// served and nothing is passed in.
    pub serve: bool,
    /// Serve this role's credentials (STS AssumeRole with runner's own credentials)
    /// instead of runner's own.
    pub role_arn: Option<String>,
    /// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` as runner uses them, passed
    /// into the build (a loopback address is forwarded: the container's loopback is its
    /// own).
    pub endpoints: Vec<(String, String)>,
    /// runner itself gets its credentials from an ECS endpoint on 169.254.170.2
    /// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is set: runner runs in ECS or CodeBuild).
    /// The credentials network would give the host that address and hide the real
    /// endpoint, so serving is refused.
    pub host_uses_ecs_endpoint: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildCredentialsError {
    #[error(
        "no AWS credentials to give the build ({0}); configure runner's own (environment, \
         profile, SSO, instance role) or pass --build-credentials none"
    )]
    NoCredentials(String),
    #[error(
        "cannot assume role {role} for the build ({reason}); check that runner's credentials \
         may call sts:AssumeRole on it and that the role trusts them"
    )]
    AssumeRole { role: String, reason: String },
    #[error(
        "runner's own credentials come from the ECS endpoint on 169.254.170.2 \
         (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set), the address the build's endpoint \
         would take; run builds here with --build-credentials none"
    )]
    EcsHost,
    #[error("the build's credentials endpoint cannot be set up: {0}")]
    Network(#[from] crate::docker::DockerError),
    #[error(
        "cannot listen on {addr} for the build's credentials endpoint ({source}); the host \
         needs that address (the runner-credentials Docker network gives it)"
    )]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Credentials ready to serve to builds: the provider, what it last gave, the token.
pub struct BuildCredentials {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Credentials>,
    token: Secret,
    role_arn: Option<String>,
    endpoints: Vec<(String, String)>,
}

impl std::fmt::Debug for BuildCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildCredentials")
            .field("role_arn", &self.role_arn)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl BuildCredentials {
    /// Resolves runner's credential chain (and assumes the role) once, so a problem is a
    /// setup error before any container and the values can be masked. `None` when the
    /// settings do not ask for credentials.
    pub async fn prepare(
        settings: &BuildAwsSettings,
        aws: &AwsSettings,
        session_name: &str,
    ) -> Result<Option<Self>, BuildCredentialsError> {
        if !settings.serve && settings.role_arn.is_none() {
            return Ok(None);
        }
        if settings.host_uses_ecs_endpoint {
            return Err(BuildCredentialsError::EcsHost);
        }
        let config = crate::aws_config::load_sdk_config(aws).await;
        let Some(own) = config.credentials_provider() else {
            return Err(BuildCredentialsError::NoCredentials(
                "the SDK's credential chain is empty".into(),
            ));
        };
        let provider = match &settings.role_arn {
            // Long-term keys never reach the build: they are exchanged for a session
            // (STS GetSessionToken), as CodeBuild serves temporary credentials too.
            None => SharedCredentialsProvider::new(session_token::SessionTokens::new(&config, own)),
            Some(role) => SharedCredentialsProvider::new(
                aws_config::sts::AssumeRoleProvider::builder(role.clone())
                    .session_name(session_name)
                    .configure(&config)
                    .build_from_provider(own)
                    .await,
            ),
        };
        Self::with_provider(provider, settings).await
    }

    /// [`prepare`](Self::prepare) with a given provider.
    pub async fn with_provider(
        provider: SharedCredentialsProvider,
        settings: &BuildAwsSettings,
    ) -> Result<Option<Self>, BuildCredentialsError> {
        let first = provider
            .provide_credentials()
            .await
            .map_err(|e| match &settings.role_arn {
                Some(role) => BuildCredentialsError::AssumeRole {
                    role: role.clone(),
                    reason: crate::aws_config::error_chain(&e),
                },
                None => BuildCredentialsError::NoCredentials(crate::aws_config::error_chain(&e)),
            })?;
        Ok(Some(Self {
            provider,
            cached: tokio::sync::Mutex::new(first),
            token: Secret::new(format!("{:032x}", rand::random::<u128>())),
            role_arn: settings.role_arn.clone(),
            endpoints: settings.endpoints.clone(),
        }))
    }

    /// Values the build's masker must hide: the token and the credentials served first.
    pub async fn masked_values(&self) -> Vec<(String, Secret)> {
        let cached = self.cached.lock().await;
        let mut out = vec![(TOKEN_VAR.to_string(), self.token.clone())];
        out.push((
            "build credentials' secret access key".into(),
            Secret::new(cached.secret_access_key()),
        ));
        if let Some(t) = cached.session_token() {
            out.push(("build credentials' session token".into(), Secret::new(t)));
        }
        out
    }

    /// The credentials to serve now: the cached ones, refreshed first when less than
    /// [`REFRESH_BEFORE`] remain (or when they have no expiry but are older than that:
    /// a chain that rotates them is followed).
    pub async fn current(&self) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if needs_refresh(cached.expiry(), SystemTime::now()) {
            match self.provider.provide_credentials().await {
                Ok(fresh) => *cached = fresh,
                Err(e) => {
                    let message = crate::aws_config::error_chain(&e);
                    // Still valid: serve them rather than fail the build's call.
                    if still_valid(cached.expiry(), SystemTime::now()) {
                        tracing::warn!(error = %message, "refreshing the build's credentials failed");
                    } else {
                        return Err(message);
                    }
                }
            }
        }
        Ok(cached.clone())
    }

    /// Starts the endpoint (and the forwarders of loopback endpoint overrides) for one
    /// build; they stop when the returned [`Session`] is dropped.
    pub async fn start(
        self: &Arc<Self>,
        engine: &DockerEngine,
    ) -> Result<Session, BuildCredentialsError> {
        // Another network owning the subnet (a CodeBuild local agent's, say) gives the host
        // the address too: what counts is that the endpoint can listen on it.
        let network = engine.ensure_credentials_network().await;
        let (uri, server) = match endpoint::serve(self.clone()).await {
            Ok(served) => served,
            Err(e) => return Err(network.err().map(Into::into).unwrap_or(e)),
        };
        if let Err(e) = network {
            tracing::debug!(error = %e, "no runner-credentials network, but 169.254.170.2 is the host's");
        }
        let mut tasks = vec![server];
        let mut env = vec![(FULL_URI_VAR.to_string(), uri)];
        let mut forwarded: Vec<(String, String)> = Vec::new();
        for (name, url) in &self.endpoints {
            let inside = match forward::loopback_target(url) {
                None => url.clone(),
                Some(target) => match forwarded.iter().find(|(t, _)| *t == target.key()) {
                    Some((_, address)) => target.rewrite(url, address),
                    None => {
                        let (address, task) = forward::start(&target).await?;
                        forwarded.push((target.key(), address.clone()));
                        tasks.push(task);
                        target.rewrite(url, &address)
                    }
                },
            };
            env.push((name.clone(), inside));
        }
        Ok(Session {
            env,
            secret_env: vec![(TOKEN_VAR.to_string(), self.token.clone())],
            tasks,
        })
    }
}

/// Whether credentials expiring at `expiry` are refreshed at `now`.
fn needs_refresh(expiry: Option<SystemTime>, now: SystemTime) -> bool {
    match expiry {
        Some(at) => at <= now + REFRESH_BEFORE,
        None => false,
    }
}

fn still_valid(expiry: Option<SystemTime>, now: SystemTime) -> bool {
    expiry.is_none_or(|at| at > now)
}

/// One build's endpoint: the build's variables, and the tasks serving it.
pub struct Session {
    /// Not secret: the endpoint's URI and the endpoint overrides (the container's `Env`).
    env: Vec<(String, String)>,
    /// The authorization token: exported in the build shell over its standard input,
    /// never in the container's `Env` (`docker inspect` would show it).
    secret_env: Vec<(String, Secret)>,
    tasks: Vec<Task>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("env", &self.env)
            .field("secret_env", &"***")
            .finish()
    }
}

impl Session {
    /// Plain variables: `AWS_CONTAINER_CREDENTIALS_FULL_URI` and the endpoint overrides.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Secret variables: the authorization token.
    pub fn secret_env(&self) -> &[(String, Secret)] {
        &self.secret_env
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.stop();
        }
    }
}

/// A serving task and its stop signal.
struct Task {
    handle: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Task {
    fn stop(&self) {
        let _ = self.stop.send(true);
        self.handle.abort();
    }
}

/// The host address the endpoint and the forwarders listen on.
fn listen_addr() -> std::net::SocketAddr {
    let ip: std::net::Ipv4Addr = [169, 254, 170, 2].into();
    debug_assert_eq!(ip.to_string(), CREDENTIALS_GATEWAY);
    (ip, 0).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{error::CredentialsError, future};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Gives credentials `key-<n>` valid for `lifetimes[n]` from now (the last one
    /// repeats), or an error once the list says `None`.
    #[derive(Debug)]
    struct Sequence {
        calls: Arc<AtomicUsize>,
        lifetimes: Vec<Option<Duration>>,
    }

    impl ProvideCredentials for Sequence {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let lifetime = self.lifetimes[n.min(self.lifetimes.len() - 1)];
            future::ProvideCredentials::ready(match lifetime {
                Some(d) => Ok(Credentials::new(
                    format!("AKIA{n}"),
                    format!("key-{n}"),
                    Some(format!("token-{n}")),
                    Some(SystemTime::now() + d),
                    "test",
                )),
                None => Err(CredentialsError::not_loaded("gone")),
            })
        }
    }

    async fn served(lifetimes: Vec<Option<Duration>>) -> (BuildCredentials, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seq = Sequence {
            calls: calls.clone(),
            lifetimes,
        };
        let settings = BuildAwsSettings {
            serve: true,
            ..Default::default()
        };
        let creds = BuildCredentials::with_provider(SharedCredentialsProvider::new(seq), &settings)
            .await
            .unwrap()
            .unwrap();
        (creds, calls)
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_refreshed_before_they_are_served() {
        let hour = Some(Duration::from_secs(3600));
        // Two minutes left: below REFRESH_BEFORE, so the next request gets new ones.
        let (creds, seq) = served(vec![Some(Duration::from_secs(120)), hour]).await;
        assert_eq!(creds.current().await.unwrap().secret_access_key(), "key-1");
        // An hour left: served from the cache, no new call.
        assert_eq!(creds.current().await.unwrap().secret_access_key(), "key-1");
        assert_eq!(seq.load(Ordering::SeqCst), 2);
        // The first credentials (and the token) are what the masker gets.
        let (creds, _) = served(vec![hour]).await;
        let masked: Vec<String> = creds
            .masked_values()
            .await
            .iter()
            .map(|(_, v)| v.expose().to_string())
            .collect();
        assert!(masked.contains(&"key-0".to_string()) && masked.contains(&"token-0".to_string()));
        assert!(masked.contains(&creds.token.expose().to_string()));
    }

    #[tokio::test]
    async fn a_failed_refresh_serves_what_is_still_valid_and_fails_once_expired() {
        let (creds, _) = served(vec![Some(Duration::from_secs(120)), None]).await;
        assert_eq!(creds.current().await.unwrap().secret_access_key(), "key-0");
        let (creds, _) = served(vec![Some(Duration::ZERO), None]).await;
        assert!(creds.current().await.is_err());
    }

    #[tokio::test]
    async fn nothing_is_prepared_unless_asked_for() {
        let none =
            BuildCredentials::prepare(&BuildAwsSettings::default(), &AwsSettings::default(), "s")
                .await
                .unwrap();
        assert!(none.is_none());
        let on_ecs = BuildAwsSettings {
            serve: true,
            host_uses_ecs_endpoint: true,
            ..Default::default()
        };
        let refused = BuildCredentials::prepare(&on_ecs, &AwsSettings::default(), "s").await;
        assert!(matches!(refused, Err(BuildCredentialsError::EcsHost)));
    }

    #[tokio::test]
    async fn a_chain_without_credentials_is_a_setup_error_naming_the_fix() {
        let seq = Sequence {
            calls: Arc::new(AtomicUsize::new(0)),
            lifetimes: vec![None],
        };
        let settings = BuildAwsSettings {
            serve: true,
            ..Default::default()
        };
        let err = BuildCredentials::with_provider(SharedCredentialsProvider::new(seq), &settings)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("--build-credentials none"),
            "{err}"
        );
    }

    #[test]
    fn refreshes_only_near_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!needs_refresh(None, now));
        assert!(!needs_refresh(Some(now + Duration::from_secs(3600)), now));
        assert!(!needs_refresh(
            Some(now + REFRESH_BEFORE + Duration::from_secs(1)),
            now
        ));
        assert!(needs_refresh(Some(now + REFRESH_BEFORE), now));
        assert!(needs_refresh(Some(now - Duration::from_secs(1)), now));
    }
}
