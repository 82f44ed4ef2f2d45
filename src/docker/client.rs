use super::error::{api, DockerError};
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};

/// The local engine's socket when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// bollard's read/write timeout per connection, in seconds (its default).
const ENGINE_TIMEOUT: u64 = 120;

/// Where the engine is, as docker's CLI reads it from `DOCKER_HOST`, `DOCKER_TLS_VERIFY`
/// and `DOCKER_CERT_PATH` (the caller reads those; see [`EngineEndpoint::from_docker_env`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EngineEndpoint {
    /// `/var/run/docker.sock`.
    #[default]
    Local,
    /// `unix:///path/to/docker.sock`.
    Unix(PathBuf),
    /// `tcp://host:port` without TLS (plain HTTP, as docker without DOCKER_TLS_VERIFY).
    Tcp(String),
    /// `tcp://host:port` with TLS: the engine's certificate must chain to `ca`, and runner
    /// presents `cert`/`key` (docker's `ca.pem`, `cert.pem`, `key.pem`).
    Tls {
        addr: String,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

impl EngineEndpoint {
    /// The engine's unix socket, which the build's Docker gate forwards to; `None` for an
    /// engine reached over TCP (no gate: see `run::build`).
    pub fn unix_socket(&self) -> Option<PathBuf> {
        match self {
            Self::Local => Some(PathBuf::from(DEFAULT_SOCKET)),
            Self::Unix(path) => Some(path.clone()),
            Self::Tcp(_) | Self::Tls { .. } => None,
        }
    }

    /// docker's rules: `DOCKER_HOST` unset or empty → the local socket; `unix://PATH`;
    /// `tcp://HOST:PORT` (also `http://`), over TLS when `DOCKER_TLS_VERIFY` is set to
    /// anything but empty or `0` (or the scheme is `https://`), with the three PEM files of
    /// `cert_dir` (`DOCKER_CERT_PATH`, default `~/.docker`).
    pub fn from_docker_env(
        docker_host: Option<&str>,
        tls_verify: Option<&str>,
        cert_dir: Option<&Path>,
    ) -> Result<Self, DockerError> {
        let host = docker_host.map(str::trim).unwrap_or_default();
        let bad = |reason: &str| DockerError::BadEndpoint {
            value: host.to_string(),
            reason: reason.to_string(),
        };
        if host.is_empty() {
            return Ok(Self::Local);
        }
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad("no socket path after unix://"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let (scheme, rest) = host
            .split_once("://")
            .ok_or_else(|| bad("write unix:///path/to/docker.sock or tcp://HOST:PORT"))?;
        let tls = match scheme {
            "tcp" | "http" => tls_verify.is_some_and(|v| !v.is_empty() && v != "0"),
            "https" => true,
            "ssh" => {
                return Err(bad(
                    "ssh:// engines are not supported; forward the engine's socket (ssh -L) and use unix:// or tcp://",
                ))
            }
            _ => return Err(bad("write unix:///path/to/docker.sock or tcp://HOST:PORT")),
        };
        let addr = rest.trim_end_matches('/');
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if addr.contains('/') || !port_ok {
            return Err(bad(
                "want HOST:PORT after the scheme (tcp://127.0.0.1:2376)",
            ));
        }
        if !tls {
            return Ok(Self::Tcp(addr.to_string()));
        }
        let dir = cert_dir.ok_or(DockerError::TlsFiles {
            path: "DOCKER_CERT_PATH".into(),
        })?;
        let file = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(DockerError::TlsFiles {
                    path: p.display().to_string(),
                })
            }
        };
        Ok(Self::Tls {
            addr: addr.to_string(),
            ca: file("ca.pem")?,
            cert: file("cert.pem")?,
            key: file("key.pem")?,
        })
    }

    /// How the endpoint is shown in messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Local => format!("unix://{DEFAULT_SOCKET}"),
            Self::Unix(p) => format!("unix://{}", p.display()),
            Self::Tcp(a) => format!("tcp://{a}"),
            Self::Tls { addr, .. } => format!("tcp://{addr} (TLS)"),
        }
    }
}

/// A connection to the Docker engine (the local socket, or `DOCKER_HOST`'s endpoint).
#[derive(Clone)]
pub struct DockerEngine {
    pub(crate) docker: Docker,
}

impl DockerEngine {
    /// Connects to the local socket and agrees on an API version the engine speaks.
    pub async fn connect() -> Result<Self, DockerError> {
        Self::connect_to(&EngineEndpoint::Local).await
    }

    /// Connects to `endpoint` and agrees on an API version the engine speaks.
    pub async fn connect_to(endpoint: &EngineEndpoint) -> Result<Self, DockerError> {
        let v = bollard::API_DEFAULT_VERSION;
        let remote = |source: bollard::errors::Error| DockerError::ConnectRemote {
            endpoint: endpoint.describe(),
            detail: crate::aws_config::error_chain(&source),
        };
        let docker = match endpoint {
            EngineEndpoint::Local => Docker::connect_with_unix(DEFAULT_SOCKET, ENGINE_TIMEOUT, v)
                .map_err(|source| DockerError::Connect { source })?,
            EngineEndpoint::Unix(p) => {
                Docker::connect_with_unix(&p.display().to_string(), ENGINE_TIMEOUT, v)
                    .map_err(remote)?
            }
            EngineEndpoint::Tcp(addr) => {
                Docker::connect_with_http(&format!("tcp://{addr}"), ENGINE_TIMEOUT, v)
                    .map_err(remote)?
            }
            EngineEndpoint::Tls {
                addr,
                ca,
                cert,
                key,
            } => {
                // rustls needs one process-wide provider when more than one is compiled
                // in; ring is the one runner uses everywhere (a second install is a no-op).
                let _ = rustls::crypto::ring::default_provider().install_default();
                Docker::connect_with_ssl(&format!("tcp://{addr}"), key, cert, ca, ENGINE_TIMEOUT, v)
                    .map_err(remote)?
            }
        };
        // Negotiation asks the engine for its version, so it doubles as the liveness check.
        let docker = docker.negotiate_version().await.map_err(|source| {
            if *endpoint == EngineEndpoint::Local {
                DockerError::Connect { source }
            } else {
                remote(source)
            }
        })?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn docker_host_is_read_as_docker_reads_it() {
        let parse = EngineEndpoint::from_docker_env;
        assert_eq!(parse(None, None, None).unwrap(), EngineEndpoint::Local);
        assert_eq!(
            parse(Some(""), Some("1"), None).unwrap(),
            EngineEndpoint::Local
        );
        assert_eq!(
            parse(Some("unix:///run/user/1000/docker.sock"), None, None).unwrap(),
            EngineEndpoint::Unix("/run/user/1000/docker.sock".into())
        );
        assert_eq!(
            parse(Some("tcp://10.0.0.5:2375"), None, None).unwrap(),
            EngineEndpoint::Tcp("10.0.0.5:2375".into())
        );
        assert_eq!(
            parse(Some("tcp://10.0.0.5:2375"), Some("0"), None).unwrap(),
            EngineEndpoint::Tcp("10.0.0.5:2375".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let err = parse(Some("tcp://h:2376"), Some("1"), Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca.pem is missing"), "{err}");
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let tls = parse(Some("tcp://h:2376/"), Some("1"), Some(dir.path())).unwrap();
        assert_eq!(
            tls,
            EngineEndpoint::Tls {
                addr: "h:2376".into(),
                ca: dir.path().join("ca.pem"),
                cert: dir.path().join("cert.pem"),
                key: dir.path().join("key.pem"),
            }
        );
        assert_eq!(tls.describe(), "tcp://h:2376 (TLS)");
        for bad in [
            "h:2375",
            "tcp://h",
            "tcp://:1",
            "tcp://h:0",
            "ssh://u@h",
            "ftp://h:1",
            "unix://",
        ] {
            assert!(
                matches!(
                    parse(Some(bad), None, None),
                    Err(DockerError::BadEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }
}
