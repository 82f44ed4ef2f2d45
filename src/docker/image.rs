//! Images on the engine: inspect, export (`docker save`), load (`docker load`), build
//! (classic builder), tag.

use super::client::DockerEngine;
use super::error::{api, DockerError};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion, TagImageOptionsBuilder};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::collections::HashMap;

/// What runner needs to know of a local image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// `sha256:...` of the image's config: the image ID.
    pub id: String,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
    pub repo_digests: Vec<String>,
    pub labels: HashMap<String, String>,
    pub os: String,
    pub architecture: String,
}

/// A Dockerfile build.
#[derive(Debug, Clone, Default)]
pub struct ImageBuildSpec {
    pub dockerfile: String,
    pub tag: String,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub target: Option<String>,
    /// Images whose layers the builder may reuse (`--cache-from`).
    pub cache_from: Vec<String>,
    pub no_cache: bool,
}

impl DockerEngine {
    pub async fn image_info(&self, image: &str) -> Result<ImageInfo, DockerError> {
        let info = match self.docker.inspect_image(image).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(DockerError::ImageNotFound {
                    image: image.to_string(),
                    reason: "no such image on the engine".into(),
                })
            }
            Err(e) => return Err(api("inspect image")(e)),
        };
        Ok(ImageInfo {
            id: info.id.unwrap_or_default(),
            diff_ids: info.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            repo_digests: info.repo_digests.unwrap_or_default(),
            labels: info.config.and_then(|c| c.labels).unwrap_or_default(),
            os: info.os.unwrap_or_default(),
            architecture: info.architecture.unwrap_or_default(),
        })
    }

    /// The image as `docker save` writes it: a tar stream, read by a task that owns its
    /// connection (so the stream can move to another thread).
    pub fn export_image(
        &self,
        image: &str,
    ) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, DockerError>> + Send>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, DockerError>>(8);
        let docker = self.docker.clone();
        let image = image.to_string();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(docker.export_image(&image));
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item.map_err(api("export image"))).await.is_err() || failed {
                    break;
                }
            }
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|x| (x, rx))
        }))
    }

    /// Builds `context_tar` with the classic builder; `on_line` gets each line of
    /// progress. Returns the image ID.
    pub async fn build_image(
        &self,
        spec: &ImageBuildSpec,
        context_tar: Bytes,
        mut on_line: impl FnMut(&str),
    ) -> Result<String, DockerError> {
        let opts = BuildImageOptions {
            dockerfile: spec.dockerfile.clone(),
            t: Some(spec.tag.clone()),
            rm: true,
            forcerm: true,
            nocache: spec.no_cache,
            cachefrom: (!spec.cache_from.is_empty()).then(|| spec.cache_from.clone()),
            buildargs: Some(spec.build_args.clone()),
            labels: Some(spec.labels.clone()),
            target: spec.target.clone().unwrap_or_default(),
            version: BuilderVersion::BuilderV1,
            ..Default::default()
        };
        let mut stream = self
            .docker
            .build_image(opts, None, Some(bollard::body_full(context_tar)));
        let mut id = None;
        let mut pending = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| DockerError::Build(e.to_string()))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Build(err));
            }
            if let Some(text) = info.stream {
                pending.push_str(&text);
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    let line = line.trim_end();
                    if !line.is_empty() {
                        on_line(line);
                    }
                }
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                id = Some(aux);
            }
        }
        if !pending.trim().is_empty() {
            on_line(pending.trim_end());
        }
        match id {
            Some(id) => Ok(id),
            None => Ok(self.image_info(&spec.tag).await?.id),
        }
    }

    /// Loads a `docker save` archive file into the engine (`docker load`), streamed.
    /// Layers the engine already has (by chain) may be left out of the archive;
    /// compressed layers are fine.
    pub async fn load_image(&self, archive: &std::path::Path) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::ImportImageOptions {
            quiet: true,
            ..Default::default()
        };
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|source| DockerError::Source {
                path: archive.display().to_string(),
                source,
            })?;
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
        let mut stream = self.docker.import_image(opts, body, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(api("load image"))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Build(err));
            }
        }
        Ok(())
    }

    /// The layer chains (uncompressed layer digests, bottom first) of the engine's
    /// tagged images: a layer whose chain is here need not be loaded again.
    pub async fn local_layer_chains(&self) -> Result<Vec<Vec<String>>, DockerError> {
        let images = self
            .docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(api("list images"))?;
        let mut chains = Vec::new();
        for image in images {
            if let Ok(info) = self.image_info(&image.id).await {
                chains.push(info.diff_ids);
            }
        }
        Ok(chains)
    }

    pub async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        let opts = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker
            .tag_image(image, Some(opts))
            .await
            .map_err(api("tag image"))
    }
}
