//! `--secrets-file FILE`: parameter and secret values from a local JSON file, for
//! developers without AWS access. References are parsed with the same rules as for AWS
//! and missing entries produce the same [`ResolveError`].
//!
//! ```json
//! {
//!   "parameters": {
//!     "/app/db/password": "s3cret",
//!     "/app/key:3": "version 3 of /app/key",
//!     "/app/key:prod": "the version labelled prod"
//!   },
//!   "secrets": {
//!     "prod/db": "{\"username\":\"admin\",\"password\":\"pw\"}",
//!     "prod/api": {"token": "abc", "port": 8443},
//!     "prod/db:AWSPREVIOUS": "{\"password\":\"old\"}",
//!     "prod/db:3f1c0e2a-version-id": "{\"password\":\"pinned\"}",
//!     "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf": "..."
//!   }
//! }
//! ```
//!
//! Lookup rules:
//! - `parameters` keys are matched exactly against the name SSM would be asked for:
//!   `/app/key:3` only matches a reference `/app/key:3`, never `/app/key`. A
//!   `/aws/reference/secretsmanager/<id>` reference not listed under `parameters` falls
//!   back to `secrets["<id>"]`.
//! - `secrets` keys are `<secret-id>` (the current version) or
//!   `<secret-id>:<version-stage-or-version-id>`. A reference with no stage/id (or with
//!   `AWSCURRENT`) uses `<secret-id>:AWSCURRENT` or `<secret-id>`; any other stage or a
//!   version id needs its own `<secret-id>:<stage-or-id>` entry. A name and an ARN of the
//!   same secret are different keys.
//! - A value is a JSON string (used as-is) or any other JSON value except `null` (used
//!   as its JSON text, so a secret can be written as an object instead of an escaped
//!   string). JSON keys are then extracted exactly as from Secrets Manager.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::buildspec::model::Env;
use crate::secrets::error::{Problem, ResolveError};
use crate::secrets::reference::{
    parse_env, select_value, References, SecretPayload, SecretVersion,
    SECRETS_MANAGER_VIA_SSM_PREFIX,
};
use crate::secrets::secret::Secret;

/// Why a secrets file could not be loaded. Never quotes a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum LocalFileError {
    #[error("cannot read secrets file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secrets file {} is not valid JSON (line {line}, column {column})", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("secrets file {}: {detail}", path.display())]
    Shape { path: PathBuf, detail: String },
}

/// The contents of a `--secrets-file`.
pub struct LocalSecrets {
    parameters: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for LocalSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSecrets")
            .field("parameters", &self.parameters.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalSecrets {
    pub fn load(path: &Path) -> Result<Self, LocalFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| LocalFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parse the file's text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, LocalFileError> {
        let shape = |detail: String| LocalFileError::Shape {
            path: path.to_path_buf(),
            detail,
        };
        // serde_json's messages for syntax errors carry only a position; type errors could
        // quote values, so the shape is checked by hand below.
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| LocalFileError::Syntax {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
            })?;
        let serde_json::Value::Object(root) = root else {
            return Err(shape(
                "the top level must be an object with \"parameters\" and/or \"secrets\"".into(),
            ));
        };
        let mut parameters = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for (section, value) in root {
            let target = match section.as_str() {
                "parameters" => &mut parameters,
                "secrets" => &mut secrets,
                other => {
                    return Err(shape(format!(
                        "unknown key \"{other}\" (expected \"parameters\" and/or \"secrets\")"
                    )))
                }
            };
            let serde_json::Value::Object(entries) = value else {
                return Err(shape(format!(
                    "\"{section}\" must be an object of name → value"
                )));
            };
            for (key, value) in entries {
                let text = match value {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => {
                        return Err(shape(format!("{section}: \"{key}\" is null")));
                    }
                    other => other.to_string(),
                };
                target.insert(key, text);
            }
        }
        Ok(LocalSecrets {
            parameters,
            secrets,
        })
    }

    /// Same contract as `AwsSecrets::resolve`: parameter-store variables then
    /// secrets-manager variables, in buildspec order; every problem is collected.
    pub fn resolve(&self, env: &Env) -> Result<Vec<(String, Secret)>, ResolveError> {
        let refs = parse_env(env).map_err(ResolveError::new)?;
        self.resolve_refs(&refs)
    }

    pub fn resolve_refs(&self, refs: &References) -> Result<Vec<(String, Secret)>, ResolveError> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for r in &refs.parameters {
            let name = r.request_name();
            let value = self.parameters.get(&name).or_else(|| {
                name.strip_prefix(SECRETS_MANAGER_VIA_SSM_PREFIX)
                    .and_then(|id| self.secrets.get(id))
            });
            match value {
                Some(v) => out.push((r.var.clone(), Secret::new(v.clone()))),
                None => problems.push(Problem::MissingParameter {
                    var: r.var.clone(),
                    name,
                }),
            }
        }
        for r in &refs.secrets {
            let value = match &r.version {
                v if v.is_default() => self
                    .secrets
                    .get(&format!(
                        "{}:{}",
                        r.secret_id,
                        crate::secrets::reference::DEFAULT_VERSION_STAGE
                    ))
                    .or_else(|| self.secrets.get(&r.secret_id)),
                SecretVersion::Stage(s) | SecretVersion::Id(s) => {
                    self.secrets.get(&format!("{}:{s}", r.secret_id))
                }
            };
            let Some(value) = value else {
                problems.push(Problem::MissingSecret {
                    var: r.var.clone(),
                    secret_id: r.secret_id.clone(),
                    version: r.version.clone(),
                });
                continue;
            };
            match select_value(r, SecretPayload::Text(value.clone())) {
                Ok(v) => out.push((r.var.clone(), Secret::new(v))),
                Err(p) => problems.push(p),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ResolveError::new(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::buildspec::model::{EnvVar, Pos};

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.into(),
            pos: Pos { line: 1, col: 1 },
        }
    }

    fn file() -> LocalSecrets {
        let text = serde_json::json!({
            "parameters": {
                "/app/db/password": "p-plain",
                "/app/key:3": "p-v3",
                "/app/key:prod": "p-prod",
                "/aws/reference/secretsmanager/direct": "p-direct",
            },
            "secrets": {
                "prod/db": "{\"username\":\"admin\",\"password\":\"s-current\"}",
                "prod/db:AWSPREVIOUS": "{\"password\":\"s-previous\"}",
                "prod/db:v-123": "{\"password\":\"s-pinned\"}",
                "prod/api": {"token": "s-token", "port": 8443},
                "raw": "s-raw",
                ARN: "s-by-arn",
                "with-current:AWSCURRENT": "s-explicit-current",
            }
        })
        .to_string();
        LocalSecrets::from_json(&text, Path::new("secrets.json")).unwrap()
    }

    fn resolve(
        params: &[(&str, &str)],
        secrets: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, ResolveError> {
        let env = Env {
            parameter_store: params.iter().map(|(n, v)| var(n, v)).collect(),
            secrets_manager: secrets.iter().map(|(n, v)| var(n, v)).collect(),
            ..Env::default()
        };
        file().resolve(&env).map(|v| {
            v.into_iter()
                .map(|(k, s)| (k, s.expose().to_string()))
                .collect()
        })
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn resolves_every_form_in_order() {
        let got = resolve(
            &[
                ("A", "/app/db/password"),
                ("B", "/app/key:3"),
                ("C", "/app/key:prod"),
                ("D", "/aws/reference/secretsmanager/raw"),
                ("E", "/aws/reference/secretsmanager/direct"),
            ],
            &[
                ("F", "prod/db"),
                ("G", "prod/db:password"),
                ("H", "prod/db:password:AWSPREVIOUS"),
                ("I", "prod/db:password::v-123"),
                ("J", "prod/api:token"),
                ("K", "prod/api:port"),
                ("L", ARN),
                ("M", "with-current"),
                ("N", "prod/db:password:AWSCURRENT"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("A", "p-plain"),
                ("B", "p-v3"),
                ("C", "p-prod"),
                ("D", "s-raw"),
                ("E", "p-direct"),
                ("F", "{\"username\":\"admin\",\"password\":\"s-current\"}"),
                ("G", "s-current"),
                ("H", "s-previous"),
                ("I", "s-pinned"),
                ("J", "s-token"),
                ("K", "8443"),
                ("L", "s-by-arn"),
                ("M", "s-explicit-current"),
                ("N", "s-current"),
            ])
        );
    }

    #[test]
    fn missing_entries_are_all_listed_without_values() {
        let err = resolve(
            &[
                ("A", "/app/key"),
                ("B", "/app/key:4"),
                ("OK", "/app/db/password"),
            ],
            &[
                ("C", "nope"),
                ("D", "prod/db:password:AWSPENDING"),
                ("E", "prod/db:nokey"),
                ("F", "raw:key"),
            ],
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 6, "{err}");
        let text = err.to_string();
        for needle in [
            "A: parameter \"/app/key\" not found",
            "B: parameter \"/app/key:4\" not found",
            "C: secret \"nope\" not found",
            "D: secret \"prod/db\" (version-stage AWSPENDING) not found",
            "E: secret \"prod/db\" has no JSON key \"nokey\"",
            "F: secret \"raw\" is not a JSON object",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        for value in ["p-plain", "p-v3", "s-current", "s-raw", "admin"] {
            assert!(!text.contains(value), "value leaked in:\n{text}");
        }
    }

    #[test]
    fn invalid_references_are_reported() {
        let err = resolve(&[], &[("X", "a:b:c:d")]).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn file_errors_do_not_quote_values() {
        let p = Path::new("f.json");
        let e = LocalSecrets::from_json("{\"parameters\": {\"a\": \"hunter2\"", p).unwrap_err();
        assert!(matches!(e, LocalFileError::Syntax { .. }), "{e}");
        assert!(!e.to_string().contains("hunter2"));
        let e = LocalSecrets::from_json("{\"params\": {}}", p).unwrap_err();
        assert!(e.to_string().contains("unknown key \"params\""), "{e}");
        let e = LocalSecrets::from_json("{\"secrets\": [\"hunter2\"]}", p).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = LocalSecrets::from_json("{\"secrets\": {\"x\": null}}", p).unwrap_err();
        assert!(e.to_string().contains("\"x\" is null"), "{e}");
        let e = LocalSecrets::from_json("[]", p).unwrap_err();
        assert!(e.to_string().contains("top level"), "{e}");
        let e = LocalSecrets::load(Path::new("/nonexistent/secrets.json")).unwrap_err();
        assert!(e
            .to_string()
            .contains("cannot read secrets file /nonexistent/secrets.json"));
        let dbg = format!("{:?}", file());
        assert!(
            !dbg.contains("p-plain") && dbg.contains("/app/db/password"),
            "{dbg}"
        );
    }
}
