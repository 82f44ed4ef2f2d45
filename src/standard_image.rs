//! The default build image, `runner/standard:bookworm`: runner's counterpart of
//! CodeBuild's standard image (Go, Java + Maven, Node.js, Python, AWS CLI, docker client,
//! git, jq, zip, build tools), declaring its runtimes for `runtime-versions`.
//!
//! Its recipe is `fixtures/images/standard/` (Dockerfile + runtimes.yml), built by
//! `scripts/images.sh standard`, or by runner itself on first use when no image is named
//! (`--image`, `RUNNER_IMAGE`, `build.image`). Both build the same Dockerfile on top of
//! `runner/debian:bookworm`, which `scripts/images.sh --debian` makes with debootstrap.

use crate::docker::{DockerEngine, DockerError, ImageBuildSpec};
use std::collections::HashMap;
use std::path::PathBuf;

/// The image a build uses when nothing names one.
pub const STANDARD_IMAGE: &str = "runner/standard:bookworm";
/// What the standard image is built on.
pub const BASE_IMAGE: &str = "runner/debian:bookworm";

const DOCKERFILE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/images/standard/Dockerfile"
));
/// The standard image's runtimes file (installed at [`crate::runtimes::RUNTIMES_YML`]).
pub const RUNTIMES_YML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/images/standard/runtimes.yml"
));

/// What to do when the standard image is needed and not on the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StandardImage {
    /// Fail with a one-line instruction to build it.
    #[default]
    Instruct,
    /// Build it now (several minutes, with progress). `docker_client`: a static docker
    /// client to copy into the image (the host's); `None` installs Debian's docker.io.
    Build { docker_client: Option<PathBuf> },
}

#[derive(Debug, thiserror::Error)]
pub enum StandardImageError {
    #[error("no build image named and the default image {STANDARD_IMAGE} is not built yet: run `scripts/images.sh standard` (or `runner build` without --no-build-image, which builds it), or pass --image IMAGE")]
    Missing,
    #[error("building the default image {STANDARD_IMAGE} needs {BASE_IMAGE}, which is missing: run `sudo scripts/images.sh standard` (it builds both), or pass --image IMAGE")]
    NoBase,
    #[error("could not read the docker client {}: {source}; pass --image IMAGE or build the image with `scripts/images.sh standard`", path.display())]
    Client {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the default image {STANDARD_IMAGE} failed: {0}; `scripts/images.sh standard` builds it with a log, or pass --image IMAGE")]
    Build(DockerError),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// The build context: the recipe plus `bin/` (the docker client, when given).
fn context_tar(docker_client: Option<&[u8]>) -> Result<Vec<u8>, std::io::Error> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, path, data)
    };
    add("Dockerfile", 0o644, DOCKERFILE.as_bytes())?;
    add("runtimes.yml", 0o644, RUNTIMES_YML.as_bytes())?;
    match docker_client {
        Some(bytes) => add("bin/docker", 0o755, bytes)?,
        None => add("bin/.keep", 0o644, b"")?,
    }
    tar.into_inner()
}

/// Makes sure [`STANDARD_IMAGE`] is on the engine, building it as `choice` says.
/// `progress` gets one line per Dockerfile step while it builds.
pub async fn ensure(
    engine: &DockerEngine,
    choice: &StandardImage,
    mut progress: impl FnMut(&str),
) -> Result<(), StandardImageError> {
    if engine.image_info(STANDARD_IMAGE).await.is_ok() {
        return Ok(());
    }
    let docker_client = match choice {
        StandardImage::Instruct => return Err(StandardImageError::Missing),
        StandardImage::Build { docker_client } => docker_client,
    };
    if engine.image_info(BASE_IMAGE).await.is_err() {
        return Err(StandardImageError::NoBase);
    }
    let client = match docker_client {
        Some(path) => Some(
            std::fs::read(path).map_err(|source| StandardImageError::Client {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let tar = context_tar(client.as_deref()).map_err(|e| {
        StandardImageError::Build(DockerError::Build(format!("build context: {e}")))
    })?;
    let mut build_args = HashMap::new();
    build_args.insert("BASE".to_string(), BASE_IMAGE.to_string());
    if client.is_none() {
        build_args.insert("EXTRA_PACKAGES".to_string(), "docker.io".to_string());
    }
    let spec = ImageBuildSpec {
        tag: STANDARD_IMAGE.to_string(),
        dockerfile: "Dockerfile".to_string(),
        build_args,
        ..Default::default()
    };
    engine
        .build_image(&spec, bytes::Bytes::from(tar), |line| {
            if line.starts_with("Step ") {
                progress(line);
            }
        })
        .await
        .map_err(StandardImageError::Build)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_declares_its_runtimes_in_codebuilds_format() {
        let m = crate::runtimes::parse(RUNTIMES_YML).unwrap_or_else(|e| panic!("{e}"));
        let req = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let picked = crate::runtimes::resolve(
            &m,
            &req(&[
                ("golang", "1.19"),
                ("java", "corretto17"),
                ("python", "3.x"),
                ("nodejs", "18"),
                ("docker", "19"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(picked.len(), 5);
        assert_eq!(
            crate::runtimes::resolve(&m, &req(&[("golang", "latest")]))
                .unwrap_or_else(|e| panic!("{e}"))[0]
                .version,
            "1.22"
        );
        assert!(DOCKERFILE.contains("COPY runtimes.yml /codebuild/image/config/runtimes.yml"));
    }

    #[test]
    fn the_context_holds_the_recipe_and_the_client() {
        let tar = context_tar(Some(b"\x7fELF")).unwrap_or_else(|e| panic!("{e}"));
        let mut names = Vec::new();
        let mut a = tar::Archive::new(tar.as_slice());
        for e in a.entries().unwrap_or_else(|e| panic!("{e}")) {
            let e = e.unwrap_or_else(|e| panic!("{e}"));
            names.push(
                e.path()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .display()
                    .to_string(),
            );
        }
        assert_eq!(names, ["Dockerfile", "runtimes.yml", "bin/docker"]);
    }
}
