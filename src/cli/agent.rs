//! `runner agent`: flags and environment into an [`AgentConfig`] (the build settings as
//! `runner build` reads them), signals into drain/abort, the agent's notes to stderr.

use super::config;
use super::exit::ExitStatus;
use super::jobs::Conn;
use crate::pipeline::BuildRequest;
use crate::pool::agent::{self, AgentConfig, AgentNote, Notifier, StopHandle};
use crate::pool::protocol;
use clap::builder::RangedU64ValueParser;
use std::collections::BTreeMap;
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
    #[command(flatten)]
    pub settings: super::args::BuildSettings,
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
    let mut template = match template(args.settings, &data_dir) {
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
    settings: super::args::BuildSettings,
    data_dir: &std::path::Path,
) -> Result<BuildRequest, crate::publish::PublishError> {
    let mut req = BuildRequest::new(data_dir.join("agent"), data_dir);
    super::settings::apply(settings, &mut req)?;
    req.advisories = config::advisories();
    req.push_concurrency = config::push_concurrency();
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
