//! A hostile build against the host: whatever a build's processes do to the source tree
//! while runner collects artifacts, reports and the cache, nothing from outside the tree
//! reaches the output (issue #17).

use crate::support::Project;
use std::path::Path;

/// Builds run by the swapping test: each one has many chances to win the race on the
/// old code (several files swapped for the whole collection), so a handful suffices.
const ITERATIONS: usize = 12;

/// A host file outside the source directory that the build points links at: a JUnit
/// report (so a report reader that follows a link counts its failure) carrying `marker`.
struct HostSecret {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    marker: String,
}

impl HostSecret {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let marker = format!("HOST-SECRET-{:016x}", rand::random::<u64>());
        let path = dir.path().join("secret.xml");
        std::fs::write(
            &path,
            format!(
                "<testsuite name=\"s\"><testcase name=\"t\"><failure message=\"{marker}\"/>\
                 </testcase></testsuite>\n"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        HostSecret {
            _dir: dir,
            path,
            marker,
        }
    }
}

/// Every file below `dir` whose bytes (or zstd-decoded bytes) contain `marker`.
fn files_containing(dir: &Path, marker: &str) -> Vec<String> {
    let needle = marker.as_bytes();
    let has = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            if has(&bytes) {
                return true;
            }
            let decoded = zstd::decode_all(bytes.as_slice()).unwrap_or_default();
            if has(&decoded) {
                return true;
            }
            // A zip artifact stores deflated files: look inside.
            match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
                Ok(mut z) => (0..z.len()).any(|i| {
                    let mut content = Vec::new();
                    z.by_index(i)
                        .map(|mut f| std::io::Read::read_to_end(&mut f, &mut content).is_ok())
                        .unwrap_or(false)
                        && has(&content)
                }),
                Err(_) => false,
            }
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

/// A build whose background process keeps replacing the files that `artifacts`,
/// `reports` and `cache` match by links to a host file (and back) while the host collects
/// them. Bulk files sorted first give the swapper time between selection and reading.
fn swapping_buildspec(secret: &Path) -> String {
    let secret = secret.display();
    format!(
        r#"version: 0.2
phases:
  build:
    commands:
      - rm -rf out reports
      - mkdir -p out/a-bulk out/z-swap reports/a-bulk reports/z-swap
      - i=0; while [ $i -lt 40 ]; do head -c 262144 /dev/zero > out/a-bulk/f$i; echo '<testsuite name="b"><testcase name="ok"/></testsuite>' > reports/a-bulk/r$i.xml; i=$((i+1)); done
      - for f in 1 2 3 4 5 6; do echo safe > out/z-swap/f$f; echo '<testsuite name="s"><testcase name="ok"/></testsuite>' > reports/z-swap/r$f.xml; done
      - |
        swap() {{
          while :; do
            ln -sfn {secret} "$1.l"; mv -f "$1.l" "$1"
            cp "$2" "$1.r"; mv -f "$1.r" "$1"
          done
        }}
        echo safe > /tmp/safe
        echo '<testsuite name="s"><testcase name="ok"/></testsuite>' > /tmp/safe.xml
        for f in 1 2 3 4 5 6; do
          swap out/z-swap/f$f /tmp/safe </dev/null >/dev/null 2>&1 &
          swap reports/z-swap/r$f.xml /tmp/safe.xml </dev/null >/dev/null 2>&1 &
        done
        echo swapping
artifacts:
  files:
    - out/**/*
reports:
  unit:
    files:
      - 'reports/**/*.xml'
cache:
  paths:
    - 'out/**/*'
"#
    )
}

/// The whole run's output (events, artifacts, cache store) never contains the host file.
#[test]
fn a_build_swapping_links_to_host_files_never_gets_them_into_the_output() {
    let secret = HostSecret::new();
    let p = Project::new();
    p.write("buildspec.yml", &swapping_buildspec(&secret.path));
    let mut leaks = Vec::new();
    for i in 0..ITERATIONS {
        let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let zip = i % 2 == 1;
        let mut args = vec![
            "--artifacts".to_string(),
            out.path().display().to_string(),
            "--cache-dir".to_string(),
            cache.path().display().to_string(),
            "--no-cache-volumes".to_string(),
        ];
        if zip {
            args.push("--zip".to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = p.build(&args);
        assert!(run.has_line("swapping"), "build {i}: {}", run.debug());
        let mut found = files_containing(out.path(), &secret.marker);
        found.extend(files_containing(cache.path(), &secret.marker));
        if run.stdout.contains(&secret.marker) || run.stderr.contains(&secret.marker) {
            found.push("the build's events".to_string());
        }
        if !found.is_empty() {
            leaks.push(format!("build {i}: {found:?}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "the host file reached the output in {} of {ITERATIONS} builds: {leaks:#?}",
        leaks.len()
    );
}

/// No process of the build runs while the host reads the source: a counter a background
/// process keeps bumping is collected exactly as the build left it in the source.
#[test]
fn no_build_process_runs_while_artifacts_are_collected() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - |
        ( i=0; while :; do i=$((i+1)); echo $i > counter.tmp; mv -f counter.tmp counter; done ) </dev/null >/dev/null 2>&1 &
        while [ ! -f counter ]; do :; done
artifacts:
  files:
    - counter
"#,
    );
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = p.build(&["--artifacts", &out.path().display().to_string()]);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    let collected = std::fs::read_to_string(out.path().join("primary/counter"))
        .unwrap_or_else(|e| panic!("{e}\n{}", run.debug()));
    let left = std::fs::read_to_string(p.path().join("counter")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        collected, left,
        "the counter moved on after the artifact was collected: a build process was still running"
    );
}
