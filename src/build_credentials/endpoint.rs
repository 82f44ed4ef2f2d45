//! The container-credentials endpoint: `GET /v2/credentials` with the build's token in
//! `Authorization` answers the ECS JSON document (`AccessKeyId`, `SecretAccessKey`,
//! `Token`, `Expiration`); anything else is refused. Nothing of a request or an answer is
//! logged.

use super::{listen_addr, BuildCredentials, BuildCredentialsError, Task};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The path the SDKs are pointed at.
pub(super) const PATH: &str = "/v2/credentials";

/// How long a client may keep credentials that carry no expiry of their own (runner's
/// long-term keys) before asking again.
const STATIC_TTL: Duration = Duration::from_secs(3600);

/// Binds `169.254.170.2:<free port>` and serves until the task is stopped. Returns the
/// full URI for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
pub(super) async fn serve(
    creds: Arc<BuildCredentials>,
) -> Result<(String, Task), BuildCredentialsError> {
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
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let app = axum::Router::new().fallback(answer).with_state(creds);
    let handle = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "the build's credentials endpoint stopped");
        }
    });
    Ok((format!("http://{bound}{PATH}"), Task { handle, stop }))
}

async fn answer(
    State(creds): State<Arc<BuildCredentials>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(given) = headers.get(header::AUTHORIZATION) else {
        return refuse(StatusCode::UNAUTHORIZED, "no authorization token");
    };
    if !same(given.as_bytes(), creds.token.expose().as_bytes()) {
        return refuse(StatusCode::FORBIDDEN, "wrong authorization token");
    }
    if method != Method::GET || uri.path() != PATH {
        return refuse(StatusCode::NOT_FOUND, "no such resource");
    }
    match creds.current().await {
        Ok(c) => {
            let expiry = c.expiry().unwrap_or_else(|| SystemTime::now() + STATIC_TTL);
            let expiration = time::OffsetDateTime::from(expiry)
                .replace_nanosecond(0)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            let mut doc = serde_json::json!({
                "AccessKeyId": c.access_key_id(),
                "SecretAccessKey": c.secret_access_key(),
                "Token": c.session_token(),
                "Expiration": expiration,
            });
            if let Some(role) = &creds.role_arn {
                doc["RoleArn"] = serde_json::Value::String(role.clone());
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                doc.to_string(),
            )
                .into_response()
        }
        Err(message) => {
            tracing::warn!(error = %message, "no credentials for the build");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("runner has no credentials for the build: {message}"),
            )
        }
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "code": status.as_u16(), "message": message });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Compares in time independent of where the values differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn compares_tokens() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
