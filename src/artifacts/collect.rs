//! Selecting an artifact's files and writing them below the output directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::beneath::Tree;
use super::error::ArtifactError;
use super::glob::{self, Entry, EntryKind, Query};
use super::{write, zip};
use crate::buildspec::model::{ArtifactSpec, Artifacts};

/// The output name of the primary artifact when it has no `name:`.
pub const PRIMARY_IDENTIFIER: &str = "primary";

/// How artifacts are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectOptions {
    /// `true`: write `out_dir/<identifier>.zip`; `false`: a directory `out_dir/<identifier>`.
    pub zip: bool,
}

/// One written artifact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArtifactOutput {
    /// The output name: the secondary identifier, or the primary's `name` (else `primary`).
    pub identifier: String,
    /// The directory or zip file written.
    pub path: PathBuf,
    /// Paths as written inside the artifact, relative, sorted.
    pub files: Vec<PathBuf>,
    /// Total size of the regular files' contents (uncompressed; symlinks count 0).
    pub bytes: u64,
    /// Matching paths that were skipped (symlinks leaving the source directory, special
    /// files, symlink loops) and other notes; the artifact was still written.
    pub warnings: Vec<String>,
}

/// An entry and where it goes inside the artifact.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub dest: PathBuf,
    pub entry: Entry,
}

/// Checks an artifact identifier/name can be used as one file name inside `out_dir`.
fn validate_identifier(name: &str) -> Result<(), ArtifactError> {
    let bad = |reason| {
        Err(ArtifactError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not names");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("it contains a path separator");
    }
    if name.contains('\0') {
        return bad("it contains a NUL character");
    }
    if name.starts_with('.') {
        // Leading dots are reserved for the collector's temporary files.
        return bad("it starts with `.`");
    }
    Ok(())
}

/// A destination must be relative and made of plain names only.
fn validate_destination(dest: &Path) -> Result<(), ArtifactError> {
    let plain = dest.components().count() > 0
        && dest.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(ArtifactError::UnsafeDestination {
            path: dest.to_path_buf(),
        })
    }
}

fn plan(spec: &ArtifactSpec, entries: Vec<Entry>) -> Result<Vec<Planned>, ArtifactError> {
    let mut by_dest: BTreeMap<PathBuf, Planned> = BTreeMap::new();
    for entry in entries {
        let dest = if spec.discard_paths {
            match entry.rel.file_name() {
                Some(n) => PathBuf::from(n),
                None => {
                    return Err(ArtifactError::UnsafeDestination { path: entry.rel });
                }
            }
        } else {
            entry.rel.clone()
        };
        validate_destination(&dest)?;
        if let Some(prev) = by_dest.get(&dest) {
            return Err(ArtifactError::NameCollision {
                name: dest.to_string_lossy().into_owned(),
                first: prev.entry.rel.clone(),
                second: entry.rel,
            });
        }
        by_dest.insert(dest.clone(), Planned { dest, entry });
    }
    // Never write a file below a symlink this artifact itself creates.
    let links: BTreeSet<&PathBuf> = by_dest
        .values()
        .filter(|p| matches!(p.entry.kind, EntryKind::Symlink { .. }))
        .map(|p| &p.dest)
        .collect();
    if !links.is_empty() {
        for p in by_dest.values() {
            if p.dest
                .ancestors()
                .skip(1)
                .any(|a| links.contains(&a.to_path_buf()))
            {
                return Err(ArtifactError::UnsafeDestination {
                    path: p.dest.clone(),
                });
            }
        }
    }
    Ok(by_dest.into_values().collect())
}

fn no_match_detail(sel: &glob::Selection) -> String {
    let mut parts = Vec::new();
    if sel.excluded > 0 {
        parts.push(format!(
            "{} matching path(s) were removed by exclude-paths",
            sel.excluded
        ));
    }
    if !sel.warnings.is_empty() {
        parts.push(sel.warnings.join("; "));
    }
    for d in &sel.directory_patterns {
        parts.push(format!(
            "`{d}` is a directory: use `{d}/**/*` to collect its contents"
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// Collects one artifact into `out_dir/<identifier>` (or `out_dir/<identifier>.zip`).
///
/// The artifact is written to a temporary path inside `out_dir` and renamed into place
/// only when complete, replacing any previous output of the same name; a failed
/// collection leaves the previous output (if any) untouched and no partial files.
pub fn collect(
    spec: &ArtifactSpec,
    identifier: &str,
    src_root: &Path,
    out_dir: &Path,
    opts: &CollectOptions,
) -> Result<ArtifactOutput, ArtifactError> {
    validate_identifier(identifier)?;
    if spec.files.is_empty() {
        return Err(ArtifactError::NoFiles {
            identifier: identifier.to_string(),
        });
    }
    std::fs::create_dir_all(out_dir)
        .map_err(|e| ArtifactError::io("create the output directory", out_dir, e))?;
    let out_canon = std::fs::canonicalize(out_dir)
        .map_err(|e| ArtifactError::io("resolve the output directory", out_dir, e))?;

    // The walk never enters the output directory; when that is where the files are (or
    // above it, inside the source), say so instead of reporting that nothing matched.
    if let Ok((root, base)) = glob::resolve_base(src_root, spec.base_directory.as_deref()) {
        if out_canon.starts_with(&root) && base.starts_with(&out_canon) {
            return Err(ArtifactError::OutputContainsBase {
                out: out_canon,
                base,
            });
        }
    }
    let sel = glob::select(&Query {
        src_root,
        base_directory: spec.base_directory.as_deref(),
        files: &spec.files,
        exclude: &spec.exclude_paths,
        keep_symlinks: spec.enable_symlinks,
        skip_dir: Some(&out_canon),
    })?;
    if sel.entries.is_empty() {
        return Err(ArtifactError::NoMatch {
            pattern: spec.files.join(", "),
            base: sel.base.clone(),
            detail: no_match_detail(&sel),
        });
    }
    let warnings = sel.warnings.clone();
    let planned = plan(spec, sel.entries)?;
    // Every file is read relative to a handle on the source directory, never through a
    // link leading out of it, whatever the build did to the tree since it was walked.
    let tree = Tree::open(src_root)
        .map_err(|e| ArtifactError::io("open the source directory", src_root, e))?;

    let (dest, bytes) = if opts.zip {
        let dest = out_canon.join(format!("{identifier}.zip"));
        let tmp = write::TempPath::new(&out_canon, identifier);
        let bytes = zip::write_zip(tmp.path(), &tree, &planned)?;
        tmp.commit(&dest)?;
        (dest, bytes)
    } else {
        let dest = out_canon.join(identifier);
        let tmp = write::TempPath::new(&out_canon, identifier);
        let bytes = write::write_tree(tmp.path(), &tree, &planned)?;
        tmp.commit(&dest)?;
        (dest, bytes)
    };

    Ok(ArtifactOutput {
        identifier: identifier.to_string(),
        path: dest,
        files: planned.into_iter().map(|p| p.dest).collect(),
        bytes,
        warnings,
    })
}

/// Collects the primary artifact (to `out_dir/<name>`, or `out_dir/primary` without a
/// `name`) and every secondary artifact (to `out_dir/<identifier>`).
///
/// Results are in order: the primary first — omitted when its `files` is empty, which
/// happens when only `secondary-artifacts` are given — then the secondaries in file
/// order. One artifact failing does not stop the others.
pub fn collect_all(
    artifacts: &Artifacts,
    src_root: &Path,
    out_dir: &Path,
    opts: &CollectOptions,
) -> Vec<Result<ArtifactOutput, ArtifactError>> {
    let mut jobs: Vec<(&str, &ArtifactSpec)> = Vec::new();
    if !artifacts.primary.files.is_empty() {
        let name = artifacts
            .primary
            .name
            .as_deref()
            .unwrap_or(PRIMARY_IDENTIFIER);
        jobs.push((name, &artifacts.primary));
    }
    for (id, spec) in &artifacts.secondary {
        jobs.push((id.as_str(), spec));
    }

    let mut seen: BTreeSet<String> = BTreeSet::new();
    jobs.into_iter()
        .map(|(id, spec)| {
            let key = if opts.zip {
                format!("{id}.zip")
            } else {
                id.to_string()
            };
            if !seen.insert(key) {
                return Err(ArtifactError::DuplicateOutput {
                    identifier: id.to_string(),
                });
            }
            collect(spec, id, src_root, out_dir, opts)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// src/ with a small tree, out/ empty.
    fn setup() -> (TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let out = tmp.path().join("out");
        fs::create_dir_all(&src).unwrap();
        write(&src, "README.md", "readme");
        write(&src, "top.txt", "top");
        write(&src, ".hidden", "h");
        write(&src, "dist/app.js", "app");
        write(&src, "dist/app.js.map", "map");
        write(&src, "dist/assets/logo.svg", "<svg/>");
        write(&src, "dist/assets/.keep", "");
        write(&src, "dist/assets/deep/x.txt", "x");
        write(&src, "other/x.txt", "other x");
        (tmp, src, out)
    }

    fn spec(files: &[&str]) -> ArtifactSpec {
        ArtifactSpec {
            files: files.iter().map(|s| s.to_string()).collect(),
            ..ArtifactSpec::default()
        }
    }

    fn names(out: &ArtifactOutput) -> Vec<String> {
        out.files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    const DIR: CollectOptions = CollectOptions { zip: false };
    const ZIP: CollectOptions = CollectOptions { zip: true };

    #[test]
    fn all_files_recursively_including_hidden() {
        let (_t, src, out) = setup();
        let r = collect(&spec(&["**/*"]), "primary", &src, &out, &DIR).unwrap();
        assert_eq!(
            names(&r),
            [
                ".hidden",
                "README.md",
                "dist/app.js",
                "dist/app.js.map",
                "dist/assets/.keep",
                "dist/assets/deep/x.txt",
                "dist/assets/logo.svg",
                "other/x.txt",
                "top.txt",
            ]
        );
        assert_eq!(r.path, fs::canonicalize(&out).unwrap().join("primary"));
        assert_eq!(
            fs::read_to_string(r.path.join("dist/assets/deep/x.txt")).unwrap(),
            "x"
        );
        assert_eq!(r.bytes, 6 + 3 + 1 + 3 + 3 + 6 + 1 + 7);
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn star_does_not_cross_directories_and_plain_paths_name_files() {
        let (_t, src, out) = setup();
        let r = collect(&spec(&["*.txt", "dist/app.js"]), "a", &src, &out, &DIR).unwrap();
        assert_eq!(names(&r), ["dist/app.js", "top.txt"]);
        let r = collect(&spec(&["dist/*"]), "b", &src, &out, &DIR).unwrap();
        assert_eq!(names(&r), ["dist/app.js", "dist/app.js.map"]);
        let r = collect(
            &spec(&["dist/**/*.txt", "./other/*.txt"]),
            "c",
            &src,
            &out,
            &DIR,
        )
        .unwrap();
        assert_eq!(names(&r), ["dist/assets/deep/x.txt", "other/x.txt"]);
    }

    #[test]
    fn base_directory_strips_prefix() {
        let (_t, src, out) = setup();
        let mut s = spec(&["**/*"]);
        s.base_directory = Some("dist/assets".into());
        let r = collect(&s, "a", &src, &out, &DIR).unwrap();
        assert_eq!(names(&r), [".keep", "deep/x.txt", "logo.svg"]);
        assert!(r.path.join("logo.svg").is_file());

        s.base_directory = Some("nope".into());
        let e = collect(&s, "a", &src, &out, &DIR).unwrap_err();
        assert!(
            matches!(e, ArtifactError::BaseDirectoryMissing { .. }),
            "{e}"
        );
        // The previous output of `a` survived the failed collection.
        assert!(out.join("a/logo.svg").is_file());
    }

    #[test]
    fn discard_paths_flattens_and_reports_collisions() {
        let (_t, src, out) = setup();
        let mut s = spec(&["dist/**/*.js", "dist/**/*.svg"]);
        s.discard_paths = true;
        let r = collect(&s, "a", &src, &out, &DIR).unwrap();
        assert_eq!(names(&r), ["app.js", "logo.svg"]);

        let mut s = spec(&["**/x.txt"]);
        s.discard_paths = true;
        let e = collect(&s, "b", &src, &out, &DIR).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ArtifactError::NameCollision { .. }));
        assert!(
            msg.contains("dist/assets/deep/x.txt") && msg.contains("other/x.txt"),
            "{msg}"
        );
        assert!(!out.join("b").exists());
    }

    #[test]
    fn exclude_paths_remove_matches() {
        let (_t, src, out) = setup();
        let mut s = spec(&["**/*"]);
        s.base_directory = Some("dist".into());
        s.exclude_paths = vec!["**/*.map".into(), "assets/deep/**/*".into(), "*.js".into()];
        let r = collect(&s, "a", &src, &out, &DIR).unwrap();
        assert_eq!(names(&r), ["assets/.keep", "assets/logo.svg"]);

        s.exclude_paths = vec!["**/*".into()];
        let e = collect(&s, "a", &src, &out, &DIR).unwrap_err();
        assert!(matches!(e, ArtifactError::NoMatch { .. }));
        assert!(e.to_string().contains("exclude-paths"), "{e}");
    }

    #[test]
    fn no_match_only_when_nothing_matched() {
        let (_t, src, out) = setup();
        let r = collect(&spec(&["missing/**/*", "top.txt"]), "a", &src, &out, &DIR).unwrap();
        assert_eq!(names(&r), ["top.txt"]);

        let e = collect(&spec(&["missing/**/*", "*.exe"]), "b", &src, &out, &DIR).unwrap_err();
        match &e {
            ArtifactError::NoMatch { pattern, .. } => assert_eq!(pattern, "missing/**/*, *.exe"),
            other => panic!("{other}"),
        }
        assert!(e
            .to_string()
            .starts_with("no matching artifact paths found"));

        let e = collect(&spec(&["dist"]), "c", &src, &out, &DIR).unwrap_err();
        assert!(e.to_string().contains("dist/**/*"), "{e}");

        let e = collect(&spec(&[]), "d", &src, &out, &DIR).unwrap_err();
        assert!(matches!(e, ArtifactError::NoFiles { .. }));
    }

    #[test]
    fn escaping_patterns_and_base_directories_are_refused() {
        let (_t, src, out) = setup();
        for files in [&["../secret"][..], &["/etc/passwd"], &["dist/../../x"]] {
            let e = collect(&spec(files), "a", &src, &out, &DIR).unwrap_err();
            assert!(matches!(e, ArtifactError::Escapes { .. }), "{files:?}: {e}");
        }
        let mut s = spec(&["**/*"]);
        s.base_directory = Some("..".into());
        assert!(matches!(
            collect(&s, "a", &src, &out, &DIR),
            Err(ArtifactError::Escapes { .. })
        ));
        s.base_directory = Some("/tmp".into());
        assert!(matches!(
            collect(&s, "a", &src, &out, &DIR),
            Err(ArtifactError::Escapes { .. })
        ));
        let mut s = spec(&["**/*"]);
        s.exclude_paths = vec!["../x".into()];
        assert!(matches!(
            collect(&s, "a", &src, &out, &DIR),
            Err(ArtifactError::Escapes { .. })
        ));
        // A base directory that is a symlink leading out of the source directory.
        let outside = src.parent().unwrap().join("outside");
        write(&outside, "secret.txt", "secret");
        symlink(&outside, src.join("escape")).unwrap();
        let mut s = spec(&["**/*"]);
        s.base_directory = Some("escape".into());
        assert!(matches!(
            collect(&s, "a", &src, &out, &DIR),
            Err(ArtifactError::Escapes { .. })
        ));
        assert!(!out.join("a").exists());
    }

    #[test]
    fn invalid_names_are_refused() {
        let (_t, src, out) = setup();
        for bad in ["", ".", "..", "a/b", "../x", "/abs", ".hidden", "a\\b"] {
            let e = collect(&spec(&["**/*"]), bad, &src, &out, &DIR).unwrap_err();
            assert!(
                matches!(e, ArtifactError::InvalidName { .. }),
                "{bad:?}: {e}"
            );
        }
        let arts = Artifacts {
            primary: ArtifactSpec {
                name: Some("../up".into()),
                ..spec(&["**/*"])
            },
            secondary: vec![],
        };
        let r = collect_all(&arts, &src, &out, &DIR);
        assert!(matches!(r[0], Err(ArtifactError::InvalidName { .. })));
        assert!(!src.parent().unwrap().join("up").exists());
    }

    #[test]
    fn primary_and_secondary_artifacts() {
        let (_t, src, out) = setup();
        let arts = Artifacts {
            primary: spec(&["top.txt"]),
            secondary: vec![
                ("web".into(), {
                    let mut s = spec(&["**/*"]);
                    s.base_directory = Some("dist".into());
                    s
                }),
                ("docs".into(), spec(&["README.md"])),
            ],
        };
        let results = collect_all(&arts, &src, &out, &DIR);
        let ok: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        let ids: Vec<_> = ok.iter().map(|o| o.identifier.as_str()).collect();
        assert_eq!(ids, ["primary", "web", "docs"]);
        assert!(out.join("primary/top.txt").is_file());
        assert!(out.join("web/assets/logo.svg").is_file());
        assert!(out.join("docs/README.md").is_file());

        // Named primary; secondary-only artifacts omit the primary.
        let mut arts = arts;
        arts.primary.name = Some("bundle".into());
        let r = collect_all(&arts, &src, &out, &DIR);
        assert_eq!(r[0].as_ref().unwrap().identifier, "bundle");
        arts.primary.files.clear();
        let r = collect_all(&arts, &src, &out, &DIR);
        assert_eq!(r.len(), 2);

        // A primary named like a secondary would overwrite it.
        arts.primary = spec(&["top.txt"]);
        arts.primary.name = Some("web".into());
        let r = collect_all(&arts, &src, &out, &DIR);
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(ArtifactError::DuplicateOutput { .. })));
    }

    #[test]
    fn zip_output_reads_back() {
        let (_t, src, out) = setup();
        symlink("app.js", src.join("dist/current.js")).unwrap();
        let mut s = spec(&["dist/**/*"]);
        s.enable_symlinks = true;
        s.exclude_paths = vec!["**/.keep".into()];
        let r = collect(&s, "web", &src, &out, &ZIP).unwrap();
        assert_eq!(r.path, fs::canonicalize(&out).unwrap().join("web.zip"));
        let mut z = ::zip::ZipArchive::new(fs::File::open(&r.path).unwrap()).unwrap();
        let entry_names: Vec<String> = (0..z.len())
            .map(|i| z.by_index(i).unwrap().name().unwrap().into_owned())
            .collect();
        assert_eq!(
            entry_names,
            [
                "dist/app.js",
                "dist/app.js.map",
                "dist/assets/deep/x.txt",
                "dist/assets/logo.svg",
                "dist/current.js",
            ]
        );
        let mut content = String::new();
        z.by_name("dist/assets/logo.svg")
            .unwrap()
            .read_to_string(&mut content)
            .unwrap();
        assert_eq!(content, "<svg/>");
        let mut link = z.by_name("dist/current.js").unwrap();
        assert!(link.is_symlink());
        assert_eq!(link.unix_mode().unwrap() & 0o170000, 0o120000);
        let mut target = String::new();
        link.read_to_string(&mut target).unwrap();
        assert_eq!(target, "app.js");
        drop(link);
        let file = z.by_name("dist/app.js").unwrap();
        assert!(!file.is_symlink());
        assert!(file.last_modified().is_some_and(|t| t.year() >= 2020));

        // Re-collecting replaces the zip; no temporary files are left behind.
        let r = collect(&spec(&["top.txt"]), "web", &src, &out, &ZIP).unwrap();
        let z = ::zip::ZipArchive::new(fs::File::open(&r.path).unwrap()).unwrap();
        assert_eq!(z.len(), 1);
        let left: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["web.zip"]);
    }

    #[test]
    fn symlinks_kept_when_enabled() {
        let (_t, src, out) = setup();
        symlink("app.js", src.join("dist/current.js")).unwrap();
        symlink("assets", src.join("dist/static")).unwrap();
        let mut s = spec(&["**/*"]);
        s.base_directory = Some("dist".into());
        s.enable_symlinks = true;
        let r = collect(&s, "a", &src, &out, &DIR).unwrap();
        let link = r.path.join("current.js");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_link(&link).unwrap(), PathBuf::from("app.js"));
        // A directory symlink is kept as one symlink, not descended into.
        assert!(fs::symlink_metadata(r.path.join("static"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(names(&r).contains(&"static".to_string()));
        assert!(!names(&r).iter().any(|n| n.starts_with("static/")));
    }

    #[test]
    fn symlinks_followed_when_disabled() {
        let (_t, src, out) = setup();
        symlink("app.js", src.join("dist/current.js")).unwrap();
        symlink("assets", src.join("dist/static")).unwrap();
        let mut s = spec(&["**/*"]);
        s.base_directory = Some("dist".into());
        let r = collect(&s, "a", &src, &out, &DIR).unwrap();
        let copied = r.path.join("current.js");
        assert!(fs::symlink_metadata(&copied).unwrap().file_type().is_file());
        assert_eq!(fs::read_to_string(&copied).unwrap(), "app");
        assert!(names(&r).contains(&"static/logo.svg".to_string()));
        assert!(r.path.join("static/deep/x.txt").is_file());
    }

    #[test]
    fn symlinks_leaving_the_source_are_never_followed() {
        let (tmp, src, out) = setup();
        let outside = tmp.path().join("outside");
        write(&outside, "secret.txt", "secret");
        write(&outside, "dir/inner.txt", "inner");
        symlink(outside.join("secret.txt"), src.join("dist/abs-secret")).unwrap();
        symlink("../../outside/secret.txt", src.join("dist/rel-secret")).unwrap();
        symlink(outside.join("dir"), src.join("dist/outdir")).unwrap();
        symlink("/nonexistent/target", src.join("dist/dangling-out")).unwrap();

        for keep in [false, true] {
            for opts in [DIR, ZIP] {
                let mut s = spec(&["**/*"]);
                s.base_directory = Some("dist".into());
                s.enable_symlinks = keep;
                let id = format!("k{keep}-z{}", opts.zip);
                let r = collect(&s, &id, &src, &out, &opts).unwrap();
                let n = names(&r);
                for bad in [
                    "abs-secret",
                    "rel-secret",
                    "outdir",
                    "outdir/inner.txt",
                    "dangling-out",
                ] {
                    assert!(!n.contains(&bad.to_string()), "{id}: {bad} in {n:?}");
                }
                assert!(n.contains(&"app.js".to_string()));
                let w = r.warnings.join("\n");
                assert!(
                    w.contains("abs-secret") && w.contains("rel-secret"),
                    "{id}: {w}"
                );
                assert!(w.contains("outdir"), "{id}: {w}");
            }
        }
        // Through a literal prefix as well.
        let e = collect(&spec(&["dist/outdir/**/*"]), "p", &src, &out, &DIR).unwrap_err();
        assert!(matches!(e, ArtifactError::NoMatch { .. }), "{e}");
        let e = collect(&spec(&["dist/abs-secret"]), "q", &src, &out, &DIR).unwrap_err();
        assert!(
            e.to_string().contains("outside the source directory"),
            "{e}"
        );
    }

    #[test]
    fn symlink_loops_are_skipped() {
        let (_t, src, out) = setup();
        symlink("..", src.join("dist/parent")).unwrap();
        let mut s = spec(&["**/*"]);
        s.base_directory = Some("dist".into());
        let r = collect(&s, "a", &src, &out, &DIR).unwrap();
        assert!(
            r.warnings.iter().any(|w| w.contains("loop")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn output_inside_source_is_not_collected() {
        let (_t, src, _out) = setup();
        let out = src.join("artifacts-out");
        collect(&spec(&["**/*"]), "a", &src, &out, &DIR).unwrap();
        let r = collect(&spec(&["**/*"]), "a", &src, &out, &DIR).unwrap();
        assert!(
            !names(&r).iter().any(|n| n.starts_with("artifacts-out")),
            "{:?}",
            names(&r)
        );
    }

    #[test]
    fn output_directory_at_or_above_the_base_directory_is_refused() {
        let (_t, src, _out) = setup();
        let e = collect(&spec(&["**/*"]), "a", &src, &src, &DIR).unwrap_err();
        assert!(matches!(e, ArtifactError::OutputContainsBase { .. }), "{e}");
        let mut s = spec(&["**/*"]);
        s.base_directory = Some("dist/assets".into());
        let e = collect(&s, "a", &src, &src.join("dist"), &DIR).unwrap_err();
        assert!(matches!(e, ArtifactError::OutputContainsBase { .. }), "{e}");
        assert!(!src.join("a").exists() && !src.join("dist/a").exists());
        // Above the source directory is fine: the walk never meets it.
        let r = collect(&s, "a", &src, src.parent().unwrap(), &DIR).unwrap();
        assert_eq!(names(&r), [".keep", "deep/x.txt", "logo.svg"]);
    }

    #[test]
    fn overwrite_replaces_previous_output() {
        let (_t, src, out) = setup();
        collect(&spec(&["**/*"]), "a", &src, &out, &DIR).unwrap();
        let r = collect(&spec(&["top.txt"]), "a", &src, &out, &DIR).unwrap();
        assert!(r.path.join("top.txt").is_file());
        assert!(!r.path.join("dist").exists());
        let left: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["a"]);
    }

    /// A build process swapping a matched file for a link to a host file (and back) while
    /// the host collects: the host file never reaches the artifact, whatever the timing.
    #[test]
    fn a_file_swapped_for_a_link_out_of_the_tree_is_never_read() {
        let (_t, src, out) = setup();
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("secret");
        fs::write(&secret, "HOST-SECRET").unwrap();
        // Files copied between the walk and the swapped one: time for the swap.
        for i in 0..50 {
            write(&src, &format!("dist/a{i:02}.js"), "bulk");
        }
        let _swap = super::super::beneath::Swapper::start(&src.join("dist/app.js"), &secret, "app");
        let mut read = 0;
        for i in 0..300 {
            let opts = if i % 2 == 0 { DIR } else { ZIP };
            let Ok(r) = collect(&spec(&["dist/*.js"]), "a", &src, &out, &opts) else {
                continue;
            };
            read += 1;
            let bytes = if opts.zip {
                let mut z = ::zip::ZipArchive::new(fs::File::open(&r.path).unwrap()).unwrap();
                let mut s = String::new();
                if let Ok(mut f) = z.by_name("dist/app.js") {
                    f.read_to_string(&mut s).unwrap();
                }
                s
            } else {
                fs::read_to_string(r.path.join("dist/app.js")).unwrap_or_default()
            };
            assert!(
                !bytes.contains("HOST-SECRET"),
                "round {i}: the host file was read"
            );
        }
        assert!(read > 0, "no collection got through");
    }
}
