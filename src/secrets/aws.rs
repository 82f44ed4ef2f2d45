//! Resolution of `env.parameter-store` / `env.secrets-manager` through the AWS SDK.
//!
//! Configuration is the SDK's standard chain (`aws_config::defaults`): credentials from
//! env, profile (incl. SSO and `credential_process`), web identity, ECS/IMDS; region from
//! env/profile/IMDS; endpoints from `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SSM`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` or the profile's `endpoint_url` / `services`
//! section (the SDK applies those itself). [`AwsSettings`] overrides any of them
//! explicitly (tests use it instead of process-global env vars).
//!
//! Retries: standard mode, exponential backoff with jitter, 5 attempts by default, short
//! base delay so an unreachable endpoint fails within a few seconds.

use std::collections::{HashMap, HashSet};

use aws_config::SdkConfig;
use futures_util::stream::{self, StreamExt};

use crate::buildspec::model::Env;
use crate::secrets::error::{Problem, ResolveError, Section};
use crate::secrets::reference::{
    parse_env, select_value, ParameterRef, References, SecretPayload, SecretRef, SecretVersion,
    SECRETS_MANAGER_VIA_SSM_PREFIX,
};
use crate::secrets::secret::Secret;

use crate::aws_config::{classify as classify_with_hint, effective_endpoint, Failure};
pub use crate::aws_config::{AwsSettings, Credentials};

/// Appended to setup failures that mention credentials.
const CREDENTIALS_HINT: &str = "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, run `aws sso login`, or use --secrets-file";

/// `GetParameters` accepts at most 10 names per call.
const SSM_BATCH: usize = 10;
/// Requests in flight at once per service.
const CONCURRENCY: usize = 4;

const SSM: &str = "Parameter Store";
const SECRETS_MANAGER: &str = "Secrets Manager";

/// Clients for SSM and Secrets Manager, plus the endpoints they talk to (for messages).
#[derive(Debug, Clone)]
pub struct AwsSecrets {
    ssm: aws_sdk_ssm::Client,
    secrets: aws_sdk_secretsmanager::Client,
    ssm_endpoint: String,
    secrets_endpoint: String,
    has_region: bool,
}

/// Resolve the buildspec's `env.parameter-store` and `env.secrets-manager` with the
/// standard AWS configuration. Output order: parameter-store variables, then
/// secrets-manager variables, each in buildspec order. Does not touch AWS (nor load
/// any configuration) when the buildspec has no such references.
pub async fn resolve_aws(env: &Env) -> Result<Vec<(String, Secret)>, ResolveError> {
    if env.parameter_store.is_empty() && env.secrets_manager.is_empty() {
        return Ok(Vec::new());
    }
    let refs = parse_env(env).map_err(ResolveError::new)?;
    AwsSecrets::from_env().await.resolve_refs(&refs).await
}

impl AwsSecrets {
    /// The SDK's standard configuration chain, no overrides.
    pub async fn from_env() -> Self {
        Self::load(AwsSettings::default()).await
    }

    /// The SDK's standard configuration chain with `settings` applied on top.
    pub async fn load(settings: AwsSettings) -> Self {
        Self::from_sdk_config(&crate::aws_config::load_sdk_config(&settings).await)
    }

    /// Clients from an already loaded configuration (its retry/timeout settings are used
    /// as they are).
    pub fn from_sdk_config(config: &SdkConfig) -> Self {
        AwsSecrets {
            ssm: aws_sdk_ssm::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            ssm_endpoint: effective_endpoint(config, "SSM", "ssm"),
            secrets_endpoint: effective_endpoint(config, "Secrets Manager", "secretsmanager"),
            has_region: config.region().is_some(),
        }
    }

    /// The endpoints requests go to: (Parameter Store, Secrets Manager).
    pub fn endpoints(&self) -> (&str, &str) {
        (&self.ssm_endpoint, &self.secrets_endpoint)
    }

    /// Resolve every reference of `env` (see [`resolve_aws`] for the order). All problems
    /// are collected; none of them contains a secret value.
    pub async fn resolve(&self, env: &Env) -> Result<Vec<(String, Secret)>, ResolveError> {
        let refs = parse_env(env).map_err(ResolveError::new)?;
        self.resolve_refs(&refs).await
    }

    /// Resolve already parsed references.
    pub async fn resolve_refs(
        &self,
        refs: &References,
    ) -> Result<Vec<(String, Secret)>, ResolveError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        if !self.has_region {
            return Err(ResolveError::new([Problem::NoRegion]));
        }
        let (params, secrets) = tokio::join!(
            self.resolve_parameters(&refs.parameters),
            self.resolve_secrets(&refs.secrets)
        );
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for r in params.into_iter().chain(secrets) {
            match r {
                Ok(pair) => out.push(pair),
                Err(p) => problems.push(p),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ResolveError::new(problems))
        }
    }

    fn endpoint_of(&self, service: &'static str) -> &str {
        if service == SSM {
            &self.ssm_endpoint
        } else {
            &self.secrets_endpoint
        }
    }

    /// One result per reference, in order.
    async fn resolve_parameters(
        &self,
        refs: &[ParameterRef],
    ) -> Vec<Result<(String, Secret), Problem>> {
        // The futures are collected before they are streamed: a stream that holds the
        // mapping closure (over `Vec<&ParameterRef>`) makes this future !Send (rustc's
        // higher-ranked lifetime limitation, rust-lang/rust#102211), and with it
        // `pipeline::prepare`'s, which `runner agent` spawns on worker threads.
        let batches: Vec<_> = plan_batches(refs)
            .into_iter()
            .map(|b| self.fetch_batch(b))
            .collect();
        let results = stream::iter(batches)
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let fetched: HashMap<String, Fetched> = results.into_iter().flatten().collect();
        refs.iter()
            .map(|r| {
                let name = r.request_name();
                match fetched.get(&name) {
                    Some(Fetched::Value(v)) => Ok((r.var.clone(), Secret::new(v.clone()))),
                    Some(Fetched::Failed(f)) => {
                        Err(self.problem(f, SSM, Section::ParameterStore, &r.var, &r.reference))
                    }
                    Some(Fetched::Missing) | None => Err(Problem::MissingParameter {
                        var: r.var.clone(),
                        name,
                    }),
                }
            })
            .collect()
    }

    /// One `GetParameters` call; if SSM rejects the whole batch because one name does
    /// not exist (it does that for `/aws/reference/secretsmanager/...` names), each name
    /// is asked for on its own so the others still resolve.
    async fn fetch_batch(&self, batch: Vec<&ParameterRef>) -> Vec<(String, Fetched)> {
        let names: Vec<String> = batch.iter().map(|r| r.request_name()).collect();
        match self.get_parameters(names.clone()).await {
            Ok(params) => match_batch(&batch, &params),
            Err(f) if batch.len() > 1 && is_not_found(&f) => {
                let mut out = Vec::new();
                for r in batch {
                    out.extend(match self.get_parameters(vec![r.request_name()]).await {
                        Ok(params) => match_batch(&[r], &params),
                        Err(f) if is_not_found(&f) => vec![(r.request_name(), Fetched::Missing)],
                        Err(f) => vec![(r.request_name(), Fetched::Failed(f))],
                    });
                }
                out
            }
            Err(f) if is_not_found(&f) => {
                names.into_iter().map(|n| (n, Fetched::Missing)).collect()
            }
            Err(f) => names
                .into_iter()
                .map(|n| (n, Fetched::Failed(f.clone())))
                .collect(),
        }
    }

    /// `GetParameters` with decryption; the parameters found (names in
    /// `InvalidParameters` are simply absent).
    async fn get_parameters(
        &self,
        names: Vec<String>,
    ) -> Result<Vec<aws_sdk_ssm::types::Parameter>, Failure> {
        self.ssm
            .get_parameters()
            .set_names(Some(names))
            .with_decryption(true)
            .send()
            .await
            .map(|out| out.parameters.unwrap_or_default())
            .map_err(|e| classify(&e))
    }

    /// One result per reference, in order; one `GetSecretValue` per distinct
    /// (secret id, version).
    async fn resolve_secrets(&self, refs: &[SecretRef]) -> Vec<Result<(String, Secret), Problem>> {
        let mut keys: Vec<(String, SecretVersion)> = Vec::new();
        for r in refs {
            let k = (r.secret_id.clone(), r.version.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        // Collected first, for the same reason as in `resolve_parameters`.
        let gets: Vec<_> = keys
            .into_iter()
            .map(|(id, version)| async move {
                let req = self.secrets.get_secret_value().secret_id(&id);
                let req = match &version {
                    SecretVersion::Stage(s) => req.version_stage(s),
                    SecretVersion::Id(v) => req.version_id(v),
                };
                let res = req.send().await;
                ((id, version), res)
            })
            .collect();
        let fetched = stream::iter(gets)
            .buffered(CONCURRENCY)
            .collect::<HashMap<_, _>>()
            .await;

        refs.iter()
            .map(|r| {
                let key = (r.secret_id.clone(), r.version.clone());
                let res = fetched.get(&key).ok_or_else(|| Problem::Other {
                    section: Section::SecretsManager,
                    var: r.var.clone(),
                    reference: r.reference.clone(),
                    detail: "internal error: secret was not fetched".to_string(),
                })?;
                match res {
                    Ok(out) => {
                        let payload = if let Some(s) = out.secret_string() {
                            SecretPayload::Text(s.to_string())
                        } else if let Some(b) = out.secret_binary() {
                            SecretPayload::Binary(b.as_ref().to_vec())
                        } else {
                            return Err(Problem::Other {
                                section: Section::SecretsManager,
                                var: r.var.clone(),
                                reference: r.reference.clone(),
                                detail:
                                    "the secret version has neither SecretString nor SecretBinary"
                                        .to_string(),
                            });
                        };
                        select_value(r, payload).map(|v| (r.var.clone(), Secret::new(v)))
                    }
                    Err(e) => Err(match classify(e) {
                        Failure::Service {
                            code: Some(code), ..
                        } if code == "ResourceNotFoundException" => Problem::MissingSecret {
                            var: r.var.clone(),
                            secret_id: r.secret_id.clone(),
                            version: r.version.clone(),
                        },
                        f => self.problem(
                            &f,
                            SECRETS_MANAGER,
                            Section::SecretsManager,
                            &r.var,
                            &r.reference,
                        ),
                    }),
                }
            })
            .collect()
    }

    fn problem(
        &self,
        f: &Failure,
        service: &'static str,
        section: Section,
        var: &str,
        reference: &str,
    ) -> Problem {
        let endpoint = self.endpoint_of(service).to_string();
        match f {
            Failure::Unreachable(detail) => Problem::Unreachable {
                service,
                endpoint,
                detail: detail.clone(),
            },
            Failure::Setup(detail) => Problem::Setup {
                service,
                endpoint,
                detail: detail.clone(),
            },
            Failure::Service {
                code: Some(code),
                message,
                ..
            } if is_credentials_rejected(code) => Problem::Setup {
                service,
                endpoint,
                detail: format!(
                    "the credentials were rejected ({code}{}) — check AWS_PROFILE / AWS_ACCESS_KEY_ID or run `aws sso login`",
                    message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                ),
            },
            Failure::Service { code, status, .. }
                if code.as_deref().map_or(*status == 403, is_access_denied) =>
            {
                Problem::AccessDenied {
                    section,
                    var: var.to_string(),
                    reference: reference.to_string(),
                }
            }
            // Error codes and messages of these read-only calls only ever echo names.
            Failure::Service {
                code,
                message,
                status,
            } => Problem::Other {
                section,
                var: var.to_string(),
                reference: reference.to_string(),
                detail: match (code, message) {
                    (Some(c), Some(m)) => format!("{service} returned {c}: {m}"),
                    (Some(c), None) => format!("{service} returned {c}"),
                    (None, _) => format!("{service} returned HTTP {status}"),
                },
            },
            // moto answers IAM denials of JSON-protocol services with an XML body the
            // SDK cannot parse; a 403 is an authorization failure either way.
            Failure::Response(403) => Problem::AccessDenied {
                section,
                var: var.to_string(),
                reference: reference.to_string(),
            },
            Failure::Response(status) => Problem::Other {
                section,
                var: var.to_string(),
                reference: reference.to_string(),
                detail: format!("unexpected response (HTTP {status}) from {service} at {endpoint}"),
            },
        }
    }
}

/// Codes AWS uses for unknown, expired or badly signed credentials.
fn is_credentials_rejected(code: &str) -> bool {
    matches!(
        code,
        "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "ExpiredToken"
            | "ExpiredTokenException"
    )
}

fn is_access_denied(code: &str) -> bool {
    matches!(
        code,
        "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation"
    )
}

fn classify<E>(err: &aws_sdk_ssm::error::SdkError<E>) -> Failure
where
    E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    classify_with_hint(err, CREDENTIALS_HINT)
}

/// What one parameter request produced.
#[derive(Debug)]
enum Fetched {
    Value(String),
    Missing,
    Failed(Failure),
}

fn is_not_found(f: &Failure) -> bool {
    matches!(f, Failure::Service { code: Some(code), .. }
        if code == "ParameterNotFound" || code == "ParameterVersionNotFound")
}

/// Group the distinct request names into `GetParameters` batches of at most 10 in which
/// no base name appears twice (SSM's answer for `name:3` carries the name without the
/// selector, so two selectors of one name in a batch could not be told apart), and with
/// every `/aws/reference/secretsmanager/...` name alone (SSM may return it under the
/// secret's name and fails the whole call if it does not exist).
fn plan_batches(refs: &[ParameterRef]) -> Vec<Vec<&ParameterRef>> {
    let mut seen = HashSet::new();
    let mut batches: Vec<Vec<&ParameterRef>> = Vec::new();
    for r in refs {
        if !seen.insert(r.request_name()) {
            continue;
        }
        if r.name.starts_with(SECRETS_MANAGER_VIA_SSM_PREFIX) {
            batches.push(vec![r]);
            continue;
        }
        let fits = |b: &Vec<&ParameterRef>| {
            b.len() < SSM_BATCH
                && !b[0].name.starts_with(SECRETS_MANAGER_VIA_SSM_PREFIX)
                && b.iter().all(|o| o.name != r.name)
        };
        match batches.iter_mut().find(|b| fits(b)) {
            Some(b) => b.push(r),
            None => batches.push(vec![r]),
        }
    }
    batches
}

/// Pair each request of a batch with the parameter SSM returned for it: by name (or ARN)
/// since names are unique within a batch, or — for a batch of one — whatever single
/// parameter came back.
fn match_batch(
    batch: &[&ParameterRef],
    params: &[aws_sdk_ssm::types::Parameter],
) -> Vec<(String, Fetched)> {
    batch
        .iter()
        .map(|r| {
            let found = params
                .iter()
                .find(|p| {
                    let name = p.name.as_deref();
                    name == Some(r.name.as_str())
                        || name == Some(r.request_name().as_str())
                        || p.arn.as_deref() == Some(r.name.as_str())
                })
                .or(match (batch.len(), params) {
                    (1, [only]) => Some(only),
                    _ => None,
                });
            let fetched = match found.and_then(|p| p.value.clone()) {
                Some(v) => Fetched::Value(v),
                None => Fetched::Missing,
            };
            (r.request_name(), fetched)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::buildspec::model::{EnvVar, Pos};
    use crate::secrets::reference::parse_parameter;

    fn refs(values: &[&str]) -> Vec<ParameterRef> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                parse_parameter(&EnvVar {
                    name: format!("V{i}"),
                    value: v.to_string(),
                    pos: Pos::default(),
                })
                .unwrap()
            })
            .collect()
    }

    fn names(batches: &[Vec<&ParameterRef>]) -> Vec<Vec<String>> {
        batches
            .iter()
            .map(|b| b.iter().map(|r| r.request_name()).collect())
            .collect()
    }

    #[test]
    fn batches_hold_ten_distinct_names() {
        let values: Vec<String> = (0..23).map(|i| format!("/p/{i}")).collect();
        let mut all: Vec<&str> = values.iter().map(String::as_str).collect();
        all.push("/p/0"); // duplicate request: asked once
        let r = refs(&all);
        let b = plan_batches(&r);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 3]);
    }

    #[test]
    fn selectors_of_one_name_go_to_different_batches() {
        let r = refs(&[
            "/a",
            "/a:1",
            "/a:old",
            "/b",
            "/aws/reference/secretsmanager/s",
            "/c",
        ]);
        assert_eq!(
            names(&plan_batches(&r)),
            [
                vec!["/a", "/b", "/c"],
                vec!["/a:1"],
                vec!["/a:old"],
                vec!["/aws/reference/secretsmanager/s"],
            ]
        );
    }

    #[test]
    fn match_batch_by_name_or_single() {
        use aws_sdk_ssm::types::Parameter;
        let r = refs(&["/a:2", "/b"]);
        let batch: Vec<&ParameterRef> = r.iter().collect();
        let params = [Parameter::builder()
            .name("/a")
            .selector(":2")
            .value("x")
            .build()];
        let got = match_batch(&batch, &params);
        assert!(matches!(&got[0], (n, Fetched::Value(v)) if n == "/a:2" && v == "x"));
        assert!(matches!(&got[1], (n, Fetched::Missing) if n == "/b"));

        let r = refs(&["/aws/reference/secretsmanager/s"]);
        let params = [Parameter::builder().name("s").value("y").build()];
        let got = match_batch(&[&r[0]], &params);
        assert!(matches!(&got[0], (_, Fetched::Value(v)) if v == "y"));
    }
}
