//! [`Secret`]: a string that never shows itself by accident.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret value (a password, token, private key...).
///
/// `Debug` and `Display` both print `***`, so a `Secret` inside any `#[derive(Debug)]` struct,
/// error or `format!` stays hidden. The value is reachable only through [`Secret::expose`],
/// which makes every use greppable. The backing memory is zeroed when the value is dropped
/// (best effort: copies made through `expose` are the caller's business).
///
/// Deliberately **not** `Serialize`: nothing that writes JSON, reports or events can include
/// one without an explicit `expose()`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Whatever is done with it must not reach output unmasked.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length of the value in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value without leading and trailing whitespace (a token pasted with its
    /// newline), still a secret.
    pub fn trimmed(&self) -> Secret {
        Secret(self.0.trim().to_owned())
    }
}

type Lookup = dyn Fn(&str) -> Option<Secret> + Send + Sync;

/// Secrets a caller hands over by name, for the settings that name where their credential
/// comes from (a GitOps target's `token-env`). The command line answers from its
/// environment; an agent from the job it was given. The library asks; it never reads the
/// process environment itself.
#[derive(Clone, Default)]
pub struct NamedSecrets(Option<std::sync::Arc<Lookup>>);

impl NamedSecrets {
    /// Answers from a function (e.g. the command line's environment).
    pub fn from_fn(f: impl Fn(&str) -> Option<Secret> + Send + Sync + 'static) -> Self {
        NamedSecrets(Some(std::sync::Arc::new(f)))
    }

    /// Answers from a fixed set.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Secret)>) -> Self {
        let map: std::collections::BTreeMap<String, Secret> = pairs.into_iter().collect();
        Self::from_fn(move |name| map.get(name).cloned())
    }

    /// The secret called `name`, if the caller has one.
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.0.as_ref().and_then(|f| f(name))
    }
}

impl fmt::Debug for NamedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NamedSecrets(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Config {
        name: String,
        password: Secret,
        tokens: Vec<Secret>,
        maybe: Option<Secret>,
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:#?}"), "***");
        assert_eq!(format!("{s:>10}"), "***");
        assert_eq!(s.to_string(), "***");
        assert_eq!(s.expose(), "hunter2-very-secret");
        assert_eq!(s.len(), 19);
        assert!(!s.is_empty());
    }

    #[test]
    fn struct_containing_secret_does_not_leak() {
        let c = Config {
            name: "db".into(),
            password: Secret::from("pa55w0rd!"),
            tokens: vec![Secret::from("ghp_abcdef123456".to_string())],
            maybe: Some(Secret::new("another-one")),
        };
        for out in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(out.contains("db"), "{out}");
            assert!(out.contains("***"), "{out}");
            for v in ["pa55w0rd!", "ghp_abcdef123456", "another-one"] {
                assert!(!out.contains(v), "{out}");
            }
        }
    }

    #[test]
    fn clone_is_independent_and_equal() {
        let a = Secret::new("value-1234");
        let b = a.clone();
        drop(a);
        assert_eq!(b.expose(), "value-1234");
        assert_eq!(b, Secret::from("value-1234"));
        assert!(Secret::default().is_empty());
    }
}
