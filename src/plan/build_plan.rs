//! `BuildSpec` + options → `BuildPlan`: everything the executor needs, decided up front.

use super::env::{CA_BUNDLE_MOUNT, CA_VARIABLES};
use crate::buildspec::model::{
    Artifacts, BuildSpec, Command, OnFailure, PhaseName, ReportGroup, Version,
};
use crate::cache::{default_key, CachePath};
use crate::secrets::Secret;
use std::time::Duration;
use thiserror::Error;

/// How the source reaches the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceMode {
    /// Bind-mount the source directory (changes the build makes are visible on the host).
    #[default]
    Mount,
    /// Copy the source into the container (the host directory is left untouched).
    Copy,
}

/// Facts from outside the buildspec, gathered by the caller (the edge) beforehand.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    pub project: String,
    pub buildspec_display: String,
    /// The source directory on the host (absolute).
    pub source_dir: String,
    pub image: String,
    pub build_uuid: String,
    pub build_number: u64,
    pub start_time_ms: u128,
    /// `CODEBUILD_RESOLVED_SOURCE_VERSION` (the commit) when the source is a git repository.
    pub resolved_source_version: Option<String>,
    /// `CODEBUILD_SOURCE_VERSION` (what was asked for: a branch, tag or commit).
    pub source_version: Option<String>,
    pub source_repo_url: Option<String>,
    /// `env.parameter-store` and `env.secrets-manager`, resolved: variable → value.
    pub secrets: Vec<(String, Secret)>,
    /// The project file's `build.variables` (they override the buildspec's).
    pub project_variables: Vec<(String, String)>,
    /// `--env` / `--env-file` overrides, already validated, in order (later wins).
    pub overrides: Vec<(String, String)>,
    /// Mount the host's CA bundle and point the usual variables at it.
    pub trust_host_ca: Option<String>,
    pub region: String,
    pub source_mode: SourceMode,
    pub timeout: Duration,
    pub batch_identifier: Option<String>,
    pub privileged: bool,
    pub initiator: String,
    /// Further variables runner sets like its own (a webhook job's `CODEBUILD_WEBHOOK_*`,
    /// `CODEBUILD_SOURCE_VERSION`): they win over everything, the others above included.
    pub trigger_variables: Vec<(String, String)>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{file}:{line}:{col}: cache path {pattern:?} cannot be used: {reason}")]
    BadCachePath {
        file: String,
        line: u32,
        col: u32,
        pattern: String,
        reason: String,
    },
    #[error("{file}: exported variable {name} names a reserved variable ({why})")]
    BadExport {
        file: String,
        name: String,
        why: &'static str,
    },
}

/// One command phase, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPhase {
    pub name: PhaseName,
    pub commands: Vec<Command>,
    pub finally: Vec<Command>,
    pub on_failure: OnFailure,
    /// The Linux user for this phase (phase `run-as`, else top-level `run-as`).
    pub run_as: Option<String>,
    /// INSTALL's `runtime-versions` (runtime, version) in the buildspec's order; empty
    /// for the other phases. Resolved against the image's runtimes file when INSTALL
    /// starts (`run::runtime_steps`).
    pub runtime_versions: Vec<(String, String)>,
}

/// Everything the executor needs for one build.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub project: String,
    pub build_id: String,
    pub build_number: u64,
    pub batch_identifier: Option<String>,
    pub image: String,
    pub version: Version,
    /// argv of the build shell; it reads commands on standard input.
    pub shell: Vec<String>,
    pub run_as: Option<String>,
    pub src_dir: String,
    pub source_dir_host: String,
    pub source_mode: SourceMode,
    /// The build's environment, in order, names unique. Passed to the engine openly.
    pub env: Vec<(String, String)>,
    /// Secret variables: never passed through the engine's API (where `docker inspect`
    /// would show them) but exported over the build shell's standard input.
    pub secret_env: Vec<(String, Secret)>,
    pub phases: Vec<PlannedPhase>,
    pub exported_variables: Vec<String>,
    pub artifacts: Option<Artifacts>,
    pub reports: Vec<ReportGroup>,
    /// Host file to mount read-only at `CA_BUNDLE_MOUNT`.
    pub host_ca_bundle: Option<String>,
    /// `cache:` when the buildspec has cache paths.
    pub cache: Option<CachePlan>,
    pub timeout: Duration,
    pub privileged: bool,
    /// Things to tell the user before the build starts (e.g. runtime-versions skipped).
    pub notices: Vec<String>,
    pub buildspec_display: String,
}

fn upsert(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    if let Some(slot) = env.iter_mut().find(|(n, _)| n == name) {
        slot.1 = value.to_string();
    } else {
        env.push((name.to_string(), value.to_string()));
    }
}

/// CodeBuild's source directory looks like `/codebuild/output/src123456789/src`. The
/// digits come from the project name, so they stay the same from build to build: cached
/// paths below the source directory (`node_modules/**/*`) restore to the same place.
fn src_dir_for(project: &str) -> String {
    // FNV-1a: stable across runner versions and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in project.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("/codebuild/output/src{:09}/src", h % 1_000_000_000)
}

/// The planned `cache:` section.
#[derive(Debug, Clone)]
pub struct CachePlan {
    /// Parsed `cache.paths`, resolved against the source directory.
    pub paths: Vec<CachePath>,
    /// `cache.key` as written (shell syntax is expanded in the build container), or the
    /// stable default for the project and buildspec.
    pub key: String,
    /// Whether `key` is the user's (immutable once saved) or the default (refreshed).
    pub user_key: bool,
    pub fallback_keys: Vec<String>,
    pub restore: bool,
    pub save: bool,
}

fn plan_cache(
    spec: &BuildSpec,
    input: &PlanInput,
    src_dir: &str,
) -> Result<Option<CachePlan>, PlanError> {
    let Some(cache) = &spec.cache else {
        return Ok(None);
    };
    if cache.paths.is_empty() {
        return Ok(None);
    }
    let mut paths = Vec::new();
    for pattern in &cache.paths {
        match CachePath::parse(pattern, src_dir) {
            Ok(p) => paths.push(p),
            Err(e) => {
                let reason = match e {
                    crate::cache::CacheError::BadPath { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(PlanError::BadCachePath {
                    file: input.buildspec_display.clone(),
                    line: cache.pos.line,
                    col: cache.pos.col,
                    pattern: pattern.clone(),
                    reason,
                });
            }
        }
    }
    let action = cache.action.as_deref().map(str::to_ascii_lowercase);
    Ok(Some(CachePlan {
        paths,
        user_key: cache.key.is_some(),
        key: cache
            .key
            .clone()
            .unwrap_or_else(|| default_key(&input.project, &input.buildspec_display)),
        fallback_keys: cache.fallback_keys.clone(),
        restore: action.as_deref() != Some("save"),
        save: action.as_deref() != Some("restore"),
    }))
}

pub fn plan(spec: &BuildSpec, input: &PlanInput) -> Result<BuildPlan, PlanError> {
    let file = &input.buildspec_display;
    for name in &spec.env.exported_variables {
        if name.starts_with("AWS_") {
            return Err(PlanError::BadExport {
                file: file.clone(),
                name: name.clone(),
                why: "names starting with AWS_ cannot be exported",
            });
        }
        let secret = spec
            .env
            .parameter_store
            .iter()
            .chain(&spec.env.secrets_manager)
            .any(|v| &v.name == name);
        if secret {
            return Err(PlanError::BadExport {
                file: file.clone(),
                name: name.clone(),
                why: "it comes from parameter-store or secrets-manager, and secrets cannot be exported",
            });
        }
    }

    let build_id = format!("{}:{}", input.project, input.build_uuid);
    let src_dir = src_dir_for(&input.project);
    let cache = plan_cache(spec, input, &src_dir)?;

    let mut env: Vec<(String, String)> = Vec::new();
    if input.trust_host_ca.is_some() {
        for var in CA_VARIABLES {
            upsert(&mut env, var, CA_BUNDLE_MOUNT);
        }
    }
    upsert(&mut env, "AWS_REGION", &input.region);
    upsert(&mut env, "AWS_DEFAULT_REGION", &input.region);
    for v in &spec.env.variables {
        upsert(&mut env, &v.name, &v.value);
    }
    // Secrets are buildspec-level variables too: they replace a plain buildspec variable
    // of the same name, and the project's and the command line's variables replace them.
    let mut secret_env: Vec<(String, Secret)> = Vec::new();
    for (name, value) in &input.secrets {
        env.retain(|(n, _)| n != name);
        secret_env.retain(|(n, _)| n != name);
        secret_env.push((name.clone(), value.clone()));
    }
    // CodeBuild's precedence: start-build overrides > project > buildspec.
    for (n, v) in input.project_variables.iter().chain(&input.overrides) {
        secret_env.retain(|(name, _)| name != n);
        upsert(&mut env, n, v);
    }
    let account = "000000000000";
    let mut reserved = vec![
        ("CODEBUILD_CI", "true".to_string()),
        ("CODEBUILD_BUILD_ID", build_id.clone()),
        (
            "CODEBUILD_BUILD_ARN",
            format!(
                "arn:aws:codebuild:{}:{account}:build/{build_id}",
                input.region
            ),
        ),
        ("CODEBUILD_BUILD_NUMBER", input.build_number.to_string()),
        ("CODEBUILD_BUILD_IMAGE", input.image.clone()),
        ("CODEBUILD_BUILD_SUCCEEDING", "1".to_string()),
        ("CODEBUILD_INITIATOR", input.initiator.clone()),
        ("CODEBUILD_LOG_PATH", input.build_uuid.clone()),
        ("CODEBUILD_SRC_DIR", src_dir.clone()),
        ("CODEBUILD_START_TIME", input.start_time_ms.to_string()),
        ("CODEBUILD_PROJECT_NAME", input.project.clone()),
    ];
    if let Some(v) = &input.resolved_source_version {
        reserved.push(("CODEBUILD_RESOLVED_SOURCE_VERSION", v.clone()));
    }
    if let Some(v) = &input.source_version {
        reserved.push(("CODEBUILD_SOURCE_VERSION", v.clone()));
    }
    if let Some(v) = &input.source_repo_url {
        reserved.push(("CODEBUILD_SOURCE_REPO_URL", v.clone()));
    }
    if let Some(v) = &input.batch_identifier {
        reserved.push(("CODEBUILD_BATCH_BUILD_IDENTIFIER", v.clone()));
    }
    for (n, v) in &reserved {
        upsert(&mut env, n, v);
    }
    for (n, v) in &input.trigger_variables {
        upsert(&mut env, n, v);
    }

    let notices = Vec::new();
    let mut phases = Vec::new();
    for (name, phase) in spec.phases.in_order() {
        let Some(phase) = phase else { continue };
        phases.push(PlannedPhase {
            name,
            commands: phase.commands.clone(),
            finally: phase.finally.clone(),
            on_failure: phase.on_failure.clone(),
            run_as: phase.run_as.clone().or_else(|| spec.run_as.clone()),
            runtime_versions: phase
                .runtime_versions
                .iter()
                .map(|r| (r.name.clone(), r.value.clone()))
                .collect(),
        });
    }

    let shell = match spec.env.shell.as_deref() {
        None | Some("/bin/sh") | Some("sh") => vec!["/bin/sh".to_string(), "-s".to_string()],
        Some("bash") | Some("/bin/bash") => vec![
            "bash".to_string(),
            "--noprofile".to_string(),
            "--norc".to_string(),
            "-s".to_string(),
        ],
        Some(other) => vec![other.to_string(), "-s".to_string()],
    };

    Ok(BuildPlan {
        project: input.project.clone(),
        build_id,
        build_number: input.build_number,
        batch_identifier: input.batch_identifier.clone(),
        image: input.image.clone(),
        version: spec.version(),
        shell,
        run_as: spec.run_as.clone(),
        src_dir,
        source_dir_host: input.source_dir.clone(),
        source_mode: input.source_mode,
        env,
        secret_env,
        phases,
        exported_variables: spec.env.exported_variables.clone(),
        artifacts: spec.artifacts.clone(),
        reports: spec.reports.clone(),
        host_ca_bundle: input.trust_host_ca.clone(),
        cache,
        timeout: input.timeout,
        privileged: input.privileged,
        notices,
        buildspec_display: input.buildspec_display.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildspec::model::{EnvVar, Phase, Pos};

    fn var(n: &str, v: &str) -> EnvVar {
        EnvVar {
            name: n.into(),
            value: v.into(),
            pos: Pos::default(),
        }
    }

    fn input() -> PlanInput {
        PlanInput {
            project: "demo".into(),
            buildspec_display: "buildspec.yml".into(),
            image: "img".into(),
            build_uuid: "0123abcd-0000-0000-0000-000000000000".into(),
            build_number: 7,
            region: "us-east-1".into(),
            ..Default::default()
        }
    }

    fn get<'a>(p: &'a BuildPlan, n: &str) -> Option<&'a str> {
        p.env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str())
    }

    #[test]
    fn precedence_overrides_beat_buildspec_and_reserved_beat_all() {
        let mut spec = BuildSpec::default();
        spec.env.variables = vec![var("A", "spec"), var("B", "spec"), var("C", "spec")];
        let mut inp = input();
        inp.project_variables = vec![
            ("B".into(), "project".into()),
            ("C".into(), "project".into()),
        ];
        inp.overrides = vec![("B".into(), "cli".into())];
        inp.trust_host_ca = Some("/etc/ssl/certs/ca-certificates.crt".into());
        let p = plan(&spec, &inp).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(get(&p, "A"), Some("spec"));
        assert_eq!(get(&p, "B"), Some("cli"));
        assert_eq!(get(&p, "C"), Some("project"));
        assert_eq!(
            get(&p, "CODEBUILD_BUILD_ID"),
            Some("demo:0123abcd-0000-0000-0000-000000000000")
        );
        assert_eq!(get(&p, "CODEBUILD_BUILD_NUMBER"), Some("7"));
        assert_eq!(get(&p, "SSL_CERT_FILE"), Some(CA_BUNDLE_MOUNT));
        assert!(p.src_dir.starts_with("/codebuild/output/src"));
        assert_eq!(get(&p, "CODEBUILD_SRC_DIR"), Some(p.src_dir.as_str()));
    }

    #[test]
    fn a_webhooks_variables_win_over_the_source_facts() {
        let mut inp = input();
        inp.source_version = Some("main".into());
        inp.trigger_variables = vec![
            ("CODEBUILD_SOURCE_VERSION".into(), "pr/12".into()),
            (
                "CODEBUILD_WEBHOOK_EVENT".into(),
                "PULL_REQUEST_CREATED".into(),
            ),
        ];
        inp.overrides = vec![("CODEBUILD_WEBHOOK_EVENT".into(), "PUSH".into())];
        let p = plan(&BuildSpec::default(), &inp).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(get(&p, "CODEBUILD_SOURCE_VERSION"), Some("pr/12"));
        assert_eq!(
            get(&p, "CODEBUILD_WEBHOOK_EVENT"),
            Some("PULL_REQUEST_CREATED")
        );
    }

    #[test]
    fn runtime_versions_reach_the_install_phase_in_order() {
        let mut spec = BuildSpec::default();
        spec.phases.install = Some(Phase {
            runtime_versions: vec![var("python", "3.11"), var("nodejs", "20.x")],
            ..Default::default()
        });
        let p = plan(&spec, &input()).unwrap_or_else(|e| panic!("{e}"));
        // Whether they are honoured depends on the image: decided when INSTALL starts.
        assert!(p.notices.is_empty(), "{:?}", p.notices);
        assert_eq!(p.phases[0].name, PhaseName::Install);
        assert_eq!(
            p.phases[0].runtime_versions,
            [
                ("python".to_string(), "3.11".to_string()),
                ("nodejs".to_string(), "20.x".to_string())
            ]
        );
    }

    #[test]
    fn secrets_stay_out_of_the_open_environment_and_cannot_be_exported() {
        let mut spec = BuildSpec::default();
        spec.env.variables = vec![var("TOKEN", "plain"), var("KEEP", "x")];
        spec.env.parameter_store = vec![var("TOKEN", "/app/token"), var("DB", "/app/db")];
        let mut inp = input();
        inp.secrets = vec![
            ("TOKEN".into(), Secret::new("s3cret-token")),
            ("DB".into(), Secret::new("s3cret-db")),
        ];
        inp.overrides = vec![("DB".into(), "from-cli".into())];
        let p = plan(&spec, &inp).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            get(&p, "TOKEN"),
            None,
            "a secret is not in the open environment"
        );
        assert_eq!(
            get(&p, "DB"),
            Some("from-cli"),
            "the command line wins over a secret"
        );
        let secret_names: Vec<&str> = p.secret_env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(secret_names, ["TOKEN"]);
        assert!(
            !format!("{p:?}").contains("s3cret"),
            "Debug never shows a value"
        );

        spec.env.exported_variables = vec!["TOKEN".into()];
        assert!(matches!(
            plan(&spec, &inp),
            Err(PlanError::BadExport { .. })
        ));
    }
}
