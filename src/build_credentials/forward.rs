//! Endpoint overrides on the host's loopback (a local stand-in such as moto on
//! `http://127.0.0.1:5000`) mean nothing inside the container, whose loopback is its own:
//! such an endpoint is forwarded from `169.254.170.2:<port>` (TCP, both ways) for the
//! build's lifetime, and the build gets the rewritten URL.

use super::{listen_addr, BuildCredentialsError, Task};
use axum::http::Uri;

/// Where a loopback endpoint really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    host: String,
    port: u16,
}

impl Target {
    pub(super) fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `url` with its authority replaced by `address` (`ip:port`).
    pub(super) fn rewrite(&self, url: &str, address: &str) -> String {
        let Ok(uri) = url.parse::<Uri>() else {
            return url.to_string();
        };
        let scheme = uri.scheme_str().unwrap_or("http");
        let rest = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| *p != "/" || url.ends_with('/'))
            .unwrap_or("");
        format!("{scheme}://{address}{rest}")
    }
}

/// The loopback host and port `url` points at, if it does.
pub(super) fn loopback_target(url: &str) -> Option<Target> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return None;
    }
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some(Target {
        host: host.to_string(),
        port,
    })
}

/// Listens on `169.254.170.2:<free port>` and forwards each connection to `target`.
/// Returns the address the build uses.
pub(super) async fn start(target: &Target) -> Result<(String, Task), BuildCredentialsError> {
    let addr = listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BuildCredentialsError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| BuildCredentialsError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let to = (target.host.clone(), target.port);
    let handle = tokio::spawn(async move {
        loop {
            let mut inbound = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::debug!(error = %e, "forwarder accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let to = to.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect((to.0.as_str(), to.1)).await
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
            });
        }
    });
    Ok((bound.to_string(), Task { handle, stop }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_loopback_endpoints() {
        let t = loopback_target("http://127.0.0.1:5000").unwrap();
        assert_eq!(t.key(), "127.0.0.1:5000");
        assert_eq!(
            t.rewrite("http://127.0.0.1:5000", "169.254.170.2:4000"),
            "http://169.254.170.2:4000"
        );
        assert_eq!(
            t.rewrite("http://127.0.0.1:5000/x?y=1", "169.254.170.2:4000"),
            "http://169.254.170.2:4000/x?y=1"
        );
        assert_eq!(
            loopback_target("http://localhost").unwrap().key(),
            "localhost:80"
        );
        assert_eq!(
            loopback_target("https://[::1]:8443").unwrap().key(),
            "::1:8443"
        );
        assert!(loopback_target("https://ssm.us-east-1.amazonaws.com").is_none());
        assert!(loopback_target("http://10.0.0.5:4566").is_none());
        assert!(loopback_target("not a url").is_none());
    }
}
