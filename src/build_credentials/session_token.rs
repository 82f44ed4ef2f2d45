//! runner's own credentials as the build gets them: temporary ones pass through; long-term
//! keys (no session token) are exchanged for a session through STS `GetSessionToken`, so
//! the build never holds runner's long-term secret (and every SDK accepts the answer:
//! the Rust and Java SDKs require a `Token` in a container-credentials document).

use aws_credential_types::provider::{self, future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use std::time::SystemTime;

/// How long a session asked for the build lasts (STS's minimum is 15 minutes; the
/// endpoint refreshes 5 minutes before the end).
const SESSION_SECONDS: i32 = 3600;

#[derive(Debug)]
pub(super) struct SessionTokens {
    own: SharedCredentialsProvider,
    sts: aws_sdk_sts::Client,
}

impl SessionTokens {
    pub(super) fn new(config: &aws_types::SdkConfig, own: SharedCredentialsProvider) -> Self {
        let conf = aws_sdk_sts::config::Builder::from(config)
            .credentials_provider(own.clone())
            .build();
        Self {
            own,
            sts: aws_sdk_sts::Client::from_conf(conf),
        }
    }

    async fn provide(&self) -> provider::Result {
        let own = self.own.provide_credentials().await?;
        if own.session_token().is_some() {
            return Ok(own);
        }
        let out = self
            .sts
            .get_session_token()
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| {
                let failure = crate::aws_config::classify(&e, "check runner's AWS credentials");
                provider::error::CredentialsError::provider_error(format!(
                    "STS GetSessionToken for the build's session failed: {failure}"
                ))
            })?;
        let Some(c) = out.credentials() else {
            return Err(provider::error::CredentialsError::unhandled(
                "STS GetSessionToken answered without credentials",
            ));
        };
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "runner-build-session",
        ))
    }
}

impl ProvideCredentials for SessionTokens {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.provide())
    }
}
