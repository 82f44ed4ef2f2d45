//! `runner server` (the agent pool's HTTP API) and `runner server token create|list|revoke`.

use super::exit::ExitStatus;
use crate::pool::protocol::Role;
use crate::pool::server::notify::NotifyConfig;
use crate::pool::server::{BlobStore, ServerConfig};
use crate::pool::store::{Store, StoreConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[command(subcommand)]
    command: Option<ServerCommand>,
    /// Address to listen on (`127.0.0.1:0`: a free port, printed on standard output).
    #[arg(long, env = "RUNNER_LISTEN", default_value = "127.0.0.1:8420")]
    listen: String,
    /// Job store: `postgres://…` (several replicas may share it) or a SQLite file
    /// [default: <data dir>/pool/jobs.db].
    #[arg(long, env = "RUNNER_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
    /// Blob store for sources, artifacts: a directory or `s3://bucket/prefix`
    /// [default: <data dir>/pool/blobs].
    #[arg(long, env = "RUNNER_BLOBS")]
    blobs: Option<String>,
    /// S3 endpoint for `--blobs s3://…` (e.g. a MinIO or moto URL).
    #[arg(long, env = "RUNNER_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// A claimed job's lease; agents heartbeat every third of it.
    #[arg(long, env = "RUNNER_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_secs: u64,
    /// A job's log is cut past this size (the job then says `log_truncated`).
    #[arg(long, env = "RUNNER_LOG_LIMIT_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    log_limit_mib: u64,
    /// Largest source archive or artifact accepted.
    #[arg(long, env = "RUNNER_BLOB_LIMIT_MIB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65536))]
    blob_limit_mib: u64,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, env = "RUNNER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "RUNNER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The GitHub webhook's secret: enables `POST /v1/webhooks/github` (push and
    /// pull_request deliveries create jobs).
    #[arg(long, env = "RUNNER_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    github_webhook_secret: Option<String>,
    /// OWNER/NAME=PROJECT: pushes and pull requests of this repository run as this
    /// project (repeat, or comma-separate in the variable); other repositories build
    /// nothing (their merged pull requests are still recorded).
    #[arg(
        long = "github-repo",
        env = "RUNNER_GITHUB_REPOS",
        value_delimiter = ','
    )]
    github_repos: Vec<String>,
    /// GitHub's REST API (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        env = "RUNNER_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    github_api_url: String,
    /// A token that may write commit statuses (fine-grained: "Commit statuses: write");
    /// without it no statuses are posted.
    #[arg(long, env = "RUNNER_GITHUB_STATUS_TOKEN", hide_env_values = true)]
    github_status_token: Option<String>,
    /// The server's address as browsers reach it (the statuses link to job pages there).
    #[arg(long, env = "RUNNER_PUBLIC_URL")]
    public_url: Option<String>,
    /// POST every job state change (queued, started, phase, finished) to this URL as a
    /// signed CloudEvent; repeat for several receivers (RUNNER_NOTIFY: comma-separated)
    #[arg(
        long = "notify",
        value_name = "URL",
        env = "RUNNER_NOTIFY",
        value_delimiter = ','
    )]
    notify: Vec<String>,
    /// The HMAC-SHA256 key of the notifications' X-Runner-Signature-256 header; prefer
    /// RUNNER_NOTIFY_SECRET, which `ps` does not show
    #[arg(
        long,
        env = "RUNNER_NOTIFY_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    notify_secret: Option<String>,
    /// One notification delivery's time limit; a failed one is tried again with
    /// exponential backoff for up to --notify-max-age-secs
    #[arg(long, env = "RUNNER_NOTIFY_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    notify_timeout_secs: u64,
    /// The longest wait between two tries of a notification
    #[arg(long, env = "RUNNER_NOTIFY_MAX_BACKOFF_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    notify_max_backoff_secs: u64,
    /// A notification not delivered this long after its event is given up
    #[arg(long, env = "RUNNER_NOTIFY_MAX_AGE_SECS", default_value_t = 86400, value_parser = clap::value_parser!(u64).range(1..=604800))]
    notify_max_age_secs: u64,
    /// Delivered (or given-up) notifications and commit statuses, and events no delivery
    /// waits for, are deleted this long after the event
    #[arg(long, env = "RUNNER_NOTIFY_RETENTION_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..=87600))]
    notify_retention_hours: u64,
    /// GitHub webhook delivery ids are kept this long: a redelivery within it creates
    /// nothing (GitHub redelivers for up to 3 days)
    #[arg(long, env = "RUNNER_GITHUB_DELIVERY_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(4..=3650))]
    github_delivery_retention_days: u64,
    /// A web page sign-in lasts this long (the session cookie's Max-Age)
    #[arg(long, env = "RUNNER_WEB_SESSION_SECS", default_value_t = 43200, value_parser = clap::value_parser!(u64).range(1..=2592000))]
    web_session_secs: u64,
}

/// The webhook settings from the flags; `Err` with what to fix.
fn github_config(args: &ServerArgs) -> Result<Option<crate::pool::server::GithubConfig>, String> {
    let Some(secret) = args.github_webhook_secret.clone().filter(|s| !s.is_empty()) else {
        if !args.github_repos.is_empty() {
            return Err("--github-repo needs --github-webhook-secret".into());
        }
        return Ok(None);
    };
    let mut repos = std::collections::BTreeMap::new();
    for r in args.github_repos.iter().filter(|r| !r.trim().is_empty()) {
        let (repo, project) =
            crate::pool::server::webhooks::parse_repo_mapping(r).map_err(|e| e.to_string())?;
        repos.insert(repo, project);
    }
    Ok(Some(crate::pool::server::GithubConfig {
        secret,
        repos,
        api_url: args.github_api_url.clone(),
        token: args.github_status_token.clone().filter(|t| !t.is_empty()),
        public_url: args.public_url.clone(),
    }))
}

#[derive(Debug, clap::Subcommand)]
enum ServerCommand {
    /// API tokens
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once, alone on the last line of standard output
    Create(TokenCreate),
    /// List the tokens: id (the first 12 hex digits of the token's SHA-256), role, name
    /// and creation time; the tokens themselves are not stored
    List(TokenList),
    /// Revoke a token by its id (from `token list`) or its name: it stops working on every
    /// server within 5 seconds and its web sessions end at once
    Revoke(TokenRevoke),
}

#[derive(Debug, clap::Args)]
struct TokenList {
    /// One JSON array on standard output.
    #[arg(long)]
    json: bool,
    /// Job store, as for `runner server` [default: <data dir>/pool/jobs.db].
    #[arg(long, env = "RUNNER_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
}

#[derive(Debug, clap::Args)]
struct TokenRevoke {
    /// The token's id (8 or more of the hex digits `token list` shows) or its name; a
    /// name that several tokens share is refused (revoke those by id)
    token: String,
    /// Job store, as for `runner server` [default: <data dir>/pool/jobs.db].
    #[arg(long, env = "RUNNER_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
}

#[derive(Debug, clap::Args)]
struct TokenCreate {
    /// agent (claims and runs jobs), submit (submits and follows jobs) or admin
    #[arg(long, value_enum)]
    role: RoleArg,
    /// A name to recognise the token by.
    #[arg(long, default_value = "")]
    name: String,
    /// Job store, as for `runner server` [default: <data dir>/pool/jobs.db].
    #[arg(long, env = "RUNNER_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Agent,
    Submit,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Agent => Role::Agent,
            RoleArg::Submit => Role::Submit,
            RoleArg::Admin => Role::Admin,
        }
    }
}

fn store_config(database: Option<String>) -> StoreConfig {
    let url = database.filter(|d| !d.is_empty()).unwrap_or_else(|| {
        super::data_dir()
            .join("pool")
            .join("jobs.db")
            .display()
            .to_string()
    });
    StoreConfig { url }
}

pub async fn run(args: ServerArgs) -> ExitStatus {
    match args.command {
        Some(ServerCommand::Token(TokenCommand::Create(t))) => token_create(t).await,
        Some(ServerCommand::Token(TokenCommand::List(t))) => token_list(t).await,
        Some(ServerCommand::Token(TokenCommand::Revoke(t))) => token_revoke(t).await,
        None => serve(args).await,
    }
}

async fn open_store(database: Option<String>) -> Option<Store> {
    match Store::open(&store_config(database)).await {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// A token's id: the first 12 hex digits of its SHA-256.
fn token_id(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

async fn token_list(t: TokenList) -> ExitStatus {
    let Some(store) = open_store(t.database).await else {
        return ExitStatus::Setup;
    };
    let tokens = match store.list_tokens().await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read the tokens: {e}");
            return ExitStatus::Setup;
        }
    };
    if t.json {
        let rows: Vec<serde_json::Value> = tokens
            .iter()
            .map(|k| {
                serde_json::json!({
                    "id": token_id(&k.hash),
                    "role": k.role,
                    "name": k.name,
                    "created": crate::pool::store::rfc3339(k.created_ms),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return ExitStatus::Success;
    }
    if tokens.is_empty() {
        println!("no tokens; create one with `runner server token create --role …`");
        return ExitStatus::Success;
    }
    println!("{:<12}  {:<6}  {:<24}  CREATED", "ID", "ROLE", "NAME");
    for k in &tokens {
        println!(
            "{:<12}  {:<6}  {:<24}  {}",
            token_id(&k.hash),
            k.role,
            k.name,
            crate::pool::store::rfc3339(k.created_ms)
        );
    }
    ExitStatus::Success
}

async fn token_revoke(t: TokenRevoke) -> ExitStatus {
    let Some(store) = open_store(t.database).await else {
        return ExitStatus::Setup;
    };
    let tokens = match store.list_tokens().await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read the tokens: {e}");
            return ExitStatus::Setup;
        }
    };
    let wanted = t.token.trim();
    let by_id = wanted.len() >= 8 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
    let hits: Vec<&crate::pool::store::TokenInfo> = tokens
        .iter()
        .filter(|k| {
            (by_id && k.hash.starts_with(&wanted.to_ascii_lowercase()))
                || (!wanted.is_empty() && k.name == wanted)
        })
        .collect();
    match hits.as_slice() {
        [] => {
            eprintln!(
                "error: no token has the id or name `{wanted}`; `runner server token list` shows them"
            );
            ExitStatus::Setup
        }
        [k] => match store.revoke_tokens(std::slice::from_ref(&k.hash)).await {
            Ok(_) => {
                println!(
                    "revoked the `{}` token {}{}; servers refuse it within {} s",
                    k.role,
                    token_id(&k.hash),
                    if k.name.is_empty() {
                        String::new()
                    } else {
                        format!(" (`{}`)", k.name)
                    },
                    crate::pool::store::TOKEN_CACHE_SECS
                );
                ExitStatus::Success
            }
            Err(e) => {
                eprintln!("error: cannot revoke the token: {e}");
                ExitStatus::Setup
            }
        },
        many => {
            let ids: Vec<&str> = many.iter().map(|k| token_id(&k.hash)).collect();
            eprintln!(
                "error: `{wanted}` matches {} tokens ({}); revoke them one by one by id",
                many.len(),
                ids.join(", ")
            );
            ExitStatus::Setup
        }
    }
}

async fn token_create(t: TokenCreate) -> ExitStatus {
    let store = match Store::open(&store_config(t.database)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Setup;
        }
    };
    let token = crate::pool::store::new_token();
    let role: Role = t.role.into();
    if let Err(e) = store.create_token(&token, role, &t.name).await {
        eprintln!("error: cannot store the token: {e}");
        return ExitStatus::Setup;
    }
    let mut out = std::io::stdout().lock();
    let printed = writeln!(
        out,
        "created a `{}` token{}; it is shown once, keep it secret:",
        crate::pool::store::role_str(role),
        if t.name.is_empty() {
            String::new()
        } else {
            format!(" `{}`", t.name)
        }
    )
    .and_then(|()| writeln!(out, "{token}"))
    .and_then(|()| out.flush());
    match printed {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            eprintln!("error: cannot print the token: {e}");
            ExitStatus::Setup
        }
    }
}

async fn blob_store(spec: Option<String>, s3_endpoint: Option<String>) -> BlobStore {
    match spec.filter(|s| !s.is_empty()) {
        Some(s) if s.starts_with("s3://") => {
            let rest = &s["s3://".len()..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let settings = crate::aws_config::AwsSettings {
                endpoint_url: s3_endpoint,
                ..Default::default()
            };
            let config = crate::aws_config::load_sdk_config(&settings).await;
            let mut builder = aws_sdk_s3::config::Builder::from(&config);
            if crate::aws_config::endpoint_override(&config, "S3").is_some() {
                builder = builder.force_path_style(true);
            }
            BlobStore::S3 {
                client: aws_sdk_s3::Client::from_conf(builder.build()),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                staging: super::data_dir().join("pool").join("incoming"),
            }
        }
        Some(dir) => BlobStore::Local(PathBuf::from(dir)),
        None => BlobStore::Local(super::data_dir().join("pool").join("blobs")),
    }
}

async fn serve(args: ServerArgs) -> ExitStatus {
    let github = match github_config(&args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Setup;
        }
    };
    let store = match Store::open(&store_config(args.database)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Setup;
        }
    };
    let blobs = blob_store(args.blobs, args.s3_endpoint).await;
    if let Err(e) = blobs.check().await {
        eprintln!("error: {e}");
        return ExitStatus::Setup;
    }
    let mut config = ServerConfig {
        github,
        lease: Duration::from_secs(args.lease_secs),
        log_limit: args.log_limit_mib * 1024 * 1024,
        blob_limit: usize::try_from(args.blob_limit_mib * 1024 * 1024).unwrap_or(usize::MAX),
        session_ttl: Duration::from_secs(args.web_session_secs),
        notify: NotifyConfig {
            receivers: args
                .notify
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            secret: args.notify_secret.clone(),
            public_url: args.public_url.clone(),
            timeout: Some(Duration::from_secs(args.notify_timeout_secs)),
            backoff: None,
            max_backoff: Some(Duration::from_secs(args.notify_max_backoff_secs)),
            max_age: Some(Duration::from_secs(args.notify_max_age_secs)),
            retention: Some(Duration::from_secs(args.notify_retention_hours * 3600)),
            webhook_retention: Some(Duration::from_secs(
                args.github_delivery_retention_days * 24 * 3600,
            )),
        },
        ..ServerConfig::default()
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e}; pick a free address with --listen",
                args.listen
            );
            return ExitStatus::Setup;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: cannot read the listening address: {e}");
            return ExitStatus::Setup;
        }
    };
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = out.flush();
    }
    if config.notify.public_url.is_none() {
        config.notify.public_url = Some(format!("{scheme}://{addr}"));
    }
    tracing::info!(%addr, postgres = store.is_postgres(), "runner server started");
    let tls = args.tls_cert.zip(args.tls_key);
    let result =
        crate::pool::server::serve(listener, store, blobs, config, tls, shutdown_signal()).await;
    match result {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            eprintln!("error: {e}");
            ExitStatus::Setup
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
