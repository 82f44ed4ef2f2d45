//! Environment variables: CodeBuild's precedence, reserved names, `--env` parsing.

use thiserror::Error;

/// Where the host's CA bundle is mounted inside build containers.
pub const CA_BUNDLE_MOUNT: &str = "/usr/local/share/runner/host-ca-certificates.crt";

/// The variables common tools read to find a CA bundle; all point at `CA_BUNDLE_MOUNT`
/// when the host's bundle is trusted.
pub const CA_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "CARGO_HTTP_CAINFO",
    "GIT_SSL_CAINFO",
    "CURL_CA_BUNDLE",
    "AWS_CA_BUNDLE",
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("{origin}: expected KEY=VALUE, found {text:?}")]
    NotAssignment { origin: String, text: String },
    #[error("{origin}: {name:?} is not a valid variable name (letters, digits and '_', not starting with a digit)")]
    BadName { origin: String, name: String },
    #[error(
        "{origin}: {name} is reserved: variables starting with CODEBUILD_ are set by the runner"
    )]
    Reserved { origin: String, name: String },
}

pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with("CODEBUILD_")
}

/// Parses one `KEY=VALUE` (as given to `--env`). `origin` names where it came from.
pub fn parse_env_assignment(origin: &str, text: &str) -> Result<(String, String), EnvError> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(EnvError::NotAssignment {
            origin: origin.to_string(),
            text: text.to_string(),
        });
    };
    let name = name.trim();
    if !is_valid_name(name) {
        return Err(EnvError::BadName {
            origin: origin.to_string(),
            name: name.to_string(),
        });
    }
    if is_reserved(name) {
        return Err(EnvError::Reserved {
            origin: origin.to_string(),
            name: name.to_string(),
        });
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses a dotenv-style file: `KEY=VALUE` lines, `#` comments, blank lines, an optional
/// `export ` prefix, and values in matching single or double quotes.
pub fn parse_env_file(file: &str, text: &str) -> Result<Vec<(String, String)>, EnvError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let origin = format!("{file}:{}", i + 1);
        let (name, value) = parse_env_assignment(&origin, line)?;
        let value = value.trim();
        let value = unquote(value).unwrap_or(value);
        out.push((name, value.to_string()));
    }
    Ok(out)
}

fn unquote(v: &str) -> Option<&str> {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v.get(1..v.len() - 1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_rules() {
        assert_eq!(
            parse_env_assignment("--env", "A=b=c"),
            Ok(("A".into(), "b=c".into()))
        );
        assert!(matches!(
            parse_env_assignment("--env", "novalue"),
            Err(EnvError::NotAssignment { .. })
        ));
        assert!(matches!(
            parse_env_assignment("--env", "1A=x"),
            Err(EnvError::BadName { .. })
        ));
        assert!(matches!(
            parse_env_assignment("--env", "CODEBUILD_SRC_DIR=/x"),
            Err(EnvError::Reserved { .. })
        ));
    }

    #[test]
    fn env_file() {
        let vars = parse_env_file("f.env", "# c\n\nexport A=1\nB=\"two words\"\nC='x'\nD=\n")
            .unwrap_or_default();
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into()),
                ("D".into(), "".into())
            ]
        );
        let err = parse_env_file("f.env", "A=1\noops\n");
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("f.env:2: expected KEY=VALUE, found \"oops\"".to_string())
        );
    }
}
