//! The CLI's choice about the default image (`runner/standard:bookworm`) when no image is
//! named: build it on first use (with the host's docker client copied in when that is a
//! static binary), or, with `--no-build-image`, print the one-line instruction.

use crate::standard_image::StandardImage;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `--no-build-image`: instruct; otherwise build, with the host's docker client.
pub(super) fn choice(no_build: bool) -> StandardImage {
    if no_build {
        return StandardImage::Instruct;
    }
    StandardImage::Build {
        docker_client: static_docker_client(),
    }
}

/// The `docker` on PATH when it is statically linked (it then runs in any image), as
/// `scripts/images.sh standard` picks it.
fn static_docker_client() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let docker = std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())?;
    let docker = std::fs::canonicalize(docker).ok()?;
    // `ldd` succeeds only for dynamic executables.
    let dynamic = Command::new("ldd")
        .arg(&docker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    (!dynamic).then_some(docker)
}
