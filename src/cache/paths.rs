//! `cache.paths` patterns as container paths.
//!
//! A pattern is absolute (`/root/.cache/pip/**/*`) or relative to the build's source
//! directory (`node_modules/**/*`, resolved against `CODEBUILD_SRC_DIR`). It is split
//! into a literal *prefix* — the components before the first one holding a glob
//! metacharacter (`* ? [ ] { } \`), the directory the executor downloads from the
//! container — and a glob *tail* matched against paths relative to that prefix:
//!
//! - `*` and `?` stay within one path component, `**` crosses components, hidden files
//!   match (`**/*` = everything below the prefix);
//! - a matching directory brings its whole subtree (`node_modules/*` keeps the packages
//!   with their contents, as a user expects from a cache path);
//! - a pattern without metacharacters (`/root/.m2`) names the path itself and, when it is
//!   a directory, everything below it.
//!
//! Refused: `..` components (anywhere), and a prefix that is the container root (`/`,
//! `/**/*`, `/*`): restoring such a cache could overwrite anything in the container.

use globset::{GlobBuilder, GlobMatcher};

use super::error::CacheError;

/// One parsed `cache.paths` pattern.
#[derive(Debug, Clone)]
pub struct CachePath {
    pattern: String,
    /// Absolute container path, normalised, without a trailing `/` (e.g. `/root/.cache/pip`).
    prefix: String,
    /// `None`: everything at and below the prefix.
    matcher: Option<GlobMatcher>,
}

impl PartialEq for CachePath {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.prefix == other.prefix && self.tail() == other.tail()
    }
}

impl Eq for CachePath {}

fn is_glob_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

impl CachePath {
    /// Parses `pattern`; a relative pattern is resolved against `src_dir`, the absolute
    /// container path of the source directory (`CODEBUILD_SRC_DIR`).
    pub fn parse(pattern: &str, src_dir: &str) -> Result<CachePath, CacheError> {
        let bad = |reason: &str| CacheError::BadPath {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = pattern.trim();
        if trimmed.is_empty() {
            return Err(bad(
                "the pattern is empty; write a path such as `node_modules/**/*`",
            ));
        }
        if trimmed.contains('\0') {
            return Err(bad("the pattern contains a NUL character"));
        }
        let full = if trimmed.starts_with('/') {
            trimmed.to_string()
        } else {
            if !src_dir.starts_with('/') {
                return Err(bad(&format!(
                    "the source directory `{src_dir}` it is relative to is not an absolute path"
                )));
            }
            format!("{src_dir}/{trimmed}")
        };

        let mut components = Vec::new();
        for part in full.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(bad(
                        "`..` components are not allowed; write the path without `..` \
                         (absolute, or relative to the source directory)",
                    ))
                }
                p => components.push(p),
            }
        }
        let literal = components
            .iter()
            .position(|c| is_glob_meta(c))
            .unwrap_or(components.len());
        if literal == 0 {
            return Err(bad(
                "it would cache the whole container file system (its literal part is `/`); \
                 name a directory such as `/root/.cache/pip/**/*`",
            ));
        }
        let prefix = format!("/{}", components[..literal].join("/"));
        let tail = components[literal..].join("/");
        let matcher = if tail.is_empty() {
            None
        } else {
            let glob = GlobBuilder::new(&tail)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| bad(&format!("invalid glob: {}", e.kind())))?;
            Some(glob.compile_matcher())
        };
        Ok(CachePath {
            pattern: pattern.to_string(),
            prefix,
            matcher,
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The absolute container directory (or file) to download: `/root/.cache/pip`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The glob matched below the prefix (`""` for a literal path).
    pub fn tail(&self) -> &str {
        self.matcher.as_ref().map(|m| m.glob().glob()).unwrap_or("")
    }

    /// Whether the pattern selects everything at and below its prefix (`/root/.m2`,
    /// `node_modules/**/*`, `vendor/*`): a volume at the prefix then holds exactly what
    /// the cache keeps.
    pub fn whole_tree(&self) -> bool {
        matches!(self.tail(), "" | "*" | "**" | "**/*")
    }

    /// The name Docker's archive API gives the top entry of the prefix's archive (its
    /// last component): `pip` for `/root/.cache/pip`.
    pub fn archive_root(&self) -> &str {
        self.prefix.rsplit('/').next().unwrap_or("")
    }

    /// The prefix as a tar path (no leading `/`): `root/.cache/pip`.
    pub fn tar_prefix(&self) -> &str {
        self.prefix.trim_start_matches('/')
    }

    /// Whether a tar path (no leading `/`, normalised) is the prefix or lies below it.
    pub fn contains(&self, tar_path: &str) -> bool {
        let p = self.tar_prefix();
        tar_path == p
            || (tar_path.len() > p.len()
                && tar_path.starts_with(p)
                && tar_path.as_bytes()[p.len()] == b'/')
    }

    /// Whether a path relative to the prefix (`""` = the prefix itself) is selected: the
    /// glob matches it or one of its ancestors below the prefix.
    pub fn matches(&self, rel: &str) -> bool {
        let Some(m) = &self.matcher else {
            return true;
        };
        if rel.is_empty() {
            return false;
        }
        rel.match_indices('/')
            .map(|(i, _)| &rel[..i])
            .chain(std::iter::once(rel))
            .any(|p| m.is_match(p))
    }

    /// Whether a tar path is selected by this pattern (inside the prefix and matching).
    pub fn selects(&self, tar_path: &str) -> bool {
        if !self.contains(tar_path) {
            return false;
        }
        let rel = tar_path[self.tar_prefix().len()..].trim_start_matches('/');
        self.matches(rel)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SRC: &str = "/codebuild/output/src123/src";

    fn p(s: &str) -> CachePath {
        CachePath::parse(s, SRC).unwrap()
    }

    #[test]
    fn absolute_pattern_prefix_and_tail() {
        let c = p("/root/.cache/pip/**/*");
        assert_eq!(c.prefix(), "/root/.cache/pip");
        assert_eq!(c.tar_prefix(), "root/.cache/pip");
        assert_eq!(c.archive_root(), "pip");
        assert_eq!(c.tail(), "**/*");
        assert!(c.matches("x"));
        assert!(c.matches("a/b/.hidden"));
        assert!(!c.matches(""));
        assert!(c.selects("root/.cache/pip/http/x"));
        assert!(!c.selects("root/.cache/pip"));
        assert!(!c.selects("root/.cache/pipx/a"));
        assert!(!c.selects("root/.cache"));
    }

    #[test]
    fn relative_pattern_resolves_against_src_dir() {
        let c = p("node_modules/**/*");
        assert_eq!(c.prefix(), "/codebuild/output/src123/src/node_modules");
        let c = p("./vendor//bundle/**/*");
        assert_eq!(c.prefix(), "/codebuild/output/src123/src/vendor/bundle");
        let c = p("**/*");
        assert_eq!(c.prefix(), SRC);
    }

    #[test]
    fn glob_in_the_middle_and_single_star() {
        let c = p("/root/.cache/pip*/x");
        assert_eq!(c.prefix(), "/root/.cache");
        assert!(c.matches("pip/x"));
        assert!(c.matches("pip-tools/x/deep"));
        assert!(!c.matches("pip/y"));
        let c = p("node_modules/*");
        assert!(c.matches("lodash"));
        // A matching directory brings its subtree.
        assert!(c.matches("lodash/index.js"));
        let c = p("/root/.cache/*.whl");
        assert!(c.matches("a.whl"));
        assert!(!c.matches("sub/a.whl"));
        assert!(!c.matches("a.txt"));
    }

    #[test]
    fn literal_pattern_selects_everything_below() {
        let c = p("/root/.m2/");
        assert_eq!(c.prefix(), "/root/.m2");
        assert_eq!(c.tail(), "");
        assert!(c.matches(""));
        assert!(c.matches("repository/x.jar"));
        assert!(c.selects("root/.m2"));
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "  ",
            "/",
            "/**/*",
            "/*",
            "//",
            "/./**",
            "../x",
            "a/../../etc",
            "/root/../etc/**",
        ] {
            let err = CachePath::parse(bad, SRC).unwrap_err();
            assert!(matches!(err, CacheError::BadPath { .. }), "{bad}: {err}");
        }
        // Relative pattern with a relative source directory.
        assert!(CachePath::parse("node_modules", "src").is_err());
        // Relative `**/*` against `/` as the source directory would be the root.
        assert!(CachePath::parse("**/*", "/").is_err());
        // Invalid glob.
        assert!(CachePath::parse("/root/[a", SRC).is_err());
    }
}
