//! Parsing of `env.parameter-store` and `env.secrets-manager` references, exactly as
//! CodeBuild documents them, and extraction of the value a Secrets Manager reference
//! selects from a secret. Pure: no I/O, no AWS types.
//!
//! - `env.parameter-store: VAR: name` where name is `/path/name`, `name`, `name:version`
//!   (digits), `name:label`, a parameter ARN (optionally followed by `:version`/`:label`),
//!   or `/aws/reference/secretsmanager/<secret-id>` (passed to SSM verbatim).
//! - `env.secrets-manager: VAR: secret-id:json-key:version-stage:version-id` where
//!   secret-id is a name or a full ARN (an ARN has exactly 7 `:`-separated fields),
//!   empty json-key selects the whole secret, version-stage defaults to `AWSCURRENT`, and
//!   giving both version-stage and version-id is an error.
//!
//! Error messages name the variable and the reference, never a value.

use crate::buildspec::model::{Env, EnvVar, Pos};
use crate::secrets::error::{Problem, Section};

/// Parameter names beginning with this are Secrets Manager secrets read through SSM.
pub const SECRETS_MANAGER_VIA_SSM_PREFIX: &str = "/aws/reference/secretsmanager/";

/// The version stage used when a reference names neither a stage nor a version id.
pub const DEFAULT_VERSION_STAGE: &str = "AWSCURRENT";

/// Number of `:`-separated fields in an ARN (`arn:partition:service:region:account:type:id`
/// for Secrets Manager; SSM parameter ARNs have 6: `...:account:parameter/name`).
const SECRET_ARN_FIELDS: usize = 7;
const PARAMETER_ARN_FIELDS: usize = 6;

/// Every reference of a buildspec's `env`, in buildspec order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct References {
    pub parameters: Vec<ParameterRef>,
    pub secrets: Vec<SecretRef>,
}

impl References {
    pub fn is_empty(&self) -> bool {
        self.parameters.is_empty() && self.secrets.is_empty()
    }
}

/// `env.parameter-store: VAR: reference`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterRef {
    /// The environment variable to set.
    pub var: String,
    /// The reference as written in the buildspec.
    pub reference: String,
    /// Parameter name (or ARN) without the selector.
    pub name: String,
    pub selector: Option<Selector>,
    pub pos: Pos,
}

/// `name:version` or `name:label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Version(u64),
    Label(String),
}

impl ParameterRef {
    /// The string to pass in `GetParameters.Names` (SSM accepts `name:version` and
    /// `name:label` selectors natively).
    pub fn request_name(&self) -> String {
        match &self.selector {
            None => self.name.clone(),
            Some(Selector::Version(v)) => format!("{}:{v}", self.name),
            Some(Selector::Label(l)) => format!("{}:{l}", self.name),
        }
    }
}

/// `env.secrets-manager: VAR: secret-id:json-key:version-stage:version-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub var: String,
    /// The reference as written in the buildspec.
    pub reference: String,
    /// Secret name or full ARN.
    pub secret_id: String,
    /// `None`: the whole secret.
    pub json_key: Option<String>,
    pub version: SecretVersion,
    pub pos: Pos,
}

/// Which version of a secret a reference selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretVersion {
    Stage(String),
    Id(String),
}

impl SecretVersion {
    pub fn is_default(&self) -> bool {
        matches!(self, SecretVersion::Stage(s) if s == DEFAULT_VERSION_STAGE)
    }
}

impl Default for SecretVersion {
    fn default() -> Self {
        SecretVersion::Stage(DEFAULT_VERSION_STAGE.to_string())
    }
}

impl std::fmt::Display for SecretVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretVersion::Stage(s) => write!(f, "version-stage {s}"),
            SecretVersion::Id(id) => write!(f, "version-id {id}"),
        }
    }
}

/// Parse every reference of `env`; all invalid references are reported, not just the first.
pub fn parse_env(env: &Env) -> Result<References, Vec<Problem>> {
    let mut refs = References::default();
    let mut problems = Vec::new();
    for var in &env.parameter_store {
        match parse_parameter(var) {
            Ok(r) => refs.parameters.push(r),
            Err(p) => problems.push(p),
        }
    }
    for var in &env.secrets_manager {
        match parse_secret(var) {
            Ok(r) => refs.secrets.push(r),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(refs)
    } else {
        Err(problems)
    }
}

fn invalid(section: Section, var: &EnvVar, reason: impl Into<String>) -> Problem {
    Problem::InvalidReference {
        section,
        var: var.name.clone(),
        reference: var.value.clone(),
        reason: reason.into(),
        pos: var.pos,
    }
}

/// Parse one `env.parameter-store` entry.
pub fn parse_parameter(var: &EnvVar) -> Result<ParameterRef, Problem> {
    let bad = |reason: &str| invalid(Section::ParameterStore, var, reason);
    let reference = var.value.trim();
    if reference.is_empty() {
        return Err(bad("empty parameter name"));
    }
    if reference.chars().any(char::is_whitespace) {
        return Err(bad("parameter names cannot contain whitespace"));
    }
    let (name, selector) = if reference.starts_with(SECRETS_MANAGER_VIA_SSM_PREFIX) {
        // The rest is a secret id (possibly an ARN, with its colons): SSM takes it verbatim.
        if reference.len() == SECRETS_MANAGER_VIA_SSM_PREFIX.len() {
            return Err(bad(
                "missing secret id after /aws/reference/secretsmanager/",
            ));
        }
        (reference.to_string(), None)
    } else if reference.starts_with("arn:") {
        let fields: Vec<&str> = reference.split(':').collect();
        match fields.len() {
            PARAMETER_ARN_FIELDS => (reference.to_string(), None),
            n if n == PARAMETER_ARN_FIELDS + 1 => {
                let sel = fields[PARAMETER_ARN_FIELDS];
                (
                    fields[..PARAMETER_ARN_FIELDS].join(":"),
                    Some(parse_selector(sel).map_err(|r| bad(&r.to_string()))?),
                )
            }
            _ => {
                return Err(bad(
                    "a parameter ARN has 6 ':'-separated fields (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME), optionally followed by :VERSION or :LABEL",
                ))
            }
        }
    } else {
        match reference.split_once(':') {
            None => (reference.to_string(), None),
            Some((name, sel)) => {
                if sel.contains(':') {
                    return Err(bad(
                        "too many ':' (expected NAME, NAME:VERSION or NAME:LABEL)",
                    ));
                }
                if name.is_empty() {
                    return Err(bad("empty parameter name before ':'"));
                }
                (
                    name.to_string(),
                    Some(parse_selector(sel).map_err(|r| bad(&r.to_string()))?),
                )
            }
        }
    };
    Ok(ParameterRef {
        var: var.name.clone(),
        reference: reference.to_string(),
        name,
        selector,
        pos: var.pos,
    })
}

/// Why the part after a parameter name's `:` is neither a version nor a label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum SelectorError {
    #[error("empty version or label after ':' (write NAME:VERSION, NAME:LABEL, or NAME alone for the latest version)")]
    Empty,
    #[error("parameter version {0} is too large (a version is the number `aws ssm get-parameter-history` shows; a label cannot start with a digit)")]
    VersionTooLarge(String),
}

fn parse_selector(sel: &str) -> Result<Selector, SelectorError> {
    if sel.is_empty() {
        return Err(SelectorError::Empty);
    }
    if sel.bytes().all(|b| b.is_ascii_digit()) {
        // SSM labels cannot start with a digit, so all-digits is always a version.
        return sel
            .parse::<u64>()
            .map(Selector::Version)
            .map_err(|_| SelectorError::VersionTooLarge(sel.to_string()));
    }
    Ok(Selector::Label(sel.to_string()))
}

/// Parse one `env.secrets-manager` entry.
pub fn parse_secret(var: &EnvVar) -> Result<SecretRef, Problem> {
    let bad = |reason: &str| invalid(Section::SecretsManager, var, reason);
    let reference = var.value.trim();
    if reference.is_empty() {
        return Err(bad(
            "empty reference (expected secret-id:json-key:version-stage:version-id)",
        ));
    }
    let fields: Vec<&str> = reference.split(':').collect();
    let (secret_id, rest) = if reference.starts_with("arn:") {
        if fields.len() < SECRET_ARN_FIELDS {
            return Err(bad(
                "incomplete secret ARN (expected arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME)",
            ));
        }
        if fields[2] != "secretsmanager" || fields[5] != "secret" {
            return Err(bad(
                "not a Secrets Manager secret ARN (expected arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME)",
            ));
        }
        (
            fields[..SECRET_ARN_FIELDS].join(":"),
            &fields[SECRET_ARN_FIELDS..],
        )
    } else {
        (fields[0].to_string(), &fields[1..])
    };
    if rest.len() > 3 {
        return Err(bad(
            "too many ':'-separated fields (expected secret-id:json-key:version-stage:version-id)",
        ));
    }
    if secret_id.is_empty() || secret_id.ends_with(":secret:") {
        return Err(bad("empty secret id"));
    }
    let field = |i: usize| rest.get(i).copied().filter(|s| !s.is_empty());
    let json_key = field(0).map(str::to_string);
    let version = match (field(1), field(2)) {
        (Some(_), Some(_)) => return Err(bad("use version-stage or version-id, not both")),
        (Some(stage), None) => SecretVersion::Stage(stage.to_string()),
        (None, Some(id)) => SecretVersion::Id(id.to_string()),
        (None, None) => SecretVersion::default(),
    };
    Ok(SecretRef {
        var: var.name.clone(),
        reference: reference.to_string(),
        secret_id,
        json_key,
        version,
        pos: var.pos,
    })
}

/// A secret's value as the store returned it.
pub enum SecretPayload {
    Text(String),
    Binary(Vec<u8>),
}

/// The value `r` selects from `payload`: the whole secret, or the value of its JSON key
/// (a string as-is, any other JSON value as its JSON text).
pub fn select_value(r: &SecretRef, payload: SecretPayload) -> Result<String, Problem> {
    let text = match payload {
        SecretPayload::Text(s) => s,
        SecretPayload::Binary(bytes) => match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => {
                return Err(Problem::BinaryNotText {
                    var: r.var.clone(),
                    secret_id: r.secret_id.clone(),
                })
            }
        },
    };
    let Some(key) = &r.json_key else {
        return Ok(text);
    };
    // Never surface serde_json's messages: they can quote the secret's content.
    let object = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            return Err(Problem::NotJsonObject {
                var: r.var.clone(),
                secret_id: r.secret_id.clone(),
                key: key.clone(),
            })
        }
    };
    match object.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(Problem::MissingJsonKey {
            var: r.var.clone(),
            secret_id: r.secret_id.clone(),
            key: key.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.into(),
            pos: Pos { line: 7, col: 9 },
        }
    }

    fn param(value: &str) -> ParameterRef {
        parse_parameter(&var("V", value)).unwrap()
    }

    fn param_err(value: &str) -> String {
        parse_parameter(&var("V", value)).unwrap_err().to_string()
    }

    fn secret(value: &str) -> SecretRef {
        parse_secret(&var("V", value)).unwrap()
    }

    fn secret_err(value: &str) -> String {
        parse_secret(&var("V", value)).unwrap_err().to_string()
    }

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";

    #[test]
    fn parameter_plain_and_path() {
        let p = param("/app/db/password");
        assert_eq!(p.name, "/app/db/password");
        assert_eq!(p.selector, None);
        assert_eq!(p.request_name(), "/app/db/password");
        assert_eq!(param("plain").request_name(), "plain");
    }

    #[test]
    fn parameter_version_and_label() {
        let p = param("/app/key:3");
        assert_eq!(p.name, "/app/key");
        assert_eq!(p.selector, Some(Selector::Version(3)));
        assert_eq!(p.request_name(), "/app/key:3");
        let p = param("/app/key:prod");
        assert_eq!(p.selector, Some(Selector::Label("prod".into())));
        assert_eq!(p.request_name(), "/app/key:prod");
    }

    #[test]
    fn parameter_secrets_manager_reference_is_verbatim() {
        let p = param("/aws/reference/secretsmanager/prod/db");
        assert_eq!(p.name, "/aws/reference/secretsmanager/prod/db");
        assert_eq!(p.selector, None);
        let with_arn = format!("/aws/reference/secretsmanager/{ARN}");
        assert_eq!(param(&with_arn).request_name(), with_arn);
        assert!(param_err("/aws/reference/secretsmanager/").contains("missing secret id"));
    }

    #[test]
    fn parameter_arn() {
        let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/app/key";
        let p = param(arn);
        assert_eq!((p.name.as_str(), p.selector.clone()), (arn, None));
        let p = param(&format!("{arn}:4"));
        assert_eq!(p.name, arn);
        assert_eq!(p.selector, Some(Selector::Version(4)));
        assert!(param_err("arn:aws:ssm:us-east-1").contains("6 ':'-separated fields"));
    }

    #[test]
    fn parameter_errors_name_var_and_reference() {
        let e = param_err("/a:b:c");
        assert!(e.contains("env.parameter-store"), "{e}");
        assert!(e.contains("V"), "{e}");
        assert!(e.contains("\"/a:b:c\""), "{e}");
        assert!(e.contains("line 7"), "{e}");
        assert!(param_err("").contains("empty parameter name"));
        assert!(param_err("/a:").contains("empty version or label"));
        assert!(param_err(":3").contains("empty parameter name"));
        assert!(param_err("/a b").contains("whitespace"));
        assert!(param_err("/a:99999999999999999999999").contains("too large"));
    }

    #[test]
    fn selectors_are_versions_labels_or_typed_errors() {
        assert_eq!(parse_selector(""), Err(SelectorError::Empty));
        assert_eq!(
            parse_selector("99999999999999999999999"),
            Err(SelectorError::VersionTooLarge(
                "99999999999999999999999".into()
            ))
        );
        assert!(matches!(parse_selector("7"), Ok(Selector::Version(7))));
        assert!(matches!(parse_selector("prod"), Ok(Selector::Label(l)) if l == "prod"));
        assert!(param_err("/a:").contains("NAME:LABEL"));
    }

    #[test]
    fn secret_name_only() {
        let s = secret("prod/db");
        assert_eq!(s.secret_id, "prod/db");
        assert_eq!(s.json_key, None);
        assert_eq!(s.version, SecretVersion::Stage("AWSCURRENT".into()));
        assert!(s.version.is_default());
    }

    #[test]
    fn secret_all_fields() {
        let s = secret("prod/db:password");
        assert_eq!(s.json_key.as_deref(), Some("password"));
        assert!(s.version.is_default());

        let s = secret("prod/db:password:AWSPREVIOUS");
        assert_eq!(s.version, SecretVersion::Stage("AWSPREVIOUS".into()));

        let s = secret("prod/db:password::0123-abcd");
        assert_eq!(s.version, SecretVersion::Id("0123-abcd".into()));

        let s = secret("prod/db::AWSPREVIOUS");
        assert_eq!(s.json_key, None);
        assert_eq!(s.version, SecretVersion::Stage("AWSPREVIOUS".into()));

        let s = secret("prod/db:::");
        assert_eq!(s.json_key, None);
        assert!(s.version.is_default());
    }

    #[test]
    fn secret_arn_keeps_its_colons() {
        let s = secret(ARN);
        assert_eq!(s.secret_id, ARN);
        assert_eq!(s.json_key, None);

        let s = secret(&format!("{ARN}:password"));
        assert_eq!(s.secret_id, ARN);
        assert_eq!(s.json_key.as_deref(), Some("password"));

        let s = secret(&format!("{ARN}:password:AWSPENDING"));
        assert_eq!(s.version, SecretVersion::Stage("AWSPENDING".into()));

        let s = secret(&format!("{ARN}:::v-1"));
        assert_eq!(s.secret_id, ARN);
        assert_eq!(s.json_key, None);
        assert_eq!(s.version, SecretVersion::Id("v-1".into()));
    }

    #[test]
    fn secret_errors() {
        let e = secret_err("prod/db:k:AWSCURRENT:some-id");
        assert!(
            e.contains("use version-stage or version-id, not both"),
            "{e}"
        );
        assert!(e.contains("env.secrets-manager"), "{e}");
        assert!(e.contains("V"), "{e}");
        assert!(e.contains("prod/db:k:AWSCURRENT:some-id"), "{e}");
        assert!(secret_err(&format!("{ARN}:k:AWSCURRENT:id")).contains("not both"));
        assert!(secret_err("prod/db:a:b:c:d").contains("too many"));
        assert!(secret_err(&format!("{ARN}:a:b:c:d")).contains("too many"));
        assert!(secret_err("arn:aws:secretsmanager:us-east-1:1:secret").contains("incomplete"));
        assert!(secret_err("arn:aws:ssm:us-east-1:1:parameter:x").contains("not a Secrets Manager"));
        assert!(secret_err("").contains("empty reference"));
        assert!(secret_err(":key").contains("empty secret id"));
        assert!(
            secret_err("arn:aws:secretsmanager:us-east-1:1:secret:").contains("empty secret id")
        );
    }

    #[test]
    fn parse_env_collects_every_problem_in_order() {
        let env = Env {
            parameter_store: vec![var("A", "/ok"), var("B", "/a:b:c")],
            secrets_manager: vec![var("C", "x:k:s:i"), var("D", "prod/db:k")],
            ..Env::default()
        };
        let problems = parse_env(&env).unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].to_string().contains("B"));
        assert!(problems[1].to_string().contains("C"));

        let env = Env {
            parameter_store: vec![var("A", "/ok"), var("B", "/x:2")],
            secrets_manager: vec![var("D", "prod/db:k")],
            ..Env::default()
        };
        let refs = parse_env(&env).unwrap();
        let vars: Vec<_> = refs.parameters.iter().map(|p| p.var.as_str()).collect();
        assert_eq!(vars, ["A", "B"]);
        assert_eq!(refs.secrets[0].var, "D");
    }

    #[test]
    fn select_value_whole_and_keys() {
        let whole = secret("s");
        let json =
            r#"{"user":"admin","password":"p:w","port":5432,"opts":{"a":[1,true]},"n":null}"#;
        let pick = |r: &SecretRef| select_value(r, SecretPayload::Text(json.into()));
        assert_eq!(pick(&whole).unwrap(), json);
        assert_eq!(pick(&secret("s:password")).unwrap(), "p:w");
        assert_eq!(pick(&secret("s:port")).unwrap(), "5432");
        assert_eq!(pick(&secret("s:opts")).unwrap(), r#"{"a":[1,true]}"#);
        assert_eq!(pick(&secret("s:n")).unwrap(), "null");
        let e = pick(&secret("s:nope")).unwrap_err().to_string();
        assert!(
            e.contains("V") && e.contains("\"s\"") && e.contains("nope"),
            "{e}"
        );
        assert!(!e.contains("admin"), "{e}");
    }

    #[test]
    fn select_value_not_json_never_echoes_value() {
        let e = select_value(
            &secret("s:k"),
            SecretPayload::Text("hunter2-not-json".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a JSON object"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = select_value(&secret("s:k"), SecretPayload::Text(r#""hunter2""#.into()))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn select_value_binary() {
        let r = secret("bin");
        assert_eq!(
            select_value(&r, SecretPayload::Binary(b"text".to_vec())).unwrap(),
            "text"
        );
        let e = select_value(&r, SecretPayload::Binary(vec![0xff, 0xfe, 0x00]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("binary secret \"bin\" is not text; runner cannot inject it into an environment variable"),
            "{e}"
        );
        let r = secret("bin:k");
        assert_eq!(
            select_value(&r, SecretPayload::Binary(br#"{"k":"v"}"#.to_vec())).unwrap(),
            "v"
        );
    }
}
