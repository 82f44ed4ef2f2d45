use super::error::{api, DockerError};
use super::shell::DockerShell;
use super::DockerEngine;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, DownloadFromContainerOptions,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use tokio::io::AsyncWrite;

/// Every container runner creates carries this label (value: the build id).
pub const LABEL_BUILD_ID: &str = "io.runner.build-id";
/// `hostname:pid` of the runner process that owns the container.
pub const LABEL_OWNER: &str = "io.runner.owner";
/// The project the build belongs to: a build removes the containers of its project that
/// no live runner owns (left behind when runner was stopped between creating and
/// starting one, where AutoRemove never fires).
pub const LABEL_PROJECT: &str = "io.runner.project";

/// What the build container looks like.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub image: String,
    pub name: String,
    pub build_id: String,
    /// The project (label `io.runner.project`).
    pub project: String,
    pub working_dir: String,
    /// `(host path, container path, read_only)`.
    pub binds: Vec<(String, String, bool)>,
    /// Container paths that get an anonymous volume (filled from the image's content at
    /// that path, removed with the container).
    pub volumes: Vec<String>,
    pub privileged: bool,
    /// The host path of the build's Docker gate socket (`docker::gate`): mounted at
    /// `/var/run/docker.sock`, with `DOCKER_HOST` pointing at it.
    pub docker_socket: Option<String>,
}

/// An owned build container.
///
/// Its main process is a shell loop reading standard input, and runner holds that input
/// open through an attach connection for as long as this value lives. The container is
/// created with `AutoRemove` and `StdinOnce`: when the connection closes — `remove()`,
/// a drop on an error path, a cancelled future, or runner killed outright — the main
/// process reads end-of-file, exits, and the engine deletes the container.
pub struct BuildContainer {
    engine: DockerEngine,
    id: String,
    // A Mutex only to make the handle `Sync`; it is never contended.
    deadman: std::sync::Mutex<Option<Pin<Box<dyn AsyncWrite + Send>>>>,
}

impl BuildContainer {
    pub async fn start(engine: &DockerEngine, spec: &ContainerSpec) -> Result<Self, DockerError> {
        let mut labels = HashMap::new();
        labels.insert(LABEL_BUILD_ID.to_string(), spec.build_id.clone());
        labels.insert(LABEL_OWNER.to_string(), owner());
        labels.insert(LABEL_PROJECT.to_string(), spec.project.clone());
        let mut binds: Vec<String> = spec
            .binds
            .iter()
            .map(|(h, c, ro)| format!("{h}:{c}:{}", if *ro { "ro" } else { "rw" }))
            .collect();
        let mut env = Vec::new();
        if let Some(socket) = &spec.docker_socket {
            binds.push(format!("{socket}:{}:rw", super::gate::SOCKET_IN_CONTAINER));
            env.push(format!(
                "DOCKER_HOST=unix://{}",
                super::gate::SOCKET_IN_CONTAINER
            ));
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // Pure shell builtins, so any image with a /bin/sh works.
            cmd: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "while read -r _; do :; done".into(),
            ]),
            entrypoint: Some(vec![]),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            working_dir: Some(spec.working_dir.clone()),
            env: (!env.is_empty()).then_some(env),
            labels: Some(labels),
            volumes: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
            host_config: Some(HostConfig {
                binds: Some(binds),
                auto_remove: Some(true),
                privileged: Some(spec.privileged),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let id = engine
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(api("create container"))?
            .id;
        let mut this = Self {
            engine: engine.clone(),
            id,
            deadman: std::sync::Mutex::new(None),
        };
        // From here on, an error path must remove the container: `remove` does.
        match this.attach_and_start().await {
            Ok(()) => Ok(this),
            Err(e) => {
                this.remove().await;
                Err(e)
            }
        }
    }

    async fn attach_and_start(&mut self) -> Result<(), DockerError> {
        let opts = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdin(true)
            .build();
        let attached = self
            .engine
            .docker
            .attach_container(&self.id, Some(opts))
            .await
            .map_err(api("attach container"))?;
        if let Ok(mut d) = self.deadman.lock() {
            *d = Some(attached.input);
        }
        self.engine
            .docker
            .start_container(
                &self.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(api("start container"))?;
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `(container path, host path)` of the container's volumes, when the engine's host
    /// paths are reachable from here (a local engine).
    pub async fn volume_sources(&self) -> Result<Vec<(String, std::path::PathBuf)>, DockerError> {
        let info = self
            .engine
            .docker
            .inspect_container(&self.id, None)
            .await
            .map_err(api("inspect container"))?;
        Ok(info
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| {
                let host = std::path::PathBuf::from(m.source?);
                host.is_dir().then_some((m.destination?, host))
            })
            .collect())
    }

    /// Starts a shell that reads commands on its standard input.
    pub async fn open_shell(
        &self,
        argv: &[String],
        user: Option<&str>,
        env: &[(String, String)],
        working_dir: &str,
    ) -> Result<DockerShell, DockerError> {
        DockerShell::open(&self.engine, &self.id, argv, user, env, working_dir).await
    }

    /// Ends every process of the build except the container's main one (the shell loop
    /// that keeps the container alive), and returns once none is left: from then on,
    /// nothing of the build can change the source tree or the volumes while the host
    /// reads them. The container itself stays up (cache saving and copy mode still read
    /// through it) until `remove`.
    ///
    /// A root shell sends SIGKILL to every process it may signal (`kill -9 -1`: all but
    /// itself and the namespace's init; fork cannot outrun it, the kernel sends it under
    /// the task list lock) and repeats until only zombies remain, which the main loop
    /// never reaps and which can no longer run. Only shell builtins are used.
    pub async fn stop_build_processes(&self) -> Result<(), DockerError> {
        let mut shell = self
            .open_shell(&["/bin/sh".into(), "-s".into()], Some("0"), &[], "/")
            .await?;
        let result = shell.capture(STOP_PROCESSES_SCRIPT).await;
        shell.close().await;
        match result? {
            (0, _) => Ok(()),
            (code, _) => Err(DockerError::Shell(format!(
                "the build's processes could not be stopped before collecting its \
                 results (exit status {code}); nothing was collected: check for processes \
                 stuck in the kernel (state D) in the build"
            ))),
        }
    }

    /// Copies a host directory into the container at `dest` (created if missing).
    pub async fn upload_dir(&self, host_dir: &Path, dest: &str) -> Result<(), DockerError> {
        let mut shell = self
            .open_shell(&["/bin/sh".into(), "-s".into()], None, &[], "/")
            .await?;
        let (code, _) = shell
            .capture(&format!("mkdir -p '{}'", dest.replace('\'', "'\\''")))
            .await?;
        shell.close().await;
        if code != 0 {
            return Err(DockerError::Shell(format!(
                "could not create {dest} in the container"
            )));
        }
        let dir = host_dir.to_path_buf();
        let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut b = tar::Builder::new(Vec::new());
            b.follow_symlinks(false);
            b.append_dir_all(".", &dir)?;
            b.into_inner()
        })
        .await
        .map_err(|e| DockerError::Shell(e.to_string()))?
        .map_err(|source| DockerError::Source {
            path: host_dir.display().to_string(),
            source,
        })?;
        self.upload_tar(dest, tar).await
    }

    /// Extracts a tar archive (`bytes`) at `dest` in the container.
    pub async fn upload_tar(&self, dest: &str, bytes: Vec<u8>) -> Result<(), DockerError> {
        let opts = UploadToContainerOptionsBuilder::default()
            .path(dest)
            .build();
        self.engine
            .docker
            .upload_to_container(&self.id, Some(opts), bollard::body_full(bytes.into()))
            .await
            .map_err(api("copy files into container"))
    }

    /// Streams a tar of `path` in the container into `out`. `Ok(false)`: no such path.
    pub async fn download_tar(
        &self,
        path: &str,
        out: &mut (impl std::io::Write + Send),
    ) -> Result<bool, DockerError> {
        let opts = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut stream = self
            .engine
            .docker
            .download_from_container(&self.id, Some(opts));
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => out
                    .write_all(&bytes)
                    .map_err(|source| DockerError::Source {
                        path: path.to_string(),
                        source,
                    })?,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(false),
                Err(e) => return Err(api("copy files out of container")(e)),
            }
        }
        Ok(true)
    }

    /// Copies `path` out of the container into `host_dest`; the result is
    /// `host_dest/<basename of path>`. Entries that would land outside `host_dest` are
    /// refused by the tar reader.
    pub async fn download_dir(&self, path: &str, host_dest: &Path) -> Result<(), DockerError> {
        let opts = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut stream = self
            .engine
            .docker
            .download_from_container(&self.id, Some(opts));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(api("copy files out of container"))?);
        }
        let dest = host_dest.to_path_buf();
        tokio::task::spawn_blocking(move || tar::Archive::new(bytes.as_slice()).unpack(&dest))
            .await
            .map_err(|e| DockerError::Shell(e.to_string()))?
            .map_err(|source| DockerError::Source {
                path: host_dest.display().to_string(),
                source,
            })
    }

    /// Removes the container and returns once it is gone.
    ///
    /// Closing the attach connection ends the main process, and the engine's AutoRemove
    /// deletes the container (as `docker run --rm` does); waiting for that is quicker than
    /// killing a running container. A forced removal follows if the engine is slow.
    pub async fn remove(&mut self) {
        let had_deadman = match self.deadman.lock() {
            Ok(mut d) => d.take().is_some(),
            Err(_) => false,
        };
        if had_deadman {
            let opts = WaitContainerOptions {
                condition: "removed".to_string(),
            };
            let mut wait = self.engine.docker.wait_container(&self.id, Some(opts));
            let waited =
                tokio::time::timeout(std::time::Duration::from_secs(10), wait.next()).await;
            // `Ok(Some(Ok(_)))`: removed. A 404 (already gone) arrives as an error item.
            if matches!(waited, Ok(Some(Ok(_))))
                || matches!(
                    waited,
                    Ok(Some(Err(
                        bollard::errors::Error::DockerResponseServerError {
                            status_code: 404,
                            ..
                        }
                    )))
                )
            {
                return;
            }
        }
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        // 404: already gone; 409: removal already in progress.
        let _ = self
            .engine
            .docker
            .remove_container(&self.id, Some(opts))
            .await;
    }
}

/// See `stop_build_processes`. Its status is 1 when processes were still there after
/// many rounds (stuck in the kernel).
const STOP_PROCESSES_SCRIPT: &str = r#"__rc=1; __n=0
while [ "$__n" -lt 2000 ]; do
  kill -9 -1 2>/dev/null
  __left=0
  for __d in /proc/[0-9]*; do
    __p=${__d#/proc/}
    [ "$__p" = 1 ] && continue
    [ "$__p" = "$$" ] && continue
    __s=Z
    { while read -r __k __v __r; do
        if [ "$__k" = State: ]; then __s=$__v; break; fi
      done < "$__d/status"; } 2>/dev/null
    [ "$__s" = Z ] || __left=$((__left+1))
  done
  if [ "$__left" = 0 ]; then __rc=0; break; fi
  __n=$((__n+1))
done
[ "$__rc" = 0 ]"#;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The `io.runner.owner` label of containers this process creates.
pub(crate) fn owner() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// Whether a container with `owner` label and engine `state` is left over: its runner
/// process (on this machine) is gone, or it is a container that stopped and was not
/// removed. A container whose owner lives — a concurrent build of the same project,
/// perhaps between creating and starting it — never is; nor is a running one whose
/// owner cannot be checked (another machine using the same engine).
fn is_stale(owner: Option<&str>, state: Option<&str>, host: &str) -> bool {
    let stopped = matches!(state, Some("exited" | "dead"));
    let Some((owner_host, pid)) = owner.and_then(|o| o.rsplit_once(':')) else {
        return stopped;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return stopped;
    };
    if owner_host != host {
        return stopped;
    }
    stopped || !Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether the runner process named by an `io.runner.owner` label is gone (this
/// machine only; another machine's owner is never stale by this test).
pub(crate) fn is_stale_owner(owner: Option<&str>) -> bool {
    is_stale(owner, None, &hostname())
}

impl DockerEngine {
    /// Removes the containers of `project` that no live runner owns (see `is_stale`),
    /// build containers and the never-started helpers alike. Returns how many.
    pub async fn remove_stale_containers(&self, project: &str) -> Result<usize, DockerError> {
        let list = self
            .list_labelled(&format!("{LABEL_PROJECT}={project}"))
            .await?;
        let host = hostname();
        let mut removed = 0;
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let state = c.state.map(|s| s.to_string());
            if !is_stale(
                labels.get(LABEL_OWNER).map(String::as_str),
                state.as_deref(),
                &host,
            ) {
                continue;
            }
            let Some(id) = c.id else { continue };
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            // 404: already gone; 409: its removal is under way.
            if self.docker.remove_container(&id, Some(opts)).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::is_stale;

    #[test]
    fn only_containers_no_live_runner_owns_are_stale() {
        let me = std::process::id();
        let live = format!("h:{me}");
        // A live owner's container is never stale while it runs or waits to start.
        assert!(!is_stale(Some(&live), Some("created"), "h"));
        assert!(!is_stale(Some(&live), Some("running"), "h"));
        // A dead owner's container is, whatever its state (pid 0 never names a process).
        assert!(is_stale(Some("h:0"), Some("created"), "h"));
        assert!(is_stale(Some("h:0"), Some("running"), "h"));
        // Another machine's: only when stopped.
        assert!(!is_stale(Some("other:1"), Some("created"), "h"));
        assert!(is_stale(Some("other:1"), Some("exited"), "h"));
        assert!(!is_stale(None, Some("created"), "h"));
        assert!(is_stale(None, Some("dead"), "h"));
    }
}
