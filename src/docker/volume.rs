//! Named engine volumes (the local cache volumes of `cache.paths`) and reading a path of
//! an image without running it.

use super::client::DockerEngine;
use super::container::{owner, LABEL_BUILD_ID, LABEL_OWNER, LABEL_PROJECT};
use super::error::{api, DockerError};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    DownloadFromContainerOptions, RemoveContainerOptionsBuilder, RemoveVolumeOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;

impl DockerEngine {
    /// Removes the volume `name`. `Ok(false)`: there was none. A volume still used by a
    /// container is an error (the engine's 409).
    pub async fn remove_volume(&self, name: &str) -> Result<bool, DockerError> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(api("remove volume")(e)),
        }
    }

    /// Whether the volume `name` exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(api("inspect volume")(e)),
        }
    }

    /// Creates the volume `name` with `labels` unless it exists, and returns its
    /// directory when that is reachable from here (a local engine); `None` otherwise.
    /// An empty volume is filled from the image when a container first mounts it.
    pub async fn ensure_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<Option<std::path::PathBuf>, DockerError> {
        let volume = match self.docker.inspect_volume(name).await {
            Ok(v) => v,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => self
                .docker
                .create_volume(bollard::models::VolumeCreateRequest {
                    name: Some(name.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                })
                .await
                .map_err(api("create volume"))?,
            Err(e) => return Err(api("inspect volume")(e)),
        };
        let dir = std::path::PathBuf::from(volume.mountpoint);
        Ok(dir.is_dir().then_some(dir))
    }

    /// The names of the engine's volumes that start with `prefix`.
    pub async fn list_volumes(&self, prefix: &str) -> Result<Vec<String>, DockerError> {
        let mut filters = HashMap::new();
        filters.insert("name".to_string(), vec![prefix.to_string()]);
        let opts = bollard::query_parameters::ListVolumesOptions {
            filters: Some(filters),
        };
        let list = self
            .docker
            .list_volumes(Some(opts))
            .await
            .map_err(api("list volumes"))?;
        // The engine's name filter matches anywhere in the name.
        let mut names: Vec<String> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The engine's tar of `path` in `image` (entries named `<basename of path>/…`), read
    /// from a container that is created and never started. `Ok(None)`: no such path.
    pub async fn image_path_tar(
        &self,
        image: &str,
        path: &str,
        build_id: &str,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let mut labels = HashMap::new();
        labels.insert(LABEL_BUILD_ID.to_string(), build_id.to_string());
        // Owned like a build container, so that one left behind (runner stopped before
        // removing it) is swept by the project's next build.
        labels.insert(LABEL_OWNER.to_string(), owner());
        let project = build_id.rsplit_once(':').map_or(build_id, |(p, _)| p);
        labels.insert(LABEL_PROJECT.to_string(), project.to_string());
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["/bin/sh".into()]),
            entrypoint: Some(vec![]),
            labels: Some(labels),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(api("create container"))?
            .id;
        let mut stream = self.docker.download_from_container(
            &id,
            Some(DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let mut out = Vec::new();
        let mut result = Ok(Some(()));
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    result = Ok(None);
                    break;
                }
                Err(e) => {
                    result = Err(api("copy files out of image")(e));
                    break;
                }
            }
        }
        drop(stream);
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let _ = self.docker.remove_container(&id, Some(opts)).await;
        result.map(|found| found.map(|()| out))
    }
}
