//! The Docker build context: the context directory as a tar, without what
//! `.dockerignore` excludes (Docker's rules: `#` comments, `!` re-includes, a pattern
//! that matches a directory excludes everything under it; later lines win).

use super::error::PublishError;
use globset::{GlobBuilder, GlobMatcher};
use std::path::Path;

struct Rule {
    matcher: GlobMatcher,
    include: bool,
}

fn rules(text: &str) -> Vec<Rule> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (include, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let pat = pat
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            GlobBuilder::new(pat)
                .literal_separator(true)
                .build()
                .ok()
                .map(|g| Rule {
                    matcher: g.compile_matcher(),
                    include,
                })
        })
        .collect()
}

/// Whether `rel` (`/`-separated, relative to the context) is excluded.
fn excluded(rules: &[Rule], rel: &str) -> bool {
    let mut out = false;
    for r in rules {
        // The path itself or one of its parent directories.
        let mut hit = r.matcher.is_match(rel);
        if !hit {
            let mut prefix = rel;
            while let Some((parent, _)) = prefix.rsplit_once('/') {
                if r.matcher.is_match(parent) {
                    hit = true;
                    break;
                }
                prefix = parent;
            }
        }
        if hit {
            out = !r.include;
        }
    }
    out
}

/// Tars `dir` for the engine. Symlinks are stored as links, never followed; the
/// Dockerfile and .dockerignore are always sent (the engine needs them).
pub fn context_tar(dir: &Path, dockerfile: &str) -> Result<Vec<u8>, PublishError> {
    let ignore = std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default();
    let rules = rules(&ignore);
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    let mut it = walker.into_iter();
    while let Some(entry) = it.next() {
        let entry = entry
            .map_err(|e| PublishError::io("read", dir, std::io::Error::other(e.to_string())))?;
        let rel = match entry.path().strip_prefix(dir) {
            Ok(r) => r.to_string_lossy().replace('\\', "/"),
            Err(_) => continue,
        };
        let always = rel == dockerfile || rel == ".dockerignore";
        if !always && excluded(&rules, &rel) {
            // Keep walking into excluded directories only if a later `!` rule could
            // re-include something inside.
            if entry.file_type().is_dir() && !rules.iter().any(|r| r.include) {
                it.skip_current_dir();
            }
            continue;
        }
        builder
            .append_path_with_name(entry.path(), &rel)
            .map_err(|e| PublishError::io("add to the build context", entry.path(), e))?;
    }
    builder
        .into_inner()
        .map_err(|e| PublishError::io("write the build context of", dir, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn dockerignore_semantics() {
        let r = rules("# c\nnode_modules\n*.log\n!keep.log\ndocs/**/*.md\n");
        assert!(excluded(&r, "node_modules"));
        assert!(excluded(&r, "node_modules/a/b.js"));
        assert!(excluded(&r, "x.log"));
        assert!(!excluded(&r, "keep.log"));
        assert!(
            !excluded(&r, "sub/x.log"),
            "*.log matches only at the top, as in Docker"
        );
        assert!(excluded(&r, "docs/a/b.md"));
        assert!(!excluded(&r, "src/main.rs"));
    }

    #[test]
    fn tar_skips_ignored_and_keeps_dockerfile() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(d.path().join(".dockerignore"), "Dockerfile\nsecret.env\n").unwrap();
        std::fs::write(d.path().join("secret.env"), "X=1").unwrap();
        std::fs::write(d.path().join("app.txt"), "hi").unwrap();
        let tar = context_tar(d.path(), "Dockerfile").unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, [".dockerignore", "Dockerfile", "app.txt"]);
    }
}
