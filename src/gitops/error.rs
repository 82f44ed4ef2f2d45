//! Errors of the GitOps write-back. Every message says what to do; none carries a token.

use std::path::PathBuf;

use crate::gitops::edit::{ImageRefError, YamlError};

#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    #[error("invalid gitops request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    ImageRef(#[from] ImageRefError),
    #[error("{file}: {source}")]
    Yaml {
        file: String,
        #[source]
        source: YamlError,
    },
    #[error("{file}: not found in the config repository at the base branch; check the --file path (relative to the repository root)")]
    FileNotFound { file: String },
    #[error("{file}: `{link}` is a symbolic link in the config repository; runner never follows links in a config repository (one could point anywhere on this machine): name the real file with --file (gitops.files in runner.yml), or commit a regular file")]
    Symlink { file: String, link: String },
    #[error("{file}: not a regular file in the config repository; check the --file path")]
    NotAFile { file: String },
    #[error("{file}: larger than {limit} bytes; runner does not edit files this large in a config repository")]
    TooLarge { file: String, limit: u64 },
    #[error("cannot read {} that mention{} {image}, so the bump would be incomplete: {}; fix {}, or name the files to edit with --file (gitops.files in runner.yml)", if .files.len() == 1 { "a file" } else { "files" }, if .files.len() == 1 { "s" } else { "" }, .files.join("; "), if .files.len() == 1 { "it" } else { "them" })]
    Unreadable { image: String, files: Vec<String> },
    #[error("{}: {source}; check the path and its permissions", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run `git`: {0}; install git (2.31 or newer) and make sure it is on PATH")]
    GitSpawn(std::io::Error),
    #[error("`git {command}` failed (exit {code}): {stderr}")]
    Git {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("`git {command}` was refused by the remote: {stderr}; check that the token can read and write the config repository (GitHub: contents: write; GitLab: write_repository; Gitea: write:repository)")]
    GitAuth { command: String, stderr: String },
    #[error("push to `{branch}` was rejected {attempts} times in a row (others keep pushing, or a hook refuses it): {last}; retry later or raise max_push_attempts")]
    PushConflict {
        branch: String,
        attempts: u32,
        last: String,
    },
    #[error("no token for {forge}: set RUNNER_GITOPS_TOKEN or {env}, or use --forge none to push without opening a pull request")]
    MissingToken {
        forge: &'static str,
        env: &'static str,
    },
    #[error("cannot tell the {forge} repository from `{url}`: expected https://HOST/OWNER/REPO(.git), git@HOST:OWNER/REPO.git or similar")]
    ForgeRepo { forge: &'static str, url: String },
    #[error("{forge} API {method} {path} answered {status}: {message}{hint}")]
    ForgeApi {
        forge: &'static str,
        method: &'static str,
        path: String,
        status: u16,
        message: String,
        hint: &'static str,
    },
    #[error("{forge} API {method} {path}: {message}; check --forge-url and the network")]
    ForgeHttp {
        forge: &'static str,
        method: &'static str,
        path: String,
        message: String,
    },
}
