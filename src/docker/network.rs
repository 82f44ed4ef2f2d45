//! The credentials network: a bridge whose gateway, the host's side of the bridge, has
//! the address AWS SDKs accept for a container-credentials endpoint (169.254.170.2, the
//! address ECS serves task credentials on). With the network in place the host owns
//! that address, so runner can listen on it and every container reaches it through its
//! default route. One network per host can own the subnet: every runner process shares
//! the one named [`CREDENTIALS_NETWORK`], created when missing.

use super::client::DockerEngine;
use super::error::{api, DockerError};
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use std::collections::HashMap;

/// The shared network's name.
pub const CREDENTIALS_NETWORK: &str = "runner-credentials";
/// The subnet, and the gateway address (the host's) the endpoint listens on.
pub const CREDENTIALS_SUBNET: &str = "169.254.170.0/24";
pub const CREDENTIALS_GATEWAY: &str = "169.254.170.2";

impl DockerEngine {
    /// Makes sure the credentials network exists (race-safe: a concurrent runner creating
    /// it first is success).
    pub async fn ensure_credentials_network(&self) -> Result<(), DockerError> {
        if self.credentials_network_exists().await? {
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: CREDENTIALS_NETWORK.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(CREDENTIALS_SUBNET.into()),
                    gateway: Some(CREDENTIALS_GATEWAY.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([(
                "io.runner.purpose".to_string(),
                "build-credentials".to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Created by another runner in between (the engine answers 409, or 500 for
            // the overlapping pool on some versions): fine if it is there now.
            Err(e) => {
                if self.credentials_network_exists().await? {
                    Ok(())
                } else {
                    Err(api("create the credentials network (169.254.170.0/24)")(e))
                }
            }
        }
    }

    async fn credentials_network_exists(&self) -> Result<bool, DockerError> {
        match self.docker.inspect_network(CREDENTIALS_NETWORK, None).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(api("inspect the credentials network")(e)),
        }
    }
}
