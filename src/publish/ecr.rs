//! Amazon ECR: authorization tokens (cached until they expire, refreshed when the
//! registry refuses them) and repositories (created when asked; tag immutability read).

use super::auth::{decode_basic, CredentialFuture, CredentialSource, Credentials};
use super::error::PublishError;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// `<account>.dkr.ecr.<region>.amazonaws.com[.cn]` → (account, region).
pub fn parse_ecr_host(host: &str) -> Option<(String, String)> {
    let host = host.split(':').next()?;
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let mut parts = rest.split('.');
    let account = parts.next()?;
    if parts.next()? != "dkr" {
        return None;
    }
    let ecr = parts.next()?;
    if ecr != "ecr" && ecr != "ecr-fips" {
        return None;
    }
    let region = parts.next()?;
    if parts.next().is_some() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((account.to_string(), region.to_string()))
}

/// Refresh a token this long before ECR says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

pub struct EcrCredentials {
    client: aws_sdk_ecr::Client,
    account: String,
    cached: Mutex<Option<(Credentials, SystemTime)>>,
}

impl EcrCredentials {
    pub fn new(client: aws_sdk_ecr::Client, account: &str) -> Self {
        Self {
            client,
            account: account.to_string(),
            cached: Mutex::new(None),
        }
    }

    /// Seeds the cache (a token from an earlier run; tests use it to start from a stale one).
    pub async fn seed(&self, creds: Credentials, expires: SystemTime) {
        *self.cached.lock().await = Some((creds, expires));
    }

    async fn fetch(&self) -> Result<(Credentials, SystemTime), PublishError> {
        #[allow(deprecated)] // registryIds is deprecated upstream but still selects the account
        let out = self
            .client
            .get_authorization_token()
            .registry_ids(&self.account)
            .send()
            .await
            .map_err(|e| PublishError::Ecr {
                operation: "GetAuthorizationToken",
                detail: crate::aws_config::classify(
                    &e,
                    "check AWS credentials, region and AWS_ENDPOINT_URL",
                )
                .to_string(),
            })?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| PublishError::Ecr {
                operation: "GetAuthorizationToken",
                detail: "the answer held no authorization data".into(),
            })?;
        let token = data.authorization_token().unwrap_or_default();
        let creds = decode_basic(token).ok_or_else(|| PublishError::Ecr {
            operation: "GetAuthorizationToken",
            detail: "the token is not base64 of user:password".into(),
        })?;
        let expires = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
        Ok((creds, expires))
    }

    /// Whether the repository exists; creates it when `create` is set. Returns whether
    /// its tags are immutable.
    pub async fn ensure_repository(&self, name: &str, create: bool) -> Result<bool, PublishError> {
        let found = self
            .client
            .describe_repositories()
            .registry_id(&self.account)
            .repository_names(name)
            .send()
            .await;
        match found {
            Ok(out) => Ok(out.repositories().first().is_some_and(|r| {
                matches!(
                    r.image_tag_mutability(),
                    Some(aws_sdk_ecr::types::ImageTagMutability::Immutable)
                )
            })),
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_repository_not_found_exception());
                if !not_found {
                    return Err(PublishError::Ecr {
                        operation: "DescribeRepositories",
                        detail: crate::aws_config::classify(&e, "check AWS credentials and region")
                            .to_string(),
                    });
                }
                if !create {
                    return Err(PublishError::Ecr {
                        operation: "DescribeRepositories",
                        detail: format!("repository `{name}` does not exist; create it, or set image.create-repository: true in runner.yml"),
                    });
                }
                self.client
                    .create_repository()
                    .repository_name(name)
                    .image_tag_mutability(aws_sdk_ecr::types::ImageTagMutability::Mutable)
                    .send()
                    .await
                    .map_err(|e| PublishError::Ecr {
                        operation: "CreateRepository",
                        detail: crate::aws_config::classify(
                            &e,
                            "check the IAM permission ecr:CreateRepository",
                        )
                        .to_string(),
                    })?;
                Ok(false)
            }
        }
    }
}

impl CredentialSource for EcrCredentials {
    fn credentials(&self, refresh: bool) -> CredentialFuture<'_> {
        Box::pin(async move {
            let mut cached = self.cached.lock().await;
            if !refresh {
                if let Some((c, expires)) = &*cached {
                    if SystemTime::now() + EXPIRY_MARGIN < *expires {
                        return Ok(c.clone());
                    }
                }
            }
            let (c, expires) = self.fetch().await?;
            *cached = Some((c.clone(), expires));
            Ok(c)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn recognises_ecr_hosts() {
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            Some(("123456789012".into(), "us-east-1".into()))
        );
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").map(|x| x.1),
            Some("cn-north-1".into())
        );
        for h in [
            "ghcr.io",
            "127.0.0.1:5000",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
        ] {
            assert_eq!(parse_ecr_host(h), None, "{h}");
        }
    }
}
