//! Runs a prepared request: the source scan gate, the phases (or the batch), then the
//! image, its scan gate, push, signature, attestations and GitOps. Emits events; never
//! prints.

use super::outcome::{Outcome, Release};
use super::prepare::{Batch, Prepared, Single, Work};
use crate::docker::DockerEngine;
use crate::event::{BuildStatus, Event, Fanout, Level, SharedReporter};
use crate::report::MaskingReporter;
use crate::run::{self, BatchOptions, Cancel, RunOptions};
use crate::secrets::Masker;
use std::sync::Arc;

/// Runs `prepared`, reporting to `reporter` behind the build's masker (the log file of a
/// single build is added beside it). `cancel` stops the build(s).
pub async fn execute(prepared: Prepared, reporter: SharedReporter, cancel: Cancel) -> Outcome {
    let Prepared {
        engine,
        masker,
        run_opts,
        work,
        mask_values: _,
    } = prepared;
    match work {
        Work::Single(single) => {
            execute_single(&engine, masker, run_opts, *single, reporter, cancel).await
        }
        Work::Batch(batch) => {
            execute_batch(&engine, masker, run_opts, batch, reporter, cancel).await
        }
    }
}

/// Every reporter sits behind the masker.
fn masked(masker: Masker, list: Vec<SharedReporter>) -> SharedReporter {
    Arc::new(MaskingReporter::new(masker, Arc::new(Fanout(list))))
}

async fn execute_single(
    engine: &DockerEngine,
    masker: Masker,
    run_opts: RunOptions,
    s: Single,
    reporter: SharedReporter,
    cancel: Cancel,
) -> Outcome {
    let mut list = vec![reporter];
    if let Some(log) = &s.log {
        list.push(log.clone());
    }
    let reporter = masked(masker, list);
    for notice in &s.notices {
        reporter.event(notice);
    }
    let started_on = run::now_rfc3339();

    // Scans of the source gate the build: nothing runs when the policy refuses.
    if let (Some(cfg), Some(scanner)) = (&s.scan, &s.secret_scanner) {
        if cfg.secrets || cfg.deps {
            let started = std::time::Instant::now();
            let mut findings = run::scans::Findings::default();
            if cfg.secrets {
                let (src, scanner) = (s.source.clone(), scanner.clone());
                let scanned =
                    tokio::task::spawn_blocking(move || run::scans::scan_secrets(&src, &scanner))
                        .await;
                match scanned {
                    Ok(Ok(f)) => findings.extend(f),
                    Ok(Err(e)) => return Outcome::ScanFailed(e),
                    Err(e) => return Outcome::ScanFailed(e.into()),
                }
            }
            if cfg.deps {
                match run::scans::scan_deps(&s.source, &s.advisories) {
                    Ok(f) => findings.extend(f),
                    Err(e) => return Outcome::ScanFailed(e),
                }
            }
            if run::scans::judge(reporter.as_ref(), "source", &findings, &s.policy, started)
                .is_err()
            {
                return Outcome::SourceRefused;
            }
        }
    }

    let result = run::run_build(engine, &s.plan, &run_opts, reporter.as_ref(), cancel).await;
    if result.status != BuildStatus::Succeeded {
        return Outcome::Build {
            result,
            release: Release::None,
        };
    }
    let Some(image_cfg) = &s.config.publish else {
        if !s.config.gitops.is_empty() {
            reporter.event(&Event::Notice {
                level: Level::Warning,
                message: "runner.yml has gitops: but no image: section; nothing to deploy".into(),
            });
        }
        return Outcome::Build {
            result,
            release: Release::None,
        };
    };
    let connect = crate::publish::connect::ConnectOptions {
        endpoints: s.credentials.registry_endpoints.clone(),
        // ECR's region is the one in the repository's host.
        aws: s.credentials.aws.clone(),
        auth: s.credentials.registry_auth.clone(),
        create_repository: image_cfg.create_repository,
        limits: s.credentials.registry_limits,
        ..Default::default()
    };
    let sign_cfg = s.config.sign.clone().map(|mut cfg| {
        if let Some(k) = &s.credentials.sign_key {
            cfg.key = k.clone();
        }
        cfg
    });
    let input = run::ReleaseInput {
        source: &s.source,
        image: image_cfg,
        sign: sign_cfg.as_ref(),
        key_password: s.credentials.key_password.clone(),
        project: &s.project,
        build_id: &s.plan.build_id,
        build_number: s.plan.build_number,
        revision: s.git.commit.as_deref(),
        branch: s.git.branch.as_deref(),
        source_uri: s.git.origin.as_deref(),
        buildspec: &s.buildspec_rel,
        build_image: &s.plan.image,
        started_on,
        connect,
        layer_map: s.data.join("publish").join("layers.json"),
        work_dir: s.data.join("tmp"),
        image_scanner: s
            .secret_scanner
            .as_deref()
            .filter(|_| s.scan.as_ref().is_some_and(|c| c.image)),
        policy: &s.policy,
        advisories: &s.advisories,
        gitops: &s.config.gitops,
        gitops_tokens: &s.credentials.gitops_tokens,
        push_concurrency: s.push_concurrency,
    };
    let release = match run::release(engine, &input, reporter.as_ref()).await {
        Ok(r) => Release::Released(Box::new(r)),
        Err(e) => Release::Failed(Box::new(e)),
    };
    Outcome::Build { result, release }
}

async fn execute_batch(
    engine: &DockerEngine,
    masker: Masker,
    run_opts: RunOptions,
    b: Batch,
    reporter: SharedReporter,
    cancel: Cancel,
) -> Outcome {
    let reporter = masked(masker, vec![reporter]);
    reporter.event(&Event::Notice {
        level: Level::Info,
        message: format!(
            "batch: {} builds{}",
            b.tasks.len(),
            if b.fast_fail { ", fast-fail" } else { "" }
        ),
    });
    let summary = run::run_batch(
        engine,
        b.tasks,
        &BatchOptions {
            fast_fail: b.fast_fail,
            concurrency: b.concurrency,
        },
        &run_opts,
        reporter.clone(),
        cancel,
    )
    .await;
    reporter.event(&Event::BatchEnded(summary.clone()));
    Outcome::Batch(summary)
}
