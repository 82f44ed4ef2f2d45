//! Container image references: `[registry[:port]/]path[:tag][@sha256:hex]`.
//!
//! Comparison uses the normalised repository (Docker's rules: no registry means
//! `docker.io`, a single path component on Docker Hub gets `library/`, `index.docker.io`
//! is `docker.io`), while rewritten references keep the repository exactly as written.

/// A parsed reference; `name` is the repository as written (registry and path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("`{0}` is not an image reference: expected REGISTRY/REPOSITORY[:TAG][@sha256:HEX], e.g. ghcr.io/org/app:1.2@sha256:…")]
    Invalid(String),
    #[error("`{0}` is not a digest: expected sha256: followed by 64 lowercase hex characters")]
    BadDigest(String),
}

/// Validate a digest (`sha256:` + 64 lowercase hex; other algorithms accepted if well formed).
pub fn parse_digest(d: &str) -> Result<String, ImageRefError> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err(ImageRefError::BadDigest(d.to_string()));
    };
    let algo_ok = !algo.is_empty()
        && algo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
    let hex_ok = hex.len() >= 32
        && hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    let len_ok = algo != "sha256" || hex.len() == 64;
    if algo_ok && hex_ok && len_ok {
        Ok(d.to_string())
    } else {
        Err(ImageRefError::BadDigest(d.to_string()))
    }
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        && !t.starts_with(['.', '-'])
}

fn valid_path_component(c: &str) -> bool {
    !c.is_empty()
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        && c.chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphanumeric())
}

fn is_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

impl ImageRef {
    /// Parse a reference. Placeholders (`<X>`, `${X}`, `{{ }}`) and other invalid text are refused.
    pub fn parse(s: &str) -> Result<ImageRef, ImageRefError> {
        let bad = || ImageRefError::Invalid(s.to_string());
        if s.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_whitespace()) {
            return Err(bad());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(d).map_err(|_| bad())?)),
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(bad());
            }
        }
        let comps: Vec<&str> = name.split('/').collect();
        let (registry, path): (Option<&str>, &[&str]) = if comps.len() > 1 && is_registry(comps[0])
        {
            (Some(comps[0]), &comps[1..])
        } else {
            (None, &comps[..])
        };
        if let Some(r) = registry {
            let (host, port) = match r.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (r, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !host_ok || !port_ok {
                return Err(bad());
            }
        }
        if path.is_empty() || !path.iter().all(|c| valid_path_component(c)) {
            return Err(bad());
        }
        Ok(ImageRef {
            name: name.to_string(),
            tag,
            digest,
        })
    }

    /// Normalised repository for comparisons, e.g. `nginx` -> `docker.io/library/nginx`.
    pub fn normalized_name(&self) -> String {
        normalize_repository(&self.name)
    }

    /// `name[:tag][@digest]`.
    pub fn to_reference(&self) -> String {
        let mut s = self.name.clone();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// Normalise a repository name (no tag/digest) the way Docker does.
pub fn normalize_repository(name: &str) -> String {
    let name = name.trim();
    let comps: Vec<&str> = name.split('/').collect();
    let (registry, path) = if comps.len() > 1 && is_registry(comps[0]) {
        (comps[0].to_ascii_lowercase(), comps[1..].join("/"))
    } else {
        ("docker.io".to_string(), name.to_string())
    };
    let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
        "docker.io".to_string()
    } else {
        registry
    };
    if registry == "docker.io" && !path.contains('/') {
        format!("docker.io/library/{path}")
    } else {
        format!("{registry}/{path}")
    }
}

/// Does `candidate` (a repository or a full reference) name the same repository as `wanted`?
pub fn same_repository(candidate: &str, wanted_normalized: &str) -> bool {
    match ImageRef::parse(candidate) {
        Ok(r) => r.normalized_name() == wanted_normalized,
        Err(_) => false,
    }
}

/// Tag part of a Helm-style tag value that may already carry `@digest`.
pub fn strip_digest(tag: &str) -> &str {
    tag.split_once('@').map_or(tag, |(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalize() {
        let r = ImageRef::parse("nginx").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.normalized_name(), "docker.io/library/nginx");
        let r = ImageRef::parse("localhost:5000/a/b:1.0@sha256:0000000000000000000000000000000000000000000000000000000000000000")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.name, "localhost:5000/a/b");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert!(r.digest.is_some());
        assert_eq!(
            normalize_repository("index.docker.io/library/redis"),
            "docker.io/library/redis"
        );
        assert_eq!(normalize_repository("user/app"), "docker.io/user/app");
        assert!(ImageRef::parse("<ECR_REPOSITORY_URL>:<IMAGE_TAG>").is_err());
        assert!(ImageRef::parse("${IMAGE}").is_err());
        assert!(ImageRef::parse("10.42.0.1:30000/x/y:1").is_ok());
        assert!(parse_digest("sha256:abc").is_err());
    }
}
