//! `runner agent`: flags and environment into an [`AgentConfig`] (the build settings as
//! `runner build` reads them), signals into drain/abort, the agent's notes to stderr.

use super::args::HostCa as HostCaFlag;
use super::config;
use super::exit::ExitStatus;
use super::jobs::Conn;
use crate::pipeline::{BuildRequest, Credentials};
use crate::pool::agent::{self, AgentConfig, AgentNote, Notifier, StopHandle};
use crate::pool::protocol;
use crate::secrets::Secret;
use clap::builder::RangedU64ValueParser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// This agent's labels; it takes jobs whose labels it all has: os=linux,size=large
    #[arg(long, value_name = "K=V,...", env = "RUNNER_AGENT_LABELS", value_parser = labels)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Jobs at once
    #[arg(long, default_value_t = 1, value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub capacity: usize,
    /// The agent's name in the pool (default: the host name and a random suffix)
    #[arg(long, env = "RUNNER_AGENT_NAME")]
    pub name: Option<String>,
    /// How long one claim waits on the server for a job, in seconds
    #[arg(long, default_value_t = protocol::MAX_WAIT_SECS, value_parser = RangedU64ValueParser::<u64>::new().range(1..=protocol::MAX_WAIT_SECS))]
    pub poll_secs: u64,
    /// The build image when neither the job's runner.yml nor the buildspec names one
    #[arg(long, short = 'i', value_name = "IMAGE", env = "RUNNER_IMAGE")]
    pub image: Option<String>,
    /// Resolve the builds' secret references from this JSON file instead of AWS
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Trust the host's CA bundle in build containers
    #[arg(long, value_enum, default_value_t = HostCaFlag::Auto)]
    pub host_ca: HostCaFlag,
    /// The local cache directory (default: <data dir>/cache)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep the cache in S3 (shared by the pool): s3://bucket/prefix
    #[arg(long, value_name = "S3_URL", conflicts_with = "cache_dir")]
    pub cache_s3: Option<String>,
    /// The local cache's size limit in MiB
    #[arg(long, value_name = "MIB", default_value_t = 5120, value_parser = RangedU64ValueParser::<u64>::new().range(1..=16_777_216))]
    pub cache_size: u64,
    /// Neither restore nor save the buildspecs' caches
    #[arg(long)]
    pub no_cache: bool,
    /// Do not keep cache paths in engine volumes between builds
    #[arg(long)]
    pub no_cache_volumes: bool,
    /// Every job asks for privileged mode (for buildspecs that run docker themselves, as
    /// on CodeBuild): by default it gets Docker through runner's gate (see --docker)
    #[arg(long)]
    pub privileged: bool,
    /// What a job gets for running `docker`, as `runner build --docker`: `gate` (the host
    /// engine through runner's filter; the default for privileged builds), `privileged` (a
    /// real privileged container) or `none`. Default: the project's runner.yml `docker:`
    #[arg(long, value_enum, value_name = "MODE", env = "RUNNER_DOCKER")]
    pub docker: Option<crate::docker::gate::DockerMode>,
    /// Reach a registry at another URL when pushing: HOST=URL (repeatable)
    #[arg(long = "registry-endpoint", value_name = "HOST=URL")]
    pub registry_endpoint: Vec<String>,
    #[arg(
        long = "registry-endpoints",
        value_name = "HOST=URL,...",
        env = "RUNNER_REGISTRY_ENDPOINTS"
    )]
    pub registry_endpoints: Option<String>,
    /// The signing key for projects that sign their image
    #[arg(long, value_name = "FILE", env = "RUNNER_SIGN_KEY")]
    pub sign_key: Option<String>,
    #[command(flatten)]
    pub password: super::args::KeyPassword,
    /// Longest silence from a registry when pushing, in seconds (as `runner build`)
    #[arg(
        long = "registry-timeout",
        value_name = "SECONDS",
        env = "RUNNER_REGISTRY_TIMEOUT"
    )]
    pub registry_timeout: Option<String>,
    /// AWS_REGION inside builds
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// AWS credentials for the jobs, as `runner build --build-credentials`: `runner` serves
    /// the agent's own (its credential chain) through the container-credentials endpoint,
    /// with its AWS_ENDPOINT_URL* passed in; `none` (the default) serves nothing: jobs come
    /// from a server, so serving the agent's credentials to them is an explicit choice
    #[arg(
        long,
        value_enum,
        env = "RUNNER_BUILD_CREDENTIALS",
        default_value = "none",
        value_name = "SOURCE"
    )]
    pub build_credentials: super::args::BuildCredentialsSource,
    /// Serve the jobs this role's credentials (STS AssumeRole with the agent's own);
    /// implies --build-credentials runner
    #[arg(long, env = "RUNNER_BUILD_ROLE", value_name = "ARN")]
    pub build_role: Option<String>,
}

fn labels(s: &str) -> Result<BTreeMap<String, String>, protocol::LabelError> {
    protocol::parse_labels(s)
}

pub async fn run(args: AgentArgs) -> ExitStatus {
    let client = match args.conn.client() {
        Ok(c) => c,
        Err(e) => return super::jobs::client_error(&e),
    };
    let data_dir = super::data_dir();
    let name = args.name.clone().unwrap_or_else(default_name);
    if !protocol::valid_label_part(&name) {
        eprintln!("error: --name `{name}`: 1-63 characters of letters, digits, `.`, `_`, `-`");
        return ExitStatus::Setup;
    }
    let mut template = match template(&args, &data_dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Setup;
        }
    };
    template.engine = match config::engine_endpoint() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Setup;
        }
    };
    let config = AgentConfig {
        name,
        labels: args.labels.clone().unwrap_or_default(),
        capacity: args.capacity,
        work_root: data_dir.join("agent"),
        template,
        claim_wait_secs: args.poll_secs,
    };
    let notify: Notifier = Arc::new(|note: &AgentNote| eprintln!("runner agent: {note}"));
    let (handle, stop) = StopHandle::new();
    watch_signals(handle);
    match agent::run(client, config, stop, notify).await {
        Ok(summary) => {
            eprintln!(
                "runner agent: stopped ({} completed, {} released, {} lost)",
                summary.completed, summary.released, summary.lost
            );
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitStatus::Setup
        }
    }
}

/// `<host>-<4 hex>`.
fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(50)
        .collect();
    let host = if host.is_empty() {
        "agent".into()
    } else {
        host
    };
    let suffix: u16 = rand::random();
    format!("{host}-{suffix:04x}")
}

/// The build settings every job starts from, read the way `runner build` reads them.
fn template(
    args: &AgentArgs,
    data_dir: &std::path::Path,
) -> Result<BuildRequest, crate::publish::PublishError> {
    // The agent's own AWS secrets never reach a log.
    let masked = config::own_masked_values();
    let credentials = Credentials {
        registry_endpoints: super::image::registry_endpoints(
            &args.registry_endpoint,
            args.registry_endpoints.as_deref(),
        )?,
        registry_auth: config::registry_auth(),
        gitops_tokens: config::gitops_tokens(),
        aws: Default::default(),
        sign_key: args.sign_key.clone(),
        key_password: args.password.key_password.clone().map(Secret::new),
        registry_limits: super::image::registry_limits(args.registry_timeout.as_deref())?,
        masked,
        // Jobs come from a server: the agent's own credentials are served to them only
        // when asked for (--build-credentials runner / --build-role).
        build_aws: config::build_aws(args.build_credentials, args.build_role.clone()),
    };
    let mut req = BuildRequest::new(data_dir.join("agent"), data_dir);
    req.advisories = config::advisories();
    req.push_concurrency = config::push_concurrency();
    req.image = args.image.clone();
    req.secrets_file = args.secrets_file.clone();
    req.host_ca = args.host_ca.into();
    req.cache = config::cache_choice(
        args.no_cache,
        args.cache_s3.clone(),
        args.cache_dir.clone(),
        args.cache_size,
    );
    req.cache_volumes = !args.no_cache_volumes;
    req.privileged = args.privileged;
    req.docker = args.docker;
    req.region = args.region.clone();
    req.credentials = credentials;
    Ok(req)
}

/// First Ctrl-C or SIGTERM: drain. Second: cancel running jobs and give them back.
fn watch_signals(handle: StopHandle) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            {
                match term.as_mut() {
                    Some(t) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {},
                            _ = t.recv() => {},
                        }
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
            if handle.escalate() == agent::Stop::Abort {
                return;
            }
        }
    });
}
