//! The typed buildspec: what a validated `buildspec.yml` means, independent of YAML.
//!
//! Architecture invariant: this file knows nothing about YAML, Docker or the file system.
//! Every value a user wrote keeps the position it was written at (`Pos`) so later stages
//! (planning, secrets, the executor) can point back at the buildspec in their messages.

/// A 1-based line and column in the buildspec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// `version:` — 0.1 runs each command in a fresh shell, 0.2 runs all commands in one shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Version {
    V0_1,
    V0_2,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildSpec {
    /// `version:`; `None` only while parsing (a missing version is an error).
    pub version: Option<Version>,
    /// Top-level `run-as:` (Linux user for every command).
    pub run_as: Option<String>,
    pub env: Env,
    pub proxy: Option<Proxy>,
    pub batch: Option<Batch>,
    pub phases: Phases,
    /// `reports:` in file order: report group name or ARN → report group.
    pub reports: Vec<ReportGroup>,
    pub artifacts: Option<Artifacts>,
    pub cache: Option<Cache>,
}

impl BuildSpec {
    pub fn version(&self) -> Version {
        self.version.unwrap_or(Version::V0_2)
    }
}

/// A `NAME: value` pair as written (values are always strings: `1` and `true` are kept
/// as the text the user wrote, which is what CodeBuild exports to the shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Env {
    /// `env.shell` (`bash` or `/bin/sh` on Linux).
    pub shell: Option<String>,
    /// `env.variables` in file order.
    pub variables: Vec<EnvVar>,
    /// `env.parameter-store`: variable name → parameter name (value is the reference).
    pub parameter_store: Vec<EnvVar>,
    /// `env.secrets-manager`: variable name → `secret-id:json-key:version-stage:version-id`.
    pub secrets_manager: Vec<EnvVar>,
    /// `env.exported-variables`: names whose final values are reported.
    pub exported_variables: Vec<String>,
    /// `env.git-credential-helper: yes|no`.
    pub git_credential_helper: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Proxy {
    pub upload_artifacts: Option<bool>,
    pub logs: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Phases {
    pub install: Option<Phase>,
    pub pre_build: Option<Phase>,
    pub build: Option<Phase>,
    pub post_build: Option<Phase>,
}

impl Phases {
    /// The four command phases in the order CodeBuild runs them.
    pub fn in_order(&self) -> [(PhaseName, Option<&Phase>); 4] {
        [
            (PhaseName::Install, self.install.as_ref()),
            (PhaseName::PreBuild, self.pre_build.as_ref()),
            (PhaseName::Build, self.build.as_ref()),
            (PhaseName::PostBuild, self.post_build.as_ref()),
        ]
    }
}

/// Every phase CodeBuild reports, including the ones runner performs itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhaseName {
    Submitted,
    Provisioning,
    DownloadSource,
    Install,
    PreBuild,
    Build,
    PostBuild,
    UploadArtifacts,
    Finalizing,
    Completed,
}

impl PhaseName {
    /// The name CodeBuild prints (`PRE_BUILD`).
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Submitted => "SUBMITTED",
            PhaseName::Provisioning => "PROVISIONING",
            PhaseName::DownloadSource => "DOWNLOAD_SOURCE",
            PhaseName::Install => "INSTALL",
            PhaseName::PreBuild => "PRE_BUILD",
            PhaseName::Build => "BUILD",
            PhaseName::PostBuild => "POST_BUILD",
            PhaseName::UploadArtifacts => "UPLOAD_ARTIFACTS",
            PhaseName::Finalizing => "FINALIZING",
            PhaseName::Completed => "COMPLETED",
        }
    }

    /// The key used in the buildspec (`pre_build`), for command phases.
    pub fn buildspec_key(self) -> Option<&'static str> {
        match self {
            PhaseName::Install => Some("install"),
            PhaseName::PreBuild => Some("pre_build"),
            PhaseName::Build => Some("build"),
            PhaseName::PostBuild => Some("post_build"),
            _ => None,
        }
    }
}

impl std::fmt::Display for PhaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Phase {
    pub run_as: Option<String>,
    pub on_failure: OnFailure,
    /// `install.runtime-versions` (empty for the other phases): runtime → version.
    pub runtime_versions: Vec<EnvVar>,
    pub commands: Vec<Command>,
    pub finally: Vec<Command>,
    /// Where the phase key was written.
    pub pos: Pos,
}

/// `on-failure:` of a phase.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Default: a failure moves the build on as CodeBuild's transition rules say.
    #[default]
    Abort,
    /// Go on to the next phase as if this one had succeeded (the build still fails).
    Continue,
    /// `RETRY`, `RETRY-<count>`, `RETRY-<regex>`, `RETRY-<count>-<regex>`: run the phase
    /// again up to `count` times (default 3) when its output matches `regex` (default `.*`).
    Retry { count: u32, regex: Option<String> },
}

/// One shell command as written (block scalars keep their newlines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub text: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportGroup {
    /// The key under `reports:` (a report group name or ARN).
    pub name: String,
    pub files: Vec<String>,
    pub base_directory: Option<String>,
    pub discard_paths: bool,
    /// `file-format:` upper-cased (`JUNITXML` by default).
    pub file_format: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Artifacts {
    /// The primary artifact (files may be empty when only secondary artifacts are given).
    pub primary: ArtifactSpec,
    /// `secondary-artifacts:` identifier → artifact, in file order.
    pub secondary: Vec<(String, ArtifactSpec)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArtifactSpec {
    pub files: Vec<String>,
    pub name: Option<String>,
    pub discard_paths: bool,
    pub base_directory: Option<String>,
    pub exclude_paths: Vec<String>,
    pub enable_symlinks: bool,
    pub s3_prefix: Option<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cache {
    pub key: Option<String>,
    pub fallback_keys: Vec<String>,
    /// `action: restore | save` (both when absent).
    pub action: Option<String>,
    pub paths: Vec<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    List {
        fast_fail: bool,
        tasks: Vec<BatchTask>,
    },
    Graph {
        fast_fail: bool,
        tasks: Vec<BatchTask>,
    },
    Matrix {
        fast_fail: bool,
        matrix: BuildMatrix,
    },
    Fanout {
        fast_fail: bool,
        parallelism: u32,
        ignore_failure: bool,
    },
}

/// One entry of `build-list` or `build-graph`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchTask {
    pub identifier: String,
    /// Another buildspec file, relative to the source root (the current one when absent).
    pub buildspec: Option<String>,
    pub env: BatchEnv,
    pub ignore_failure: bool,
    /// `depend-on:` (build-graph only).
    pub depend_on: Vec<String>,
    pub debug_session: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchEnv {
    pub image: Option<String>,
    pub compute_type: Option<String>,
    pub env_type: Option<String>,
    pub privileged_mode: Option<bool>,
    pub variables: Vec<EnvVar>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildMatrix {
    /// `static:` settings shared by every task.
    pub ignore_failure: bool,
    pub static_env: BatchEnv,
    /// `dynamic.buildspec:` choices.
    pub buildspecs: Vec<String>,
    /// `dynamic.env.image:` choices.
    pub images: Vec<String>,
    /// `dynamic.env.compute-type:` choices.
    pub compute_types: Vec<String>,
    /// `dynamic.env.variables:` name → choices.
    pub variables: Vec<(String, Vec<String>)>,
}
