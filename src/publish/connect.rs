//! Opens a registry client for an image reference: ECR hosts get ECR authorization
//! tokens through the AWS SDK (and their repository checked or created), other hosts
//! the caller's or docker's credentials ([`RegistryAuth`]).

use super::auth::RegistryAuth;
use super::ecr::{parse_ecr_host, EcrCredentials};
use super::error::PublishError;
use super::reference::ImageRef;
use super::registry::{Endpoints, Limits, Registry, RetryPolicy};
use crate::aws_config::AwsSettings;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub endpoints: Endpoints,
    pub aws: AwsSettings,
    /// Credentials for non-ECR registries.
    pub auth: RegistryAuth,
    /// Create a missing ECR repository (when pushing).
    pub create_repository: bool,
    pub retry: RetryPolicy,
    /// Timeouts and size caps of the registry client.
    pub limits: Limits,
}

pub struct Connected {
    pub registry: Arc<Registry>,
    /// The repository's tags are immutable (ECR `IMMUTABLE`).
    pub immutable_tags: bool,
    pub ecr: Option<Arc<EcrCredentials>>,
}

/// `for_push`: check (and maybe create) the ECR repository first.
pub async fn connect(
    image: &ImageRef,
    opts: &ConnectOptions,
    for_push: bool,
) -> Result<Connected, PublishError> {
    match parse_ecr_host(&image.registry) {
        Some((account, region)) => {
            let mut aws = opts.aws.clone();
            aws.region.get_or_insert(region);
            let sdk = crate::aws_config::load_sdk_config(&aws).await;
            let ecr = Arc::new(EcrCredentials::new(
                aws_sdk_ecr::Client::new(&sdk),
                &account,
            ));
            let immutable_tags = if for_push {
                ecr.ensure_repository(&image.repository, opts.create_repository)
                    .await?
            } else {
                false
            };
            let registry = Registry::with_limits(
                &image.registry,
                &opts.endpoints,
                ecr.clone(),
                opts.retry,
                opts.limits,
            )?;
            Ok(Connected {
                registry: Arc::new(registry),
                immutable_tags,
                ecr: Some(ecr),
            })
        }
        None => {
            let creds = opts.auth.source_for(&image.registry);
            let registry = Registry::with_limits(
                &image.registry,
                &opts.endpoints,
                creds,
                opts.retry,
                opts.limits,
            )?;
            Ok(Connected {
                registry: Arc::new(registry),
                immutable_tags: false,
                ecr: None,
            })
        }
    }
}
