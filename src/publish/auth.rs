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
    /// the host, else anonymous. (Credential helpers are not run: see `source_for`.)
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

    /// Where `registry`'s credentials come from, as docker decides: `basic`, else in
    /// docker's `config.json` the host's `credHelpers` entry, else `credsStore`, else the
    /// host's `auths` entry, else anonymous. A helper (`docker-credential-<name>`, from
    /// PATH) is run when credentials are first needed and again when refused.
    pub fn source_for(&self, registry: &str) -> Arc<dyn CredentialSource> {
        if self.basic.is_none() {
            if let Some(helper) = self
                .docker_config
                .as_deref()
                .and_then(|dir| docker_config_helper(dir, registry))
            {
                return Arc::new(CredentialHelper {
                    helper,
                    registry: registry.to_string(),
                });
            }
        }
        Arc::new(Static(self.credentials_for(registry)))
    }
}

/// `https://host/v1/` or `host` → `host`.
fn config_host(key: &str) -> &str {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    k.split('/').next().unwrap_or(k)
}

/// The helper docker would ask for `registry`: its `credHelpers` entry, else `credsStore`.
/// Only names of letters, digits, `.`, `_` and `-` (the program is
/// `docker-credential-<name>`, never a path).
fn docker_config_helper(dir: &Path, registry: &str) -> Option<String> {
    let text = read_small(&dir.join("config.json"))?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let per_host = json
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| config_host(k) == registry))
        .and_then(|(_, v)| v.as_str());
    let name = per_host.or_else(|| json.get("credsStore").and_then(|s| s.as_str()))?;
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ok.then(|| name.to_string())
}

/// The longest a credential helper may take (a keychain prompt, a token exchange).
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The most of a helper's answer read.
const MAX_HELPER_OUTPUT: usize = 1 << 20;

/// docker's credential-helper protocol: `docker-credential-<helper> get` with the
/// registry's host on standard input answers `{"ServerURL", "Username", "Secret"}`.
struct CredentialHelper {
    helper: String,
    registry: String,
}

impl CredentialHelper {
    async fn get(&self) -> Result<Credentials, PublishError> {
        use tokio::io::AsyncWriteExt;
        let fail = |detail: String| PublishError::CredentialHelper {
            helper: self.helper.clone(),
            registry: self.registry.clone(),
            detail,
        };
        let program = format!("docker-credential-{}", self.helper);
        let mut child = tokio::process::Command::new(&program)
            .arg("get")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run {program} ({e}); is it on PATH?")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading is judged by its answer below.
            let _ = stdin.write_all(self.registry.as_bytes()).await;
        }
        let out = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("no answer within {} s", HELPER_TIMEOUT.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        let said = |b: &[u8]| {
            String::from_utf8_lossy(&b[..b.len().min(300)])
                .trim()
                .to_string()
        };
        if !out.status.success() {
            let msg = format!("{} {}", said(&out.stdout), said(&out.stderr));
            // The protocol's answer for a host the store has nothing for.
            if msg.contains("credentials not found") {
                return Ok(Credentials::Anonymous);
            }
            return Err(fail(format!("{}: {}", out.status, msg.trim())));
        }
        if out.stdout.len() > MAX_HELPER_OUTPUT {
            return Err(fail("answer larger than 1 MiB".into()));
        }
        // The answer holds the secret: parse errors must not echo it.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|_| fail("the answer is not the JSON object of the protocol".into()))?;
        let (Some(user), Some(secret)) = (v["Username"].as_str(), v["Secret"].as_str()) else {
            return Err(fail("the answer lacks Username or Secret".into()));
        };
        if secret.is_empty() {
            return Ok(Credentials::Anonymous);
        }
        Ok(Credentials::Basic {
            username: user.to_string(),
            password: Arc::new(Secret::new(secret)),
        })
    }
}

impl CredentialSource for CredentialHelper {
    fn credentials(&self, _refresh: bool) -> CredentialFuture<'_> {
        Box::pin(self.get())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_helper_is_chosen_as_docker_chooses_it() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| std::fs::write(dir.path().join("config.json"), text).unwrap();
        let helper = |host: &str| docker_config_helper(dir.path(), host);
        write(
            r#"{"credsStore":"desktop","credHelpers":{"https://123.dkr.ecr.us-east-1.amazonaws.com":"ecr-login","bad.example":"../../bin/sh"}}"#,
        );
        assert_eq!(
            helper("123.dkr.ecr.us-east-1.amazonaws.com").as_deref(),
            Some("ecr-login")
        );
        assert_eq!(helper("ghcr.io").as_deref(), Some("desktop"));
        assert_eq!(helper("bad.example"), None, "a path is not a helper name");
        write(r#"{"auths":{"ghcr.io":{"auth":"dTpw"}}}"#);
        assert_eq!(helper("ghcr.io"), None);
        let auth = RegistryAuth {
            basic: None,
            docker_config: Some(dir.path().to_path_buf()),
        };
        assert!(matches!(
            auth.credentials_for("ghcr.io"),
            Credentials::Basic { ref username, .. } if username == "u"
        ));
    }
}
