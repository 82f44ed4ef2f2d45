//! `runner submit`: packs the source (or names a git revision), uploads it once
//! (content-addressed), queues the job, prints its id; `--wait` follows the log and
//! exits with the build's exit code, so it can stand in for `runner build` in scripts.

use super::exit::ExitStatus;
use super::jobs::{client_error, follow, job_exit, Conn};
use crate::pool::archive;
use crate::pool::protocol::{self, SourceSpec, SubmitJob};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// The source directory to upload (default: the current directory)
    #[arg(long, short = 's', value_name = "DIR", conflicts_with = "git")]
    pub source: Option<PathBuf>,
    /// Build a git repository instead (the agent clones it)
    #[arg(long, value_name = "URL", requires = "revision")]
    pub git: Option<String>,
    /// The revision to check out (a commit, tag or branch)
    #[arg(long, value_name = "REV", requires = "git")]
    pub revision: Option<String>,
    /// The buildspec's path inside the source (default: the project file's, else buildspec.yml)
    #[arg(long, short = 'b', value_name = "FILE")]
    pub buildspec: Option<String>,
    /// The project's name (default: the project file's, else the directory's)
    #[arg(long)]
    pub project: Option<String>,
    /// Override an environment variable of the build (repeatable)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Only agents with all of these labels take the job: os=linux,size=large
    #[arg(long, value_name = "K=V,...", value_parser = labels)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Attempts before a job whose agents keep vanishing fails
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Build timeout in minutes
    #[arg(long, value_name = "MINUTES")]
    pub timeout: Option<u32>,
    /// Follow the log until the job ends and exit with its exit code
    #[arg(long)]
    pub wait: bool,
    /// JSON: the job as submitted (with --wait: the log's events, then the job)
    #[arg(long)]
    pub json: bool,
}

fn labels(s: &str) -> Result<std::collections::BTreeMap<String, String>, protocol::LabelError> {
    protocol::parse_labels(s)
}

pub async fn run(args: SubmitArgs) -> ExitStatus {
    let client = match args.conn.client() {
        Ok(c) => c,
        Err(e) => return client_error(&e),
    };
    for e in &args.env {
        if !e.contains('=') || e.starts_with('=') {
            eprintln!("error: --env `{e}` is not KEY=VALUE");
            return ExitStatus::Setup;
        }
    }
    let (source, default_project) = match (&args.git, &args.revision) {
        (Some(url), Some(rev)) => (
            SourceSpec::Git {
                url: url.clone(),
                revision: rev.clone(),
            },
            None,
        ),
        _ => {
            let dir = args.source.clone().unwrap_or_else(|| PathBuf::from("."));
            let dir = match std::fs::canonicalize(&dir) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!(
                        "error: source directory {} not found: {e} (pass --source DIR)",
                        dir.display()
                    );
                    return ExitStatus::Setup;
                }
            };
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            let d = dir.clone();
            let packed = match tokio::task::spawn_blocking(move || {
                archive::pack(&d, archive::Limits::default())
            })
            .await
            {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitStatus::Setup;
                }
                Err(e) => {
                    eprintln!("error: packing the source ended abnormally: {e}");
                    return ExitStatus::Setup;
                }
            };
            match client.has_blob(&packed.sha256).await {
                Ok(true) => {}
                Ok(false) => {
                    if let Err(e) = client.put_blob(&packed.sha256, packed.bytes.into()).await {
                        return client_error(&e);
                    }
                }
                Err(e) => return client_error(&e),
            }
            (
                SourceSpec::Archive {
                    sha256: packed.sha256,
                },
                name,
            )
        }
    };
    // As `runner build`: --project, else the project file's name, else the directory's.
    let project = args.project.clone().or_else(|| match &source {
        SourceSpec::Git { .. } => None,
        SourceSpec::Archive { .. } => {
            let dir = args.source.clone().unwrap_or_else(|| PathBuf::from("."));
            project_file_name(&dir).or(default_project)
        }
    });
    // The commit built, for the server's delivery metrics: the source directory's HEAD,
    // or the revision of a git source that is a local repository.
    let facts = match &source {
        SourceSpec::Archive { .. } => {
            let dir = args.source.clone().unwrap_or_else(|| PathBuf::from("."));
            crate::source::commit_facts(&dir, None)
        }
        SourceSpec::Git { url, revision } => {
            let dir = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
            if dir.is_dir() {
                crate::source::commit_facts(&dir, Some(revision))
            } else {
                None
            }
        }
    };
    let commit = facts.map(|f| protocol::CommitFacts {
        revert: crate::pool::dora::is_revert_message(&f.subject),
        time: f.time,
        side_branch: f.side_branch,
    });
    let job = SubmitJob {
        source,
        buildspec: args.buildspec.clone(),
        project,
        env: args.env.clone(),
        labels: args.labels.clone().unwrap_or_default(),
        max_attempts: args.max_attempts,
        timeout_minutes: args.timeout,
        trigger: None,
        commit,
    };
    let answer = match client.submit(&job).await {
        // A server from before the delivery metrics refuses the unknown field (and stored
        // nothing): submit without the commit's facts.
        Err(crate::pool::client::ClientError::Refused {
            status: 400, error, ..
        }) if job.commit.is_some() && error.contains("unknown field `commit`") => {
            client
                .submit(&SubmitJob {
                    commit: None,
                    ..job.clone()
                })
                .await
        }
        other => other,
    };
    let view = match answer {
        Ok(v) => v,
        Err(e) => return client_error(&e),
    };
    if !args.wait {
        if args.json {
            match serde_json::to_string(&view) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot print JSON: {e}"),
            }
        } else {
            println!("{}", view.id);
        }
        return ExitStatus::Success;
    }
    eprintln!("runner: job {} queued; following its log", view.id);
    match follow(
        &client,
        &view.id,
        None,
        super::jobs::LogForm::new(args.json, false),
        true,
    )
    .await
    {
        Ok(job) => {
            if !args.json {
                let detail = job
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                eprintln!(
                    "runner: job {} {} (attempt {}){detail}",
                    job.id,
                    job.state.as_str(),
                    job.attempt
                );
            }
            job_exit(&job)
        }
        Err(e) => client_error(&e),
    }
}

/// `name:` of the source's runner.yml, when it has one that parses.
fn project_file_name(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(crate::project::PROJECT_FILE)).ok()?;
    crate::project::parse_project(&text).0?.name
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_project_files_name_is_the_default_project() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(project_file_name(d.path()), None);
        std::fs::write(d.path().join("runner.yml"), "name: shop-api\n").unwrap();
        assert_eq!(project_file_name(d.path()).as_deref(), Some("shop-api"));
    }
}
