//! `artifacts:` end to end: a real build writes files, `runner build --artifacts DIR`
//! collects them; the trees written are compared exactly.

use crate::support::{runner_containers, Project, Run};
use std::io::Read;
use std::path::Path;

/// Every entry below `root`, relative and sorted: directories end with `/`, symlinks are
/// shown as `link -> target`.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("{e}"));
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
                out.push(format!("{rel} -> {}", target.display()));
            } else if meta.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An empty output directory `<tmp>/out` inside its own temporary directory, so a test
/// can check nothing was written next to it.
struct Out {
    parent: tempfile::TempDir,
}

impl Out {
    fn new() -> Self {
        let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(parent.path().join("out")).unwrap_or_else(|e| panic!("{e}"));
        Out { parent }
    }

    fn path(&self) -> std::path::PathBuf {
        self.parent.path().join("out")
    }

    fn arg(&self) -> String {
        self.path().display().to_string()
    }
}

fn artifact_events(run: &Run) -> Vec<(String, u64, u64)> {
    run.events
        .iter()
        .filter(|e| e["event"] == "artifact")
        .map(|e| {
            (
                e["identifier"].as_str().unwrap_or("").to_string(),
                e["files"].as_u64().unwrap_or(0),
                e["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn upload_phase(run: &Run) -> (String, String) {
    let ended = run
        .events
        .iter()
        .find(|e| e["event"] == "phase_ended" && e["phase"] == "UPLOAD_ARTIFACTS")
        .unwrap_or_else(|| panic!("no UPLOAD_ARTIFACTS phase: {}", run.debug()));
    (
        ended["status"].as_str().unwrap_or("").to_string(),
        ended["context"].as_str().unwrap_or("").to_string(),
    )
}

const MAKE_DIST: &str = r#"    commands:
      - mkdir -p dist/js/vendor dist/css dist/maps
      - printf app > dist/js/app.js
      - printf lib > dist/js/vendor/lib.js
      - printf css > dist/css/site.css
      - printf map > dist/maps/app.js.map
      - printf tmp > dist/js/scratch.tmp
      - printf '<html>' > dist/index.html
"#;

#[test]
fn base_directory_and_exclude_paths_select_an_exact_tree() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  build:\n{MAKE_DIST}artifacts:\n  files:\n    - '**/*'\n  base-directory: dist\n  exclude-paths:\n    - '**/*.tmp'\n    - 'maps/**/*'\n"
        ),
    );
    p.write("README.md", "not in dist");
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(run.status(), "SUCCEEDED");
    assert_eq!(upload_phase(&run), ("SUCCEEDED".into(), String::new()));
    assert_eq!(
        tree(&out.path()),
        [
            "primary/",
            "primary/css/",
            "primary/css/site.css",
            "primary/index.html",
            "primary/js/",
            "primary/js/app.js",
            "primary/js/vendor/",
            "primary/js/vendor/lib.js",
        ]
    );
    assert_eq!(read(&out.path().join("primary/js/vendor/lib.js")), "lib");
    assert_eq!(
        artifact_events(&run),
        [("primary".to_string(), 4, 3 + 3 + 3 + 6)]
    );
    let summary = &run.result()["artifacts"][0];
    assert_eq!(summary["identifier"], "primary");
    assert_eq!(
        summary["path"],
        std::fs::canonicalize(out.path().join("primary"))
            .unwrap_or_else(|e| panic!("{e}"))
            .display()
            .to_string()
    );
}

#[test]
fn without_base_directory_paths_keep_their_source_prefix() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  build:\n{MAKE_DIST}artifacts:\n  files:\n    - 'dist/js/**/*'\n    - dist/index.html\n"
        ),
    );
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        tree(&out.path()),
        [
            "primary/",
            "primary/dist/",
            "primary/dist/index.html",
            "primary/dist/js/",
            "primary/dist/js/app.js",
            "primary/dist/js/scratch.tmp",
            "primary/dist/js/vendor/",
            "primary/dist/js/vendor/lib.js",
        ]
    );
}

#[test]
fn discard_paths_and_name_flatten_into_the_named_directory() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p out/a out/b/c
      - echo one > out/a/one.txt
      - echo two > out/b/c/two.txt
      - echo log > out/b/skip.log
artifacts:
  name: bundle
  discard-paths: yes
  files:
    - 'out/**/*.txt'
"#,
    );
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        tree(&out.path()),
        ["bundle/", "bundle/one.txt", "bundle/two.txt"]
    );
    assert_eq!(read(&out.path().join("bundle/two.txt")), "two\n");
    assert_eq!(artifact_events(&run), [("bundle".to_string(), 2, 8)]);
}

#[test]
fn discard_paths_collisions_fail_the_upload() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p a b
      - echo 1 > a/same.txt
      - echo 2 > b/same.txt
artifacts:
  discard-paths: yes
  files:
    - '**/same.txt'
"#,
    );
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert_eq!(run.status(), "FAILED");
    let (status, context) = upload_phase(&run);
    assert_eq!(status, "FAILED");
    assert!(
        context
            .starts_with("CLIENT_ERROR: discard-paths would write both a/same.txt and b/same.txt"),
        "{context}"
    );
    assert_eq!(tree(&out.path()), Vec::<String>::new());
}

const SECONDARY: &str = r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p web/dist/assets docs/site
      - printf web > web/dist/index.html
      - printf svg > web/dist/assets/logo.svg
      - printf doc > docs/site/guide.html
      - printf top > top.txt
artifacts:
  files:
    - top.txt
  secondary-artifacts:
    web:
      base-directory: web/dist
      files:
        - '**/*'
    docs:
      base-directory: docs/site
      files:
        - '**/*'
"#;

#[test]
fn secondary_artifacts_each_get_their_own_directory() {
    let p = Project::new();
    p.write("buildspec.yml", SECONDARY);
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        tree(&out.path()),
        [
            "docs/",
            "docs/guide.html",
            "primary/",
            "primary/top.txt",
            "web/",
            "web/assets/",
            "web/assets/logo.svg",
            "web/index.html",
        ]
    );
    let ids: Vec<String> = artifact_events(&run).into_iter().map(|a| a.0).collect();
    assert_eq!(ids, ["primary", "web", "docs"]);

    // Only secondary artifacts: no primary directory at all.
    let only = SECONDARY.replace("  files:\n    - top.txt\n", "");
    p.write("buildspec.yml", &only);
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        tree(&out.path()),
        [
            "docs/",
            "docs/guide.html",
            "web/",
            "web/assets/",
            "web/assets/logo.svg",
            "web/index.html",
        ]
    );
}

fn zip_entries(path: &Path) -> Vec<(String, String)> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut z = zip::ZipArchive::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap_or_else(|e| panic!("{e}"));
            let name = f.name().unwrap_or_else(|e| panic!("{e}")).into_owned();
            let mut content = String::new();
            f.read_to_string(&mut content)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if f.is_symlink() {
                content = format!("-> {content}");
            }
            (name, content)
        })
        .collect()
}

#[test]
fn zip_writes_one_archive_per_artifact() {
    let p = Project::new();
    p.write("buildspec.yml", SECONDARY);
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg(), "--zip"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(tree(&out.path()), ["docs.zip", "primary.zip", "web.zip"]);
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        zip_entries(&out.path().join("web.zip")),
        pairs(&[("assets/logo.svg", "svg"), ("index.html", "web")])
    );
    assert_eq!(
        zip_entries(&out.path().join("primary.zip")),
        pairs(&[("top.txt", "top")])
    );
    assert_eq!(
        zip_entries(&out.path().join("docs.zip")),
        pairs(&[("guide.html", "doc")])
    );
    let zip_path = run.result()["artifacts"][1]["path"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(zip_path.ends_with("/out/web.zip"), "{zip_path}");
}

const LINKS: &str = r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p dist/assets
      - printf app > dist/app.js
      - printf svg > dist/assets/logo.svg
      - ln -sfn app.js dist/current.js
      - ln -sfn assets dist/static
artifacts:
  enable-symlinks: ENABLED
  base-directory: dist
  files:
    - '**/*'
"#;

#[test]
fn enable_symlinks_keeps_links_the_build_made() {
    let p = Project::new();
    p.write("buildspec.yml", &LINKS.replace("ENABLED", "yes"));
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        tree(&out.path()),
        [
            "primary/",
            "primary/app.js",
            "primary/assets/",
            "primary/assets/logo.svg",
            "primary/current.js -> app.js",
            "primary/static -> assets",
        ]
    );

    let zipped = Out::new();
    let run = p.build(&["--artifacts", &zipped.arg(), "--zip"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    let names: Vec<(String, String)> = zip_entries(&zipped.path().join("primary.zip"));
    assert_eq!(
        names,
        [
            ("app.js".to_string(), "app".to_string()),
            ("assets/logo.svg".to_string(), "svg".to_string()),
            ("current.js".to_string(), "-> app.js".to_string()),
            ("static".to_string(), "-> assets".to_string()),
        ]
    );
}

#[test]
fn without_enable_symlinks_links_are_followed() {
    let p = Project::new();
    p.write("buildspec.yml", &LINKS.replace("ENABLED", "no"));
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        tree(&out.path()),
        [
            "primary/",
            "primary/app.js",
            "primary/assets/",
            "primary/assets/logo.svg",
            "primary/current.js",
            "primary/static/",
            "primary/static/logo.svg",
        ]
    );
    assert_eq!(read(&out.path().join("primary/current.js")), "app");
    assert_eq!(read(&out.path().join("primary/static/logo.svg")), "svg");
}

#[test]
fn symlinks_survive_copy_mode() {
    let p = Project::new();
    p.write("buildspec.yml", &LINKS.replace("ENABLED", "yes"));
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg(), "--source-mode", "copy"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        tree(&out.path()),
        [
            "primary/",
            "primary/app.js",
            "primary/assets/",
            "primary/assets/logo.svg",
            "primary/current.js -> app.js",
            "primary/static -> assets",
        ]
    );
    assert!(!p.path().join("dist").exists());
}

/// Builds `spec` with a file next to the source and one next to the output directory,
/// and checks the build failed in UPLOAD_ARTIFACTS without writing anything anywhere.
fn assert_refused(spec: &str, expected_context: &str) {
    let p = Project::new();
    p.write("buildspec.yml", spec);
    let out = Out::new();
    let before = tree(out.parent.path());
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 1, "{spec}\n{}", run.debug());
    assert_eq!(run.status(), "FAILED", "{spec}");
    let (status, context) = upload_phase(&run);
    assert_eq!(status, "FAILED", "{spec}");
    assert!(
        context.starts_with(expected_context),
        "{spec}\nexpected {expected_context:?}\ngot {context:?}"
    );
    assert!(
        run.events
            .iter()
            .any(|e| e["event"] == "notice" && e["level"] == "error"),
        "the reason is also an error notice: {}",
        run.debug()
    );
    assert!(
        run.phases()
            .join(",")
            .ends_with("UPLOAD_ARTIFACTS=FAILED,FINALIZING=SUCCEEDED,COMPLETED=SUCCEEDED"),
        "{:?}",
        run.phases()
    );
    assert_eq!(artifact_events(&run), []);
    assert_eq!(
        tree(out.parent.path()),
        before,
        "{spec}: something was written"
    );
    assert_eq!(runner_containers(Some(&run.build_id())), 0);
}

#[test]
fn paths_escaping_the_source_fail_the_upload_and_write_nothing() {
    let build = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p dist && echo x > dist/x.txt\n      - ln -s / rootlink\n      - ln -s .. uplink\nartifacts:\n";
    let escapes = "CLIENT_ERROR: path `";
    let mut cases = Vec::new();
    for (artifacts, context) in [
        ("  files:\n    - ../outside.txt\n", escapes),
        ("  files:\n    - 'dist/../../**/*'\n", escapes),
        ("  files:\n    - /etc/passwd\n", escapes),
        ("  base-directory: ..\n  files:\n    - '**/*'\n", escapes),
        (
            "  base-directory: rootlink\n  files:\n    - etc/hostname\n",
            escapes,
        ),
        (
            "  base-directory: uplink\n  files:\n    - '**/*'\n",
            escapes,
        ),
        (
            "  files:\n    - '**/*'\n  exclude-paths:\n    - ../x\n",
            escapes,
        ),
        (
            "  name: ../evil\n  files:\n    - '**/*'\n",
            "CLIENT_ERROR: invalid artifact name `../evil`",
        ),
    ] {
        cases.push((format!("{build}{artifacts}"), context));
    }
    // One build per case, side by side (each in its own project).
    std::thread::scope(|s| {
        for (spec, context) in &cases {
            s.spawn(move || assert_refused(spec, context));
        }
    });
}

#[test]
fn one_failing_secondary_artifact_fails_the_build_but_not_the_others() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p dist && echo x > dist/x.txt
artifacts:
  files:
    - dist/x.txt
  secondary-artifacts:
    bad:
      base-directory: ../
      files:
        - '**/*'
    ok:
      base-directory: dist
      files:
        - x.txt
"#,
    );
    let out = Out::new();
    let run = p.build(&["--artifacts", &out.arg()]);
    assert_eq!(run.code, 1, "{}", run.debug());
    let (status, context) = upload_phase(&run);
    assert_eq!(status, "FAILED");
    assert!(
        context.starts_with("CLIENT_ERROR: path `../` escapes the source directory"),
        "{context}"
    );
    assert_eq!(
        tree(out.parent.path()),
        [
            "out/",
            "out/ok/",
            "out/ok/x.txt",
            "out/primary/",
            "out/primary/dist/",
            "out/primary/dist/x.txt",
        ]
    );
}

#[test]
fn a_pattern_matching_nothing_fails_the_upload_like_codebuild() {
    assert_refused(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo nothing to see\nartifacts:\n  files:\n    - 'target/**/*.jar'\n",
        "CLIENT_ERROR: no matching artifact paths found for target/**/*.jar",
    );
    // A base directory the build did not create.
    assert_refused(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo nothing to see\nartifacts:\n  base-directory: build/out\n  files:\n    - '**/*'\n",
        "CLIENT_ERROR: base-directory ",
    );
}

#[test]
fn an_output_directory_inside_the_source_is_never_collected_into_itself() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p "dist/with space"
      - printf a > "dist/with space/ünï code.txt"
      - printf h > dist/.hidden
artifacts:
  files:
    - '**/*'
"#,
    );
    for _ in 0..2 {
        // Relative to the working directory, which is the source directory.
        let run = p.build(&["--artifacts", "out"]);
        assert_eq!(run.code, 0, "{}", run.debug());
        assert_eq!(
            tree(&p.path().join("out")),
            [
                "primary/",
                "primary/buildspec.yml",
                "primary/dist/",
                "primary/dist/.hidden",
                "primary/dist/with space/",
                "primary/dist/with space/ünï code.txt",
            ]
        );
    }
}

#[test]
fn the_source_directory_itself_as_output_is_refused_with_a_clear_reason() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p dist && printf x > dist/x.txt\nartifacts:\n  base-directory: dist\n  files:\n    - '**/*'\n",
    );
    for out in [".", "dist"] {
        let run = p.build(&["--artifacts", out]);
        assert_eq!(run.code, 1, "{}", run.debug());
        let (status, context) = upload_phase(&run);
        assert_eq!(status, "FAILED");
        assert!(
            context.starts_with("CLIENT_ERROR: the artifacts directory ")
                && context.contains("pass --artifacts a directory outside the source directory"),
            "{out}: {context}"
        );
        assert_eq!(tree(&p.path().join("dist")), ["x.txt"], "{out}");
    }
}

#[test]
fn artifact_names_are_evaluated_in_the_build_shell() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - export STAGE=prod
      - mkdir -p dist && echo x > dist/a.txt
artifacts:
  name: app-$STAGE-$(echo 42)
  files:
    - dist/a.txt
  secondary-artifacts:
    plain:
      name: "literal"
      files:
        - dist/a.txt
"#,
    );
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = p.build(&["--artifacts", &out.path().display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(
        out.path().join("app-prod-42/dist/a.txt").is_file(),
        "{}",
        run.debug()
    );
    assert!(out.path().join("plain/dist/a.txt").is_file());
}
