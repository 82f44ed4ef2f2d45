//! `runner gitops bump`: the GitOps stage of `runner build`, on its own.

use super::args::{ForgeArg, GitopsBumpArgs, GitopsCommand};
use super::exit::ExitStatus;
use crate::gitops::forge::ForgeKind;
use crate::gitops::{bump, BumpRequest, BumpStatus, GitopsConfig};

pub async fn run(cmd: GitopsCommand) -> ExitStatus {
    let GitopsCommand::Bump(a) = cmd;
    bump_cmd(a).await
}

async fn bump_cmd(a: GitopsBumpArgs) -> ExitStatus {
    let mut config = GitopsConfig::new(a.repo);
    config.base = a.base;
    config.files = a.files;
    config.branch = a.branch;
    config.forge = a.forge.map(|f| match f {
        ForgeArg::Github => ForgeKind::Github,
        ForgeArg::Gitlab => ForgeKind::Gitlab,
        ForgeArg::Gitea => ForgeKind::Gitea,
        ForgeArg::None => ForgeKind::None,
    });
    config.forge_url = a.forge_url;
    config.helm_keys = a.helm_keys;
    config.labels = a.labels;
    config.force_push = a.force_push;
    let token = config.token(&super::config::gitops_tokens());
    let req = BumpRequest {
        config,
        image: a.image,
        digest: a.digest,
        tag: a.tag,
        token,
    };
    match bump(&req).await {
        Ok(o) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
            } else {
                match o.status {
                    BumpStatus::UpToDate => println!(
                        "{}: already at {} on {}; nothing to do",
                        o.repository, o.reference, o.base
                    ),
                    BumpStatus::AlreadyProposed => println!(
                        "{}: branch {} already carries {}",
                        o.repository, o.branch, o.reference
                    ),
                    BumpStatus::Pushed => println!(
                        "{}: pushed {} to {} ({})",
                        o.repository,
                        o.commit.as_deref().unwrap_or("?"),
                        o.branch,
                        o.changed_files.join(", ")
                    ),
                }
                if let Some(pr) = &o.pull_request {
                    println!("pull request #{} ({:?}): {}", pr.number, pr.action, pr.url);
                }
                for n in &o.notes {
                    println!("note: {n}");
                }
            }
            ExitStatus::Success
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
            }
            eprintln!("error: {e}");
            ExitStatus::Failed
        }
    }
}
