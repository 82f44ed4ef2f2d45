//! Why secret references could not be resolved. Every message is built here from names
//! (variables, parameter names, secret ids, endpoints), never from a secret value or an
//! SDK error's Display of request/response data.

use crate::buildspec::model::Pos;
use crate::secrets::reference::SecretVersion;

/// The buildspec section a reference comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    ParameterStore,
    SecretsManager,
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Section::ParameterStore => "env.parameter-store",
            Section::SecretsManager => "env.secrets-manager",
        })
    }
}

/// One reason a reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{section}: {var}: invalid reference \"{reference}\" (line {}, column {}): {reason}", pos.line, pos.col)]
    InvalidReference {
        section: Section,
        var: String,
        reference: String,
        reason: String,
        pos: Pos,
    },
    #[error("env.parameter-store: {var}: parameter \"{name}\" not found")]
    MissingParameter { var: String, name: String },
    #[error("env.secrets-manager: {var}: secret \"{secret_id}\"{} not found", version_suffix(.version))]
    MissingSecret {
        var: String,
        secret_id: String,
        version: SecretVersion,
    },
    #[error("env.secrets-manager: {var}: secret \"{secret_id}\" has no JSON key \"{key}\"")]
    MissingJsonKey {
        var: String,
        secret_id: String,
        key: String,
    },
    #[error("env.secrets-manager: {var}: secret \"{secret_id}\" is not a JSON object, so JSON key \"{key}\" cannot be read from it")]
    NotJsonObject {
        var: String,
        secret_id: String,
        key: String,
    },
    #[error("env.secrets-manager: {var}: binary secret \"{secret_id}\" is not text; runner cannot inject it into an environment variable")]
    BinaryNotText { var: String, secret_id: String },
    #[error("{section}: {var}: access denied reading \"{reference}\" — check the IAM permissions (and KMS key policy) of the credentials runner uses")]
    AccessDenied {
        section: Section,
        var: String,
        reference: String,
    },
    #[error("cannot reach {service} at {endpoint}: {detail} — check AWS_ENDPOINT_URL / network")]
    Unreachable {
        service: &'static str,
        endpoint: String,
        detail: String,
    },
    /// The request could not be sent for a reason other than the network: no region,
    /// no credentials, a failing credential provider...
    #[error("cannot call {service} at {endpoint}: {detail}")]
    Setup {
        service: &'static str,
        endpoint: String,
        detail: String,
    },
    #[error("no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION) or `region` in your AWS profile")]
    NoRegion,
    #[error("{section}: {var}: cannot read \"{reference}\": {detail}")]
    Other {
        section: Section,
        var: String,
        reference: String,
        detail: String,
    },
}

fn version_suffix(v: &SecretVersion) -> String {
    if v.is_default() {
        String::new()
    } else {
        format!(" ({v})")
    }
}

/// Every problem found while resolving a buildspec's secret references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    pub problems: Vec<Problem>,
}

impl ResolveError {
    /// Collects `problems`, dropping exact duplicates (an unreachable endpoint is
    /// reported once, not once per reference) but keeping first-seen order.
    pub fn new(problems: impl IntoIterator<Item = Problem>) -> Self {
        let mut out: Vec<Problem> = Vec::new();
        for p in problems {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        ResolveError { problems: out }
    }
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "cannot resolve secrets ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ResolveError {}
