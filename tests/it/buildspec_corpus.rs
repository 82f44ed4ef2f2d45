//! Runs the buildspec parser over the real-world corpus in `../shared/corpus/buildspecs/`
//! (see its README.md): valid files must parse without errors, `questionable/` ones with
//! warnings that carry a suggestion, and `invalid/` ones with errors at the right place.

use std::path::{Path, PathBuf};

use runner::buildspec::{parse, render, Diagnostic, Severity};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/buildspecs")
}

/// The buildspec files directly in `dir`, sorted; fails the test when `dir` is missing.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => panic!("corpus folder {} is missing: {e}", dir.display()),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yml") | Some("yaml")
                )
        })
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rendered(path: &Path, diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| render(&name(path), d))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Valid files that CodeBuild's documentation would frown on; runner runs them and must
/// say so with a warning at exactly this place.
const VALID_WITH_WARNING: &[(&str, u32, u32, &str)] = &[
    // `- echo "Instances: $INSTANCE_IDS"` is a plain scalar with ": ", so YAML reads a
    // mapping; runner runs it as the command the author wrote, and warns.
    (
        "Cloudlightcorp__CLC-140-AutomatedLab-ec2-scripts-Windows__buildspec-apply.yml",
        23,
        9,
        "phases.build.commands[6] is a mapping, not a string",
    ),
    // post_build has only `finally:` (the build has other phases with commands).
    (
        "aws__sagemaker-python-sdk__buildspec.yml",
        22,
        3,
        "phases.post_build has only `finally:` commands",
    ),
];

#[test]
fn valid_buildspecs_parse_without_errors() {
    let files = files_in(&corpus_dir());
    assert!(
        files.len() > 100,
        "expected more than 100 corpus buildspecs, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    let mut warned = 0;
    for path in &files {
        let parsed = parse(&read(path));
        let errors: Vec<Diagnostic> = parsed
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .cloned()
            .collect();
        if let Some((_, line, col, msg)) =
            VALID_WITH_WARNING.iter().find(|(n, ..)| *n == name(path))
        {
            let found = parsed.diagnostics.iter().any(|d| {
                d.severity == Severity::Warning
                    && d.line == *line
                    && d.col == *col
                    && d.message.contains(msg)
            });
            if !found {
                failures.push(format!(
                    "{}: expected the warning {line}:{col} {msg:?}, got:\n{}",
                    name(path),
                    rendered(path, &parsed.diagnostics)
                ));
            }
        }
        if !errors.is_empty() {
            failures.push(rendered(path, &errors));
        } else if parsed.spec.is_none() {
            failures.push(format!("{}: no spec although no errors", name(path)));
        }
        if !parsed.diagnostics.is_empty() {
            warned += 1;
            println!("{}", rendered(path, &parsed.diagnostics));
        }
    }
    for (file, ..) in VALID_WITH_WARNING {
        assert!(
            files.iter().any(|p| name(p) == *file),
            "{file} is no longer in the corpus: drop it from VALID_WITH_WARNING"
        );
    }
    println!("{} files, {warned} with warnings", files.len());
    assert!(
        failures.is_empty(),
        "errors in valid buildspecs:\n{}",
        failures.join("\n")
    );
}

#[test]
fn questionable_buildspecs_warn_with_a_suggestion() {
    let files = files_in(&corpus_dir().join("questionable"));
    assert!(
        files.len() >= 2,
        "expected 2 questionable files, found {}",
        files.len()
    );
    for path in &files {
        let parsed = parse(&read(path));
        let all = rendered(path, &parsed.diagnostics);
        println!("{all}");
        assert!(
            parsed
                .diagnostics
                .iter()
                .all(|d| d.severity == Severity::Warning),
            "{} must have no errors:\n{all}",
            name(path)
        );
        assert!(parsed.spec.is_some(), "{} must still parse", name(path));
        assert!(
            parsed.diagnostics.iter().any(|d| d
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("did you mean"))),
            "{} must have a warning with a did-you-mean hint:\n{all}",
            name(path)
        );
    }
}

/// For each invalid file: a part of its name, and the (line, col, message part) of an error
/// it must have.
const INVALID_EXPECTED: &[(&str, u32, u32, &str)] = &[
    // post_build has only `finally:`.
    (
        "0x4447_product_s3_email_lambda_converter",
        5,
        3,
        "phases.post_build has no commands",
    ),
    // GitHub Actions `steps:` instead of `commands:` in build.
    ("liquibase-poc", 8, 3, "phases.build has no commands"),
    // `exported-variables:` is the scalar VERSION_HASH on line 19.
    (
        "aws-encryption-sdk-java",
        19,
        5,
        "env.exported-variables must be a list of variable names",
    ),
    // An OCI DevOps build_spec: no `phases:` at all.
    ("buildspec_ruby", 1, 1, "missing required key \"phases\""),
];

#[test]
fn invalid_buildspecs_have_errors_at_the_offending_node() {
    let files = files_in(&corpus_dir().join("invalid"));
    assert!(
        files.len() >= 4,
        "expected 4 invalid files, found {}",
        files.len()
    );
    for path in &files {
        let text = read(path);
        let parsed = parse(&text);
        let all = rendered(path, &parsed.diagnostics);
        println!("{all}");
        assert!(parsed.spec.is_none(), "{} must not parse", name(path));
        let errors: Vec<&Diagnostic> = parsed
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert!(!errors.is_empty(), "{} must have an error", name(path));
        let lines = text.lines().count() as u32;
        for e in &errors {
            assert!(
                e.line >= 1 && e.line <= lines.max(1) && e.col >= 1,
                "{}: error outside the file: {all}",
                name(path)
            );
        }
        let n = name(path);
        let expected = INVALID_EXPECTED
            .iter()
            .find(|(part, ..)| n.contains(part))
            .unwrap_or_else(|| panic!("no expectation for invalid file {n}"));
        let (_, line, col, msg) = *expected;
        assert!(
            errors
                .iter()
                .any(|e| e.line == line && e.col == col && e.message.contains(msg)),
            "{n}: expected an error at {line}:{col} containing {msg:?}, got:\n{all}"
        );
    }
    // Every expectation was used.
    for (part, ..) in INVALID_EXPECTED {
        assert!(
            files.iter().any(|p| name(p).contains(part)),
            "invalid corpus file matching {part:?} is missing"
        );
    }
}
