//! Docker for the build without privileged mode: each build gets its own Docker API
//! socket (`/var/run/docker.sock` in the container, `DOCKER_HOST` set) served by runner,
//! which forwards to the host engine what `policy` allows: the build sees and touches
//! only the containers, execs, volumes and networks it created (labels), plus the shared
//! images; privileged, host-namespace and host-path containers are refused. When the
//! build ends, `DockerGate::stop` removes everything the build created except images;
//! a runner killed outright leaves them to the next build's dead-owner sweep
//! (`DockerEngine::remove_stale_gate_objects`).
//!
//! Architecture invariant: an allowlist. A request reaches the engine only when
//! `policy::route` knows it, and then exactly as the policy rebuilt it (canonical path,
//! re-encoded query, re-serialized body).

pub mod buildkit;
pub mod policy;
mod proxy;

use super::container::{is_stale_owner, LABEL_PROJECT};
use super::error::{api, DockerError};
use super::DockerEngine;
use bollard::query_parameters::{RemoveContainerOptionsBuilder, RemoveVolumeOptions};
pub use policy::{Scope, LABEL_GATE};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::watch;

/// What a build gets for running `docker` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerMode {
    /// The host engine through runner's filtering gate (the default for privileged
    /// builds): no privileged container, the build sees only what it created.
    Gate,
    /// A real privileged container, for images that start their own Docker daemon and
    /// hosts that allow privileged containers.
    Privileged,
    /// No Docker: neither the gate nor privileged mode.
    None,
}

impl DockerMode {
    /// What a build gets: the mode asked for, else the gate when the build asks for
    /// privileged mode (as buildspecs that run `docker` do on CodeBuild), else none.
    pub fn effective(asked: Option<DockerMode>, privileged: bool) -> DockerMode {
        match asked {
            Some(m) => m,
            None if privileged => DockerMode::Gate,
            None => DockerMode::None,
        }
    }

    pub fn parse(s: &str) -> Option<DockerMode> {
        match s {
            "gate" => Some(DockerMode::Gate),
            "privileged" => Some(DockerMode::Privileged),
            "none" => Some(DockerMode::None),
            _ => None,
        }
    }
}

/// Where the build's client finds the gate inside the container.
pub const SOCKET_IN_CONTAINER: &str = "/var/run/docker.sock";

/// A running gate for one build. Dropping it stops serving; `stop` also removes what
/// the build created.
pub struct DockerGate {
    // Removed (with the socket) when the gate is dropped.
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    build_id: String,
}

impl DockerGate {
    /// Serves the build's socket in a new private directory under `parent`, forwarding
    /// to the engine's socket `engine_socket`.
    pub async fn start(
        engine_socket: &Path,
        parent: &Path,
        scope: Scope,
    ) -> Result<Self, DockerError> {
        let gate_err = |what: &str, e: std::io::Error| {
            DockerError::Gate(format!(
                "{what} ({e}); check that {} is writable",
                parent.display()
            ))
        };
        std::fs::create_dir_all(parent).map_err(|e| gate_err("cannot create its directory", e))?;
        let dir = tempfile::Builder::new()
            .prefix("gate-")
            .tempdir_in(parent)
            .map_err(|e| gate_err("cannot create its directory", e))?;
        let socket = dir.path().join("docker.sock");
        if socket.as_os_str().len() > 100 {
            return Err(DockerError::Gate(format!(
                "its socket path {} is too long for a unix socket; use a shorter data \
                 directory",
                socket.display()
            )));
        }
        let listener =
            UnixListener::bind(&socket).map_err(|e| gate_err("cannot listen on its socket", e))?;
        // The directory is private to runner's user (tempdir: 0700); the socket itself
        // is open to every user of the build container (it runs phases as other users).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| gate_err("cannot set its socket's permissions", e))?;
        let (stop, stop_rx) = watch::channel(false);
        let build_id = scope.build_id.clone();
        let state = Arc::new(proxy::State {
            scope,
            upstream: engine_socket.to_path_buf(),
            stop: stop_rx.clone(),
        });
        let task = tokio::spawn(serve(listener, state, stop_rx));
        Ok(Self {
            _dir: dir,
            socket,
            stop,
            task,
            build_id,
        })
    }

    /// The socket's host path (bind-mounted at `SOCKET_IN_CONTAINER`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops serving (open streams included), then removes every container, network
    /// and volume the build created through the gate. Images stay.
    pub async fn stop(self, engine: &DockerEngine) -> Result<usize, DockerError> {
        let _ = self.stop.send(true);
        self.task.abort();
        engine.remove_gate_objects(&self.build_id).await
    }
}

impl Drop for DockerGate {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

async fn serve(listener: UnixListener, state: Arc<proxy::State>, mut stop: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(proxy::serve_connection(state.clone(), stream));
                }
                Err(e) => tracing::warn!(error = %e, "docker gate: accept failed"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    conns.abort_all();
}

impl DockerEngine {
    /// Removes the containers, networks and volumes the gate created for `build_id`
    /// (label `io.runner.gate=<build_id>`), in that order. Returns how many.
    pub async fn remove_gate_objects(&self, build_id: &str) -> Result<usize, DockerError> {
        self.remove_labelled_objects(&format!("{LABEL_GATE}={build_id}"), |_| true)
            .await
    }

    /// The dead-owner sweep for what gates created: the project's gate-created
    /// containers, networks and volumes whose runner process is gone.
    pub async fn remove_stale_gate_objects(&self, project: &str) -> Result<usize, DockerError> {
        let project = project.to_string();
        self.remove_labelled_objects(LABEL_GATE, move |labels| {
            labels.get(LABEL_PROJECT) == Some(&project)
                && is_stale_owner(labels.get(super::LABEL_OWNER).map(String::as_str))
        })
        .await
    }

    async fn remove_labelled_objects(
        &self,
        label: &str,
        keep: impl Fn(&HashMap<String, String>) -> bool,
    ) -> Result<usize, DockerError> {
        let mut removed = 0;
        for c in self.list_labelled(label).await? {
            if !keep(c.labels.as_ref().unwrap_or(&HashMap::new())) {
                continue;
            }
            let Some(id) = c.id else { continue };
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            if self.docker.remove_container(&id, Some(opts)).await.is_ok() {
                removed += 1;
            }
        }
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![label.to_string()]);
        let networks = self
            .docker
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters: Some(filters.clone()),
            }))
            .await
            .map_err(api("list networks"))?;
        for n in networks {
            if !keep(n.labels.as_ref().unwrap_or(&HashMap::new())) {
                continue;
            }
            let Some(id) = n.id else { continue };
            if self.docker.remove_network(&id).await.is_ok() {
                removed += 1;
            }
        }
        let volumes = self
            .docker
            .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(api("list volumes"))?;
        for v in volumes.volumes.unwrap_or_default() {
            if !keep(&v.labels) {
                continue;
            }
            if self
                .docker
                .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
                .await
                .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
