//! `runner cache`: the build cache kept on this machine.

use super::args::CacheCommand;
use super::exit::ExitStatus;
use crate::cache::{invalidate, try_lock, volume_prefix};
use crate::docker::DockerEngine;

pub async fn run(cmd: CacheCommand) -> ExitStatus {
    match cmd {
        CacheCommand::Invalidate { project, json } => invalidate_project(&project, json).await,
    }
}

fn fail(json: bool, status: ExitStatus, msg: &str) -> ExitStatus {
    if json {
        println!("{}", serde_json::json!({"ok": false, "error": msg}));
    }
    eprintln!("error: {msg}");
    status
}

async fn invalidate_project(project: &str, json: bool) -> ExitStatus {
    let dir = super::data_dir().join("cache-volumes");
    let endpoint = match super::config::engine_endpoint() {
        Ok(e) => e,
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let engine = match DockerEngine::connect_to(&endpoint).await {
        Ok(e) => e,
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let busy = || {
        format!("a build of {project} is running and holds its caches; nothing was removed, run this again when it has ended")
    };
    // Both locks are held while the volumes go, so no build starts on them meanwhile.
    let volumes_lock = match invalidate(&dir, project) {
        Ok(Some(lock)) => lock,
        Ok(None) => return fail(json, ExitStatus::Failed, &busy()),
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let docker_lock = match try_lock(&dir, project, "docker") {
        Ok(Some(lock)) => lock,
        Ok(None) => return fail(json, ExitStatus::Failed, &busy()),
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    let mut names = match engine.list_volumes(&volume_prefix(project)).await {
        Ok(n) => n,
        Err(e) => return fail(json, ExitStatus::Setup, &e.to_string()),
    };
    names.push(crate::run::docker_volume(project));
    let mut removed = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        match engine.remove_volume(&name).await {
            Ok(true) => removed.push(name),
            Ok(false) => {}
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    drop((volumes_lock, docker_lock));
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": problems.is_empty(), "project": project, "removed": removed, "errors": problems})
        );
    } else {
        match removed.len() {
            0 => println!("No local caches of {project} to remove."),
            n => println!(
                "Removed {n} cache volume(s) of {project}: {}",
                removed.join(", ")
            ),
        }
    }
    for p in &problems {
        eprintln!("error: could not remove {p}");
    }
    if problems.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    }
}
