//! Docker inside the build through runner's gate (`--privileged` without a privileged
//! container): `docker build/run/tag` work, the source can be mounted, and the build sees
//! and touches only what it created; everything it created except images is removed
//! when it ends, however it ends (kill -9 of runner included, by the next build).

use crate::support::{stack, Project, Run};
use std::process::Command;
use std::sync::OnceLock;

/// runner/debian:bookworm plus the host's static docker client (no buildx plugin on
/// this host: `docker build` uses the engine's classic builder).
const DOCKER_IMAGE: &str = "runner-test/docker-cli:1";

pub(crate) fn docker(args: &[&str]) -> (bool, String) {
    let o = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
    )
}

fn docker_image() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        stack();
        if docker(&["image", "inspect", DOCKER_IMAGE]).0 {
            return;
        }
        let cli = which_docker();
        let ctx = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::copy(&cli, ctx.path().join("docker"))
            .unwrap_or_else(|e| panic!("copy {}: {e}", cli.display()));
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM runner/debian:bookworm\nCOPY docker /usr/local/bin/docker\n",
        )
        .unwrap_or_else(|e| panic!("write Dockerfile: {e}"));
        let st = Command::new("docker")
            .args(["build", "-q", "-t", DOCKER_IMAGE])
            .arg(ctx.path())
            .env("DOCKER_BUILDKIT", "0")
            .status()
            .unwrap_or_else(|e| panic!("docker build: {e}"));
        assert!(st.success(), "building {DOCKER_IMAGE} failed");
    });
    DOCKER_IMAGE
}

pub(crate) fn which_docker() -> std::path::PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v docker"])
        .output()
        .unwrap_or_else(|e| panic!("command -v docker: {e}"));
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!p.is_empty(), "no docker client on this host");
    std::path::PathBuf::from(p)
}

fn build(p: &Project, extra: &[&str]) -> Run {
    let mut c = p.runner();
    c.args(["build", "--json", "--privileged", "--image", docker_image()])
        .arg("--source")
        .arg(p.path())
        .args(extra);
    Run::from(c.output().unwrap_or_else(|e| panic!("run runner: {e}")))
}

/// Objects of one kind carrying `label` (`docker ps -a` / `volume ls` / `network ls`).
fn labelled(kind: &str, label: &str) -> Vec<String> {
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-aq", "--filter"],
        "volume" => vec!["volume", "ls", "-q", "--filter"],
        _ => vec!["network", "ls", "-q", "--filter"],
    };
    let filter = format!("label={label}");
    let mut all = args.clone();
    all.push(&filter);
    docker(&all)
        .1
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn leftovers(label: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["container", "volume", "network"] {
        for id in labelled(kind, label) {
            out.push(format!("{kind} {id}"));
        }
    }
    out
}

/// A container no build owns (another user's, say), removed when dropped.
struct Foreign(String);

impl Foreign {
    fn new(name: &str) -> Self {
        let (ok, _) = docker(&[
            "run",
            "-d",
            "--name",
            name,
            crate::support::IMAGE,
            "sleep",
            "600",
        ]);
        assert!(ok, "could not start the foreign container {name}");
        Foreign(name.to_string())
    }

    fn exists_running(&self) -> bool {
        docker(&["inspect", "-f", "{{.State.Running}}", &self.0]).1 == "true"
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

pub(crate) fn unique(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}-{:x}", n & 0xffff_ffff)
}

#[test]
fn docker_build_run_and_tag_work_inside_a_build_and_the_source_can_be_mounted() {
    let p = Project::new();
    let tag = unique("gate-test-app");
    p.write("marker.txt", "the-source-is-mounted\n");
    p.write(
        "Dockerfile",
        "FROM runner/busybox:latest\nCOPY marker.txt /marker.txt\nRUN echo built-in-image > /built\n",
    );
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n\
             \x20     - echo \"host=$DOCKER_HOST\"\n\
             \x20     - docker build -q -t {tag}:1 .\n\
             \x20     - docker run --rm {tag}:1 cat /built /marker.txt\n\
             \x20     - docker run --rm -v \"$PWD:/src\" -w /src {tag}:1 cat marker.txt\n\
             \x20     - docker tag {tag}:1 {tag}:2\n\
             \x20     - docker image inspect -f 'tagged={{{{.Id}}}}' {tag}:2\n"
        ),
    );
    let run = build(&p, &[]);
    let _ = docker(&["rmi", &format!("{tag}:1"), &format!("{tag}:2")]);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(
        run.has_line("host=unix:///var/run/docker.sock"),
        "{}",
        run.debug()
    );
    assert!(run.has_line("built-in-image"), "{}", run.debug());
    // Twice: from the image's COPY and from the bind-mounted source directory.
    let marker = run
        .logs()
        .iter()
        .filter(|l| l.as_str() == "the-source-is-mounted")
        .count();
    assert_eq!(marker, 2, "{}", run.debug());
    assert!(
        run.logs().iter().any(|l| l.starts_with("tagged=sha256:")),
        "{}",
        run.debug()
    );
    // Nothing the build created is left, the build container included.
    assert!(leftovers(&format!("io.runner.build-id={}", run.build_id())).is_empty());
}

#[test]
fn a_build_sees_and_touches_only_its_own_containers() {
    let p = Project::new();
    let foreign = Foreign::new(&unique("gate-foreign"));
    let f = &foreign.0;
    let mine = unique("gate-mine");
    // Each refused command prints the engine's error (the gate's message) and the build
    // carries on; the foreign container's name must never show up in a listing.
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n\
             \x20     - docker run -d --name {mine} runner/busybox:latest sleep 600\n\
             \x20     - echo \"ps=$(docker ps -a --format '{{{{.Names}}}}' | tr '\\n' ' ')\"\n\
             \x20     - docker rm -f {f} 2>&1 | sed 's/^/rm| /'\n\
             \x20     - docker stop {f} 2>&1 | sed 's/^/stop| /'\n\
             \x20     - docker exec {f} true 2>&1 | sed 's/^/exec| /'\n\
             \x20     - docker inspect {f} 2>&1 | sed 's/^/inspect| /'\n\
             \x20     - docker exec {mine} echo exec-in-own-container\n\
             \x20     - docker stop -t 1 {mine} >/dev/null && echo stopped-own\n"
        ),
    );
    let run = build(&p, &[]);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(run.has_line(&format!("ps={mine} ")), "{}", run.debug());
    for op in ["rm", "stop", "exec", "inspect"] {
        assert!(
            run.logs().iter().any(|l| l.starts_with(&format!("{op}| "))
                && l.contains("does not belong to this build")),
            "{op} of a foreign container was not refused by the gate:\n{}",
            run.debug()
        );
    }
    assert!(run.has_line("exec-in-own-container"), "{}", run.debug());
    assert!(run.has_line("stopped-own"), "{}", run.debug());
    assert!(
        foreign.exists_running(),
        "the foreign container was touched"
    );
}

#[test]
fn privileged_host_namespace_and_host_path_containers_are_refused() {
    let p = Project::new();
    let cases = [
        ("privileged", "--privileged"),
        ("nethost", "--network host"),
        ("pidhost", "--pid host"),
        ("hostroot", "-v /:/host"),
        ("socket", "-v /var/run/docker.sock:/var/run/docker.sock"),
        ("capadd", "--cap-add SYS_ADMIN"),
        ("seccomp", "--security-opt seccomp=unconfined"),
    ];
    let mut cmds = String::new();
    for (name, flags) in cases {
        cmds.push_str(&format!(
            "      - docker run --rm {flags} runner/busybox:latest echo RAN-{name} 2>&1 | sed 's/^/{name}| /'\n"
        ));
    }
    // A link to / in the source is no way out either: only the source itself mounts.
    cmds.push_str("      - ln -s / rootlink\n");
    cmds.push_str(
        "      - docker run --rm -v \"$PWD/rootlink:/host\" runner/busybox:latest ls /host 2>&1 | sed 's/^/link| /'\n",
    );
    cmds.push_str("      - docker run --rm runner/busybox:latest echo plain-container-ran\n");
    p.write(
        "buildspec.yml",
        &format!("version: 0.2\nphases:\n  build:\n    commands:\n{cmds}"),
    );
    let run = build(&p, &[]);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(run.has_line("plain-container-ran"), "{}", run.debug());
    for (name, _) in cases.iter().chain([("link", "")].iter()) {
        assert!(
            !run.logs()
                .iter()
                .any(|l| l.contains(&format!("RAN-{name}"))),
            "{name} ran:\n{}",
            run.debug()
        );
        assert!(
            run.logs()
                .iter()
                .any(|l| l.starts_with(&format!("{name}| "))
                    && l.contains("not allowed through runner's Docker gate")),
            "{name} was not refused by the gate:\n{}",
            run.debug()
        );
    }
}

#[test]
fn a_build_cannot_overwrite_runners_own_images() {
    // Names in runner's namespace that no build uses, so a failure here poisons nothing.
    let (tagged, built) = ("runner/gate-poison-tag:1", "runner/gate-poison-build:1");
    let gone = || {
        for name in [tagged, built] {
            let _ = Command::new("docker")
                .args(["image", "rm", "--force", name])
                .output();
        }
    };
    gone();
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n\
             \x20     - docker tag runner/busybox:latest {tagged} 2>&1 | sed 's/^/tag| /'\n\
             \x20     - printf 'FROM runner/busybox:latest\\n' | docker build -q -t {built} - 2>&1 | sed 's/^/build| /'\n\
             \x20     - docker save runner/busybox:latest -o img.tar && docker load -i img.tar 2>&1 | sed 's/^/load| /'\n\
             \x20     - docker tag runner/busybox:latest gate-own-name:1 && echo own-name-tagged\n"
        ),
    );
    let run = build(&p, &[]);
    let exists = |name: &str| {
        Command::new("docker")
            .args(["image", "inspect", name])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let (tag_landed, build_landed) = (exists(tagged), exists(built));
    gone();
    let _ = Command::new("docker")
        .args(["image", "rm", "gate-own-name:1"])
        .output();
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(run.has_line("own-name-tagged"), "{}", run.debug());
    assert!(!tag_landed, "docker tag wrote {tagged}:\n{}", run.debug());
    assert!(
        !build_landed,
        "docker build -t wrote {built}:\n{}",
        run.debug()
    );
    for what in ["tag", "build", "load"] {
        assert!(
            run.logs()
                .iter()
                .any(|l| l.starts_with(&format!("{what}| "))
                    && l.contains("not allowed through runner's Docker gate")),
            "{what} was not refused by the gate:\n{}",
            run.debug()
        );
    }
}

/// A buildspec that creates a container, a volume and a network through the gate,
/// prints CREATED, then runs `then`.
fn creating_buildspec(then: &str) -> String {
    // Names unique to the build: tests run side by side, and another build's volume of
    // the same name is (rightly) refused.
    let (vol, net, data) = (unique("gate-vol"), unique("gate-net"), unique("gate-data"));
    format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n\
         \x20     - docker run -d runner/busybox:latest sleep 600 >/dev/null\n\
         \x20     - docker volume create {vol} >/dev/null\n\
         \x20     - docker network create {net} >/dev/null\n\
         \x20     - docker run -d -v {data}:/data runner/busybox:latest sleep 600 >/dev/null\n\
         \x20     - echo CREATED\n\
         \x20     - {then}\n"
    )
}

fn assert_nothing_left(run: &Run) {
    assert!(run.has_line("CREATED"), "{}", run.debug());
    let left = leftovers(&format!("io.runner.build-id={}", run.build_id()));
    assert!(left.is_empty(), "left behind: {left:?}\n{}", run.debug());
}

#[test]
fn what_a_build_created_is_removed_after_success_failure_and_timeout() {
    let p = Project::new();
    p.write("buildspec.yml", &creating_buildspec("true"));
    let run = build(&p, &[]);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert_nothing_left(&run);

    p.write("buildspec.yml", &creating_buildspec("false"));
    let run = build(&p, &[]);
    assert_eq!(run.status(), "FAILED", "{}", run.debug());
    assert_nothing_left(&run);

    p.write("buildspec.yml", &creating_buildspec("sleep 600"));
    let run = build(&p, &["--timeout", "0.5"]);
    assert_eq!(run.status(), "TIMED_OUT", "{}", run.debug());
    assert_nothing_left(&run);
}

#[test]
fn what_a_killed_runner_left_is_removed_by_the_next_build_of_the_project() {
    let p = Project::new();
    let project = unique("gate-kill");
    p.write("buildspec.yml", &creating_buildspec("sleep 600"));
    let mut c = p.runner();
    c.args([
        "build",
        "--json",
        "--privileged",
        "--project",
        &project,
        "--image",
        docker_image(),
        "--source",
    ])
    .arg(p.path())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = crate::support::KillOnDrop(c.spawn().unwrap_or_else(|e| panic!("spawn: {e}")));
    let gate_label = format!("io.runner.project={project}");
    // Waits (not a timed assertion: the build sleeps for ten minutes) until the build has
    // made its objects: two containers, two volumes, a network.
    let mut made = false;
    for _ in 0..600 {
        let containers = labelled("container", &gate_label)
            .into_iter()
            .filter(|id| {
                docker(&[
                    "inspect",
                    "-f",
                    "{{index .Config.Labels \"io.runner.gate\"}}",
                    id,
                ])
                .1
                .len()
                    > 1
            })
            .count();
        if containers == 2
            && labelled("volume", &gate_label).len() == 2
            && labelled("network", &gate_label).len() == 1
        {
            made = true;
            break;
        }
        if matches!(child.0.try_wait(), Ok(Some(_))) {
            break; // the build ended without making them
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        made,
        "the build never created its objects: {:?}",
        leftovers(&gate_label)
    );
    let _ = child.0.kill(); // SIGKILL
    let _ = child.0.wait();
    assert!(
        !leftovers(&gate_label).is_empty(),
        "nothing was left to sweep (the test proves nothing)"
    );

    // The next build of the project (no docker at all) sweeps them.
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo next\n",
    );
    let mut c = p.runner();
    c.args([
        "build",
        "--json",
        "--project",
        &project,
        "--image",
        crate::support::IMAGE,
        "--source",
    ])
    .arg(p.path());
    let run = Run::from(c.output().unwrap_or_else(|e| panic!("run runner: {e}")));
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    let left = leftovers(&gate_label);
    assert!(left.is_empty(), "left after the next build: {left:?}");
    crate::support::remove_cache_volumes(&project);
}

#[test]
fn a_push_to_a_mapped_registry_from_inside_the_build_lands_with_the_engines_digest() {
    use crate::support_registry::{Registry, ECR_HOST, ECR_PASSWORD};
    let reg = Registry::start(true);
    let p = Project::new();
    let repo = unique("gate-app");
    p.write(
        "Dockerfile",
        &format!("FROM runner/busybox:latest\nRUN echo {repo} > /id\n"),
    );
    // The classic "ECR login, build, push" buildspec, unmodified: the registry host is
    // ECR's, runner maps it to the local registry as it does for its own push.
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  pre_build:\n    commands:\n\
             \x20     - echo \"$ECR_TOKEN\" | docker login --username AWS --password-stdin {ECR_HOST}\n\
             \x20 build:\n    commands:\n\
             \x20     - docker build -q -t {ECR_HOST}/{repo}:1 .\n\
             \x20     - docker push {ECR_HOST}/{repo}:1\n\
             \x20     - docker image inspect -f '{{{{range .RepoDigests}}}}digest={{{{.}}}}{{{{end}}}}' {ECR_HOST}/{repo}:1\n\
             \x20     - docker rmi {ECR_HOST}/{repo}:1 >/dev/null\n\
             \x20     - docker rmi runner/busybox:latest 2>&1 | sed 's/^/rmi-base| /'\n\
             \x20     - docker pull -q {ECR_HOST}/{repo}:1\n\
             \x20     - docker run --rm {ECR_HOST}/{repo}:1 cat /id\n"
        ),
    );
    let run = build(
        &p,
        &[
            "--registry-endpoint",
            &reg.ecr_endpoint(),
            "--env",
            &format!("ECR_TOKEN={ECR_PASSWORD}"),
        ],
    );
    let _ = docker(&["rmi", &format!("{ECR_HOST}/{repo}:1")]);
    let _ = docker(&["rmi", &format!("{}/{repo}:1", reg.addr())]);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(run.has_line("Login Succeeded"), "{}", run.debug());
    assert!(run.has_line(&repo), "pulled back and ran: {}", run.debug());
    assert!(
        run.logs()
            .iter()
            .any(|l| l.starts_with("rmi-base| ") && l.contains("not allowed")),
        "{}",
        run.debug()
    );
    let engine_digest = run
        .logs()
        .iter()
        .find_map(|l| l.strip_prefix("digest=").map(str::to_string))
        .unwrap_or_else(|| panic!("no RepoDigests: {}", run.debug()));
    // What the registry holds under the tag.
    let out = Command::new("curl")
        .args([
            "-sfI",
            "-u",
            &format!("AWS:{ECR_PASSWORD}"),
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            &format!("{}/v2/{repo}/manifests/1", reg.url()),
        ])
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let registry_digest = headers
        .lines()
        .find_map(|l| l.strip_prefix("docker-content-digest:"))
        .map(|d| d.trim().to_string())
        .unwrap_or_else(|| panic!("the registry has no {repo}:1: {headers}"));
    assert_eq!(
        engine_digest,
        format!("{}/{repo}@{registry_digest}", reg.addr()),
        "{}",
        run.debug()
    );
}
