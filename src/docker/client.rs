use super::error::{api, DockerError};
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

/// A connection to the Docker engine (`DOCKER_HOST` or the local socket).
#[derive(Clone)]
pub struct DockerEngine {
    pub(crate) docker: Docker,
}

impl DockerEngine {
    /// Connects and agrees on an API version the engine speaks.
    pub async fn connect() -> Result<Self, DockerError> {
        let docker =
            Docker::connect_with_defaults().map_err(|source| DockerError::Connect { source })?;
        // Negotiation asks the engine for its version, so it doubles as the liveness check.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|source| DockerError::Connect { source })?;
        let v = docker.client_version();
        tracing::info!(
            api_version = %format!("{}.{}", v.major_version, v.minor_version),
            "connected to the Docker engine"
        );
        Ok(Self { docker })
    }

    /// Makes sure `image` is on the engine: inspect, else try to pull it.
    pub async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(api("inspect image")(e)),
        }
        let opts = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut pull = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                return Err(DockerError::ImageNotFound {
                    image: image.to_string(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// How many containers carry `label` (running or not).
    pub async fn count_labelled(&self, label: &str) -> Result<usize, DockerError> {
        Ok(self.list_labelled(label).await?.len())
    }

    /// The containers that carry `label` (`key` or `key=value`), running or not.
    pub(crate) async fn list_labelled(
        &self,
        label: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>, DockerError> {
        let mut filters = std::collections::HashMap::new();
        filters.insert("label".to_string(), vec![label.to_string()]);
        let opts = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(opts))
            .await
            .map_err(api("list containers"))
    }
}
