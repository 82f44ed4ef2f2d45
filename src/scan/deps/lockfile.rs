//! What a lockfile parser returns, the lockfile kinds, and helpers shared by parsers.

use crate::scan::deps::purl::purl;
use crate::scan::model::{Location, Package};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockfileKind {
    CargoLock,
    PackageLock,
    YarnLock,
    PnpmLock,
    Requirements,
    PoetryLock,
    PipfileLock,
    UvLock,
    GoMod,
    GemfileLock,
    ComposerLock,
}

impl LockfileKind {
    /// The kind of a file by its name, `None` if it is not a lockfile we read.
    pub fn detect(file_name: &str) -> Option<LockfileKind> {
        Some(match file_name {
            "Cargo.lock" => LockfileKind::CargoLock,
            "package-lock.json" | "npm-shrinkwrap.json" => LockfileKind::PackageLock,
            "yarn.lock" => LockfileKind::YarnLock,
            "pnpm-lock.yaml" => LockfileKind::PnpmLock,
            "poetry.lock" => LockfileKind::PoetryLock,
            "Pipfile.lock" => LockfileKind::PipfileLock,
            "uv.lock" => LockfileKind::UvLock,
            "go.mod" => LockfileKind::GoMod,
            "Gemfile.lock" | "gems.locked" => LockfileKind::GemfileLock,
            "composer.lock" => LockfileKind::ComposerLock,
            n if n.starts_with("requirements") && n.ends_with(".txt") => LockfileKind::Requirements,
            _ => return None,
        })
    }

    /// The OSV ecosystem of the packages in this kind of lockfile.
    pub fn ecosystem(self) -> &'static str {
        match self {
            LockfileKind::CargoLock => "crates.io",
            LockfileKind::PackageLock | LockfileKind::YarnLock | LockfileKind::PnpmLock => "npm",
            LockfileKind::Requirements
            | LockfileKind::PoetryLock
            | LockfileKind::PipfileLock
            | LockfileKind::UvLock => "PyPI",
            LockfileKind::GoMod => "Go",
            LockfileKind::GemfileLock => "RubyGems",
            LockfileKind::ComposerLock => "Packagist",
        }
    }

    /// Parses a lockfile of this kind; `path` is its path relative to the scanned root.
    pub fn parse(self, text: &str, path: &str) -> Result<Parsed, ParseError> {
        use crate::scan::deps::*;
        match self {
            LockfileKind::CargoLock => cargo_lock::parse(text, path),
            LockfileKind::PackageLock => package_lock::parse(text, path),
            LockfileKind::YarnLock => yarn_lock::parse(text, path),
            LockfileKind::PnpmLock => pnpm_lock::parse(text, path),
            LockfileKind::Requirements => requirements::parse(text, path),
            LockfileKind::PoetryLock => poetry_lock::parse(text, path),
            LockfileKind::PipfileLock => pipfile_lock::parse(text, path),
            LockfileKind::UvLock => uv_lock::parse(text, path),
            LockfileKind::GoMod => go_mod::parse(text, path),
            LockfileKind::GemfileLock => gemfile_lock::parse(text, path),
            LockfileKind::ComposerLock => composer_lock::parse(text, path),
        }
    }
}

/// The packages of one lockfile, and the entries that were not usable.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Parsed {
    pub packages: Vec<Package>,
    pub skipped: Vec<SkippedEntry>,
    /// `(name, version)` of every package pushed, so a duplicate costs one lookup.
    #[serde(skip)]
    seen: HashSet<(String, String)>,
}

#[cfg(test)]
impl Parsed {
    /// `(name, version, line)` of every package, for parser tests.
    pub fn triples(&self) -> Vec<(&str, &str, Option<u32>)> {
        self.packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.location.line))
            .collect()
    }
}

/// An entry a parser could not turn into a package (unpinned requirement, git or path
/// dependency, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub entry: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {path}{}: {message} (is it a valid, unmodified lockfile? regenerate it with its package manager)", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct ParseError {
    pub path: String,
    pub line: Option<u32>,
    pub message: String,
}

impl ParseError {
    pub fn new(path: &str, line: Option<u32>, message: impl Into<String>) -> Self {
        ParseError {
            path: path.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl Parsed {
    /// Adds a package unless the same name and version is already there.
    pub fn push(
        &mut self,
        ecosystem: &str,
        name: &str,
        version: &str,
        path: &str,
        line: Option<u32>,
    ) {
        if name.is_empty() || version.is_empty() {
            return;
        }
        if !self.seen.insert((name.to_string(), version.to_string())) {
            return;
        }
        self.packages.push(Package {
            ecosystem: ecosystem.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            source_name: None,
            purl: purl(ecosystem, name, version),
            location: Location {
                path: path.to_string(),
                line,
                column: None,
                layer: None,
            },
        });
    }

    pub fn skip(&mut self, line: Option<u32>, entry: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(SkippedEntry {
            line,
            entry: entry.into(),
            reason: reason.into(),
        });
    }
}

/// The `[[package]]` tables of a TOML lockfile (Cargo.lock, poetry.lock, uv.lock), each
/// with the line of its header.
pub fn toml_packages<P: serde::de::DeserializeOwned>(
    text: &str,
    path: &str,
) -> Result<Vec<(P, Option<u32>)>, ParseError> {
    #[derive(serde::Deserialize)]
    struct Lock<P> {
        #[serde(default = "Vec::new")]
        package: Vec<P>,
    }
    let lock: Lock<P> =
        toml::from_str(text).map_err(|e| ParseError::new(path, None, e.message().to_string()))?;
    let lines = header_lines(text, "[[package]]");
    Ok(lock
        .package
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, lines.get(i).copied()))
        .collect())
}

/// 1-based line numbers of every line equal (after trimming) to `header`, in order.
pub fn header_lines(text: &str, header: &str) -> Vec<u32> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .map(|(i, _)| line_no(i))
        .collect()
}

pub fn line_no(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// For JSON lockfiles: where each object key `"key": {` opens, found in one pass over the
/// text, so looking a package up costs the same however many packages share its name.
#[derive(Debug, Default)]
pub struct JsonKeyLines<'a> {
    /// The first line each key opens an object on.
    first: HashMap<&'a str, u32>,
    /// The first line each key opens an object with `"version": "<version>"` in its next
    /// few lines.
    by_version: HashMap<(&'a str, &'a str), u32>,
}

impl<'a> JsonKeyLines<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut out = JsonKeyLines::default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(key) = object_key(line) else {
                continue;
            };
            let n = line_no(i);
            out.first.entry(key).or_insert(n);
            let version = lines
                .iter()
                .skip(i + 1)
                .take(12)
                .take_while(|l| !l.trim_start().starts_with('}'))
                .find_map(|l| version_value(l));
            if let Some(v) = version {
                out.by_version.entry((key, v)).or_insert(n);
            }
        }
        out
    }

    /// The line of the object `key` whose version is `version`, else the first object
    /// `key` opens.
    pub fn line(&self, key: &str, version: &str) -> Option<u32> {
        self.by_version
            .get(&(key, version))
            .or_else(|| self.first.get(key))
            .copied()
    }
}

/// `"key": {` → `key`.
fn object_key(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('"')?;
    let end = rest.find("\":")?;
    rest[end + 2..]
        .trim_start()
        .starts_with('{')
        .then(|| &rest[..end])
}

/// `"version": "1.2.3",` (or `==1.2.3` in Pipfile.lock) → `1.2.3` / `==1.2.3`.
fn version_value(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("\"version\":")?;
    let rest = rest.trim_start().strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}
