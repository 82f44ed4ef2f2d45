//! INSTALL's `runtime-versions`: the image's runtimes file read from the build container,
//! the versions resolved with CodeBuild's rules (`crate::runtimes`), and the commands
//! that select them handed to INSTALL to run first, in the build's shell.

use super::ctx::Ctx;
use crate::buildspec::model::{Command, Pos};
use crate::docker::{BuildContainer, DockerError};
use crate::event::Level;
use crate::runtimes::{self, MAX_RUNTIMES_YML, RUNTIMES_YML};
use std::io::Read;

/// What INSTALL does about its `runtime-versions`.
pub(super) enum RuntimeStep {
    /// Run these commands before INSTALL's own, in the same shell.
    Run(Vec<Command>),
    /// The image declares no runtimes: INSTALL runs its commands (a notice says so).
    Skipped,
    /// INSTALL fails with this phase context, running nothing.
    Fail(String),
}

/// Collects what the engine sends, up to a cap; the rest is counted, not kept.
struct Capped {
    bytes: Vec<u8>,
    overflow: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The tar stream is the file plus headers and padding.
        let cap = usize::try_from(MAX_RUNTIMES_YML).unwrap_or(usize::MAX) + 64 * 1024;
        if self.bytes.len().saturating_add(buf.len()) > cap {
            self.overflow = true;
        } else {
            self.bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The file at `path` in the container: `Ok(None)` when there is none, `Err(message)`
/// when it cannot be read as a text of at most [`MAX_RUNTIMES_YML`] bytes.
async fn read_text(
    container: &BuildContainer,
    path: &str,
    follow: bool,
) -> Result<Result<Option<String>, String>, DockerError> {
    let mut out = Capped {
        bytes: Vec::new(),
        overflow: false,
    };
    if !container.download_tar(path, &mut out).await? {
        return Ok(Ok(None));
    }
    if out.overflow {
        return Ok(Err(format!(
            "{path} is larger than {MAX_RUNTIMES_YML} bytes"
        )));
    }
    match first_entry(&out.bytes, path) {
        Ok(Entry::Text(text)) => Ok(Ok(Some(text))),
        // One link (an image pointing the standard path at its own file).
        Ok(Entry::Link(target)) if follow => {
            let target = if target.starts_with('/') {
                target
            } else {
                format!("/codebuild/image/config/{target}")
            };
            Box::pin(read_text(container, &target, false)).await
        }
        Ok(Entry::Link(_)) => Ok(Err(format!("{path} is a link to a link"))),
        Err(message) => Ok(Err(message)),
    }
}

enum Entry {
    Text(String),
    Link(String),
}

/// The first entry of a `docker cp` tar: a regular file's text or a link's target.
fn first_entry(bytes: &[u8], path: &str) -> Result<Entry, String> {
    let mut archive = tar::Archive::new(bytes);
    let first = archive
        .entries()
        .ok()
        .and_then(|mut e| e.next())
        .and_then(Result::ok);
    let Some(mut entry) = first else {
        return Err(format!("{path} could not be read from the image"));
    };
    let kind = entry.header().entry_type();
    if kind.is_symlink() {
        return entry
            .link_name()
            .ok()
            .flatten()
            .map(|t| Entry::Link(t.to_string_lossy().into_owned()))
            .ok_or_else(|| format!("{path} is a link runner cannot read"));
    }
    if !kind.is_file() {
        return Err(format!("{path} is not a regular file"));
    }
    let mut text = String::new();
    if entry
        .by_ref()
        .take(MAX_RUNTIMES_YML)
        .read_to_string(&mut text)
        .is_err()
    {
        return Err(format!("{path} is not UTF-8 text"));
    }
    Ok(Entry::Text(text))
}

/// Resolves `requested` against the image's runtimes file. Announces each selection
/// (CodeBuild's "Selecting 'nodejs' runtime version '20' based on manual selections...")
/// or, on an image without the file, CodeBuild's notice that selection is skipped.
pub(super) async fn select(
    ctx: &Ctx<'_>,
    container: &BuildContainer,
    requested: &[(String, String)],
) -> Result<RuntimeStep, DockerError> {
    let text = match read_text(container, RUNTIMES_YML, true).await? {
        Ok(Some(text)) => text,
        Ok(None) => {
            ctx.notice(
                Level::Warning,
                format!(
                    "Skipping install of runtimes ({}). Runtime version selection is not supported by this build image: it has no {RUNTIMES_YML} declaring its runtimes.",
                    requested
                        .iter()
                        .map(|(n, v)| format!("{n}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return Ok(RuntimeStep::Skipped);
        }
        Err(message) => {
            return Ok(RuntimeStep::Fail(format!(
                "YAML_FILE_ERROR: the build image's runtimes file cannot be read: {message}"
            )))
        }
    };
    let manifest = match runtimes::parse(&text) {
        Ok(m) => m,
        Err(e) => {
            return Ok(RuntimeStep::Fail(format!(
                "YAML_FILE_ERROR: the build image's {RUNTIMES_YML} is not valid: {e}"
            )))
        }
    };
    let selections = match runtimes::resolve(&manifest, requested) {
        Ok(s) => s,
        Err(e) => return Ok(RuntimeStep::Fail(format!("YAML_FILE_ERROR: {e}"))),
    };
    let mut commands = Vec::new();
    for s in &selections {
        ctx.notice(Level::Info, s.announcement());
        commands.extend(s.commands.iter().map(|text| Command {
            text: text.clone(),
            pos: Pos::default(),
        }));
    }
    Ok(RuntimeStep::Run(commands))
}
