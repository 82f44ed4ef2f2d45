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

/// Containers whose build id belongs to `project` (any state).
fn project_containers(project: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=io.runner.build-id",
            "--format",
            "{{.ID}} {{.Label \"io.runner.build-id\"}}",
        ])
        .output()
        .unwrap_or_else(|e| panic!("docker ps: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, id)| id.starts_with(&format!("{project}:")))
        .map(|(c, _)| c.to_string())
        .collect()
}

/// A container as runner labels its own, never started.
fn create_labelled(project: &str, owner: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["create", "--label"])
        .arg(format!("io.runner.build-id={project}:left-behind"))
        .args(["--label", &format!("io.runner.owner={owner}")])
        .args(["--label", &format!("io.runner.project={project}")])
        .args([crate::support::IMAGE, "true"])
        .output()
        .unwrap_or_else(|e| panic!("docker create: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn remove_containers(ids: &[String]) {
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(ids)
            .output();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// `runner build` stopped (SIGTERM) right after it starts can leave a container that was
/// created and never started; the project's next build removes it, and any container of
/// the project whose runner is gone, but never one a live runner owns.
#[test]
fn the_next_build_removes_containers_left_behind_but_not_a_live_builds() {
    let project = format!("stale-{:08x}", rand::random::<u32>());
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo built\n",
    );
    let build_args = [
        "build",
        "--json",
        "--image",
        crate::support::IMAGE,
        "--project",
    ];
    // SIGTERM at several short delays after start (CodeBuild-like stop of a CLI run).
    for delay_ms in [10u64, 25, 40, 55, 70, 90, 120, 160, 220, 300] {
        let mut child = p
            .runner()
            .args(build_args)
            .arg(&project)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn runner: {e}"));
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    // Left behind for certain: a never-started container of a runner that is gone (a
    // reaped child's pid), and one of a runner that lives (this test process).
    let mut dead = std::process::Command::new("true")
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let dead_pid = dead.id();
    let _ = dead.wait();
    let orphan = create_labelled(&project, &format!("{}:{dead_pid}", hostname()));
    let live = create_labelled(&project, &format!("{}:{}", hostname(), std::process::id()));

    let run = build_project(&p, &project);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    let left = project_containers(&project);
    remove_containers(&left);
    assert_eq!(
        left,
        vec![live.chars().take(12).collect::<String>()],
        "only the live runner's container may remain (orphan {orphan})"
    );
}

/// Two builds of one project at once: the second never removes the first's container.
#[test]
fn a_concurrent_build_of_the_project_keeps_its_container() {
    let project = format!("conc-{:08x}", rand::random::<u32>());
    let slow = Project::new();
    slow.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - while [ ! -f go ]; do sleep 0.1; done\n      - echo slow done\n",
    );
    let first = slow
        .runner()
        .args([
            "build",
            "--json",
            "--image",
            crate::support::IMAGE,
            "--project",
        ])
        .arg(&project)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn runner: {e}"));
    // Wait (bounded) until the first build's container exists.
    let mut waited = 0;
    while project_containers(&project).is_empty() {
        assert!(waited < 600, "the first build's container never appeared");
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    let fast = Project::new();
    fast.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo fast\n",
    );
    let second = build_project(&fast, &project);
    assert_eq!(second.status(), "SUCCEEDED", "{}", second.debug());
    // Let the first build finish: it must still have its container to do so.
    std::fs::write(slow.path().join("go"), "").unwrap_or_else(|e| panic!("{e}"));
    let out = first.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let run = crate::support::Run::from(out);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(run.has_line("slow done"), "{}", run.debug());
}

/// `runner build --json --project NAME` on the project's buildspec.
fn build_project(p: &Project, project: &str) -> crate::support::Run {
    let out = p
        .runner()
        .args([
            "build",
            "--json",
            "--image",
            crate::support::IMAGE,
            "--project",
            project,
        ])
        .output()
        .unwrap_or_else(|e| panic!("run runner: {e}"));
    crate::support::Run::from(out)
}
