//! Registry credentials: anonymous, basic (user and password), or a source that can
//! refresh them (ECR's authorization token). Values are `Secret`s: never printed.

use super::error::PublishError;
use crate::secrets::Secret;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: Arc<Secret>,
    },
}

pub type CredentialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Credentials, PublishError>> + Send + 'a>>;

/// Where a registry client gets its credentials. `refresh` is true after the registry
/// refused the last ones (an expired token): the source must not answer from a cache.
pub trait CredentialSource: Send + Sync {
    fn credentials(&self, refresh: bool) -> CredentialFuture<'_>;
}

/// Fixed credentials.
pub struct Static(pub Credentials);

impl CredentialSource for Static {
    fn credentials(&self, _refresh: bool) -> CredentialFuture<'_> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c) })
    }
}

/// Where the credentials for non-ECR registries come from, read by the caller (the
/// command line: `RUNNER_REGISTRY_USER` / `RUNNER_REGISTRY_PASSWORD`, `DOCKER_CONFIG` or
/// `~/.docker`); publishing never looks at the process environment.
#[derive(Debug, Clone, Default)]
pub struct RegistryAuth {
    /// User and password for every non-ECR registry; win over `docker_config`.
    pub basic: Option<(String, Secret)>,
    /// docker's configuration directory: the `auths` entry for the host in its
    /// `config.json` (what `docker login` writes) is used when `basic` is unset.
    pub docker_config: Option<PathBuf>,
}

impl RegistryAuth {
    /// Basic credentials for every non-ECR registry.
    pub fn basic(username: impl Into<String>, password: Secret) -> Self {
        RegistryAuth {
            basic: Some((username.into(), password)),
            docker_config: None,
        }
    }

    /// The credentials for `registry` (`host[:port]`): `basic`, else docker's entry for
    /// the host, else anonymous.
    pub fn credentials_for(&self, registry: &str) -> Credentials {
        if let Some((username, password)) = &self.basic {
            return Credentials::Basic {
                username: username.clone(),
                password: Arc::new(password.clone()),
            };
        }
        self.docker_config
            .as_deref()
            .and_then(|dir| docker_config_auth(dir, registry))
            .unwrap_or(Credentials::Anonymous)
    }
}

fn docker_config_auth(dir: &Path, registry: &str) -> Option<Credentials> {
    let text = read_small(&dir.join("config.json"))?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = json.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(k, _)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.split('/').next() == Some(registry)
    })?;
    let encoded = entry.1.get("auth")?.as_str()?;
    decode_basic(encoded)
}

/// The largest docker `config.json` read (one with many registries is a few KiB).
const MAX_DOCKER_CONFIG: u64 = 1 << 20;

/// A regular file of at most `MAX_DOCKER_CONFIG` bytes, as text; `None` for anything
/// else (a device, a FIFO, a larger file), which then gives no credentials.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_DOCKER_CONFIG + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= MAX_DOCKER_CONFIG).then_some(text)
}

/// Decodes `base64(user:password)`, the shape of docker's `auth` and ECR's token.
pub fn decode_basic(encoded: &str) -> Option<Credentials> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials::Basic {
        username: user.to_string(),
        password: Arc::new(Secret::new(password)),
    })
}
