use thiserror::Error;

#[derive(Debug, Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine ({source}); start it (`dockerd`, or `bash scripts/setup.sh` \
         installs and starts it) or point DOCKER_HOST at it"
    )]
    Connect {
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "cannot reach the Docker engine at {endpoint}: {detail}; check DOCKER_HOST, and with \
         DOCKER_TLS_VERIFY that DOCKER_CERT_PATH holds the CA that signed the engine's \
         certificate (ca.pem) and a client certificate the engine accepts (cert.pem, key.pem)"
    )]
    ConnectRemote { endpoint: String, detail: String },
    #[error("DOCKER_HOST={value:?}: {reason}")]
    BadEndpoint { value: String, reason: String },
    #[error(
        "DOCKER_TLS_VERIFY is set but {path} is missing: put the engine's CA (ca.pem), a client \
         certificate (cert.pem) and its key (key.pem) in DOCKER_CERT_PATH (default ~/.docker)"
    )]
    TlsFiles { path: String },
    #[error(
        "image {image:?} is not on this machine and could not be pulled ({reason}); \
         build the local base images with `bash scripts/images.sh` or pass another --image"
    )]
    ImageNotFound { image: String, reason: String },
    #[error("docker {action} failed: {source}")]
    Api {
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("docker build failed: {0}")]
    Build(String),
    #[error("the build shell could not be started: {0}")]
    Shell(String),
    #[error(
        "cannot run commands as user {0:?} (run-as): the image has no such user, or its shell cannot start"
    )]
    RunAs(String),
    #[error("runner's Docker gate for the build could not start: {0}")]
    Gate(String),
    #[error("cannot read the source directory {path}: {source}")]
    Source {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn api(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    move |source| DockerError::Api { action, source }
}
