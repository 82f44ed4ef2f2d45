//! `docker buildx` through runner's gate: BuildKit's gRPC API (`POST /grpc`, what
//! `docker buildx build` with the docker driver speaks, and plain `docker build` when the
//! buildx plugin is installed) is served call by call, so a build can neither run a step
//! in the host's network namespace (`--network host`, the `network.host` entitlement) nor
//! write a `runner/…` image name through an exporter, while ordinary builds keep working
//! (streams and trailers forwarded).
//!
//! The build image is runner/debian:bookworm with the host's docker client and Debian's
//! buildx plugin (docker-buildx from trixie, its SHA256 pinned below), downloaded once
//! per machine into ~/.cache/runner-test and kept by tag.

use crate::build_docker::{docker, unique, which_docker};
use crate::support::{stack, Project, Run};
use sha2::{Digest, Sha256};
use std::process::Command;
use std::sync::OnceLock;

/// Bump when the Dockerfile or the plugin changes.
const BUILDX_IMAGE: &str = "runner-test/buildx:1";

/// Debian trixie's docker-buildx (`Filename` and `SHA256` of its `Packages` index),
/// under a mirror: RUNNER_DEBIAN_MIRROR (as for scripts/images.sh), else deb.debian.org,
/// else Debian's snapshot archive for when the pool has moved on.
const DEB_PATH: &str = "pool/main/d/docker-buildx/docker-buildx_0.13.1+ds1-3_amd64.deb";
const DEB_MIRRORS: [&str; 2] = [
    "http://deb.debian.org/debian",
    "http://snapshot.debian.org/archive/debian/20250415T000000Z",
];
const DEB_SHA256: &str = "fcf8c48204d1603c8f209451d7827eb91bf30759578baf7704e9e1a87e5f1d7f";

const DOCKERFILE: &str = "FROM runner/debian:bookworm
COPY docker /usr/local/bin/docker
COPY docker-buildx.deb /tmp/docker-buildx.deb
RUN dpkg-deb -x /tmp/docker-buildx.deb /tmp/bx \\
 && install -D -m 0755 /tmp/bx/usr/libexec/docker/cli-plugins/docker-buildx \\
      /usr/libexec/docker/cli-plugins/docker-buildx \\
 && rm -rf /tmp/bx /tmp/docker-buildx.deb \\
 && docker buildx version
";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The plugin's .deb, from the cache or downloaded (and checked) into it.
fn buildx_deb() -> Result<Vec<u8>, String> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?
        .join("runner-test");
    let file = cache.join("docker-buildx_0.13.1+ds1-3_amd64.deb");
    if let Ok(bytes) = std::fs::read(&file) {
        if sha256_hex(&bytes) == DEB_SHA256 {
            return Ok(bytes);
        }
    }
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let part = cache.join(format!("docker-buildx.deb.{}", std::process::id()));
    let mut errors = Vec::new();
    let mirrors = std::env::var("RUNNER_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.trim().is_empty())
        .into_iter()
        .chain(DEB_MIRRORS.iter().map(|m| m.to_string()));
    for mirror in mirrors {
        let url = format!("{}/{DEB_PATH}", mirror.trim_end_matches('/'));
        let out = Command::new("curl")
            .args(["-fsSL", "--retry", "3", "-o"])
            .arg(&part)
            .arg(&url)
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        if !out.status.success() {
            errors.push(format!(
                "{url}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        let bytes = std::fs::read(&part).map_err(|e| format!("{}: {e}", part.display()))?;
        let got = sha256_hex(&bytes);
        if got != DEB_SHA256 {
            errors.push(format!("{url}: SHA256 {got}, expected {DEB_SHA256}"));
            continue;
        }
        std::fs::rename(&part, &file).map_err(|e| format!("{}: {e}", file.display()))?;
        return Ok(bytes);
    }
    let _ = std::fs::remove_file(&part);
    Err(format!(
        "cannot download docker-buildx: {}",
        errors.join("; ")
    ))
}

/// The build image with docker and buildx, built first when missing.
fn buildx_image() -> &'static str {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        stack();
        if docker(&["image", "inspect", BUILDX_IMAGE]).0 {
            return Ok(());
        }
        let deb = buildx_deb()?;
        let ctx = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        std::fs::write(ctx.path().join("docker-buildx.deb"), deb).map_err(|e| e.to_string())?;
        std::fs::copy(which_docker(), ctx.path().join("docker")).map_err(|e| e.to_string())?;
        std::fs::write(ctx.path().join("Dockerfile"), DOCKERFILE).map_err(|e| e.to_string())?;
        let out = Command::new("docker")
            .args(["build", "-q", "--force-rm", "-t", BUILDX_IMAGE])
            .arg(ctx.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .map_err(|e| format!("docker build: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building {BUILDX_IMAGE} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    match r {
        Ok(()) => BUILDX_IMAGE,
        Err(e) => panic!("the buildx test image is unavailable: {e}"),
    }
}

fn build(p: &Project) -> Run {
    let mut c = p.runner();
    c.args(["build", "--json", "--privileged", "--image", buildx_image()])
        .arg("--source")
        .arg(p.path());
    Run::from(c.output().unwrap_or_else(|e| panic!("run runner: {e}")))
}

fn image_exists(name: &str) -> bool {
    docker(&["image", "inspect", name]).0
}

/// A RUN step that says whether it sees the host's network: the host has the engine's
/// `docker0` bridge, a build step's own namespace does not. The marker is assembled by
/// the shell so BuildKit's echo of the command line never contains it.
fn network_probe_dockerfile(token: &str) -> String {
    format!(
        "FROM runner/busybox:latest\n\
         RUN echo {token}; ip -o link > /tmp/links; \
         if grep -q docker0 /tmp/links; then echo SAW-HOST-$(echo NETWORK); \
         else echo OWN-$(echo NAMESPACE); fi\n"
    )
}

#[test]
fn buildx_with_the_host_network_is_refused_by_the_gate() {
    let p = Project::new();
    p.write("Dockerfile", &network_probe_dockerfile(&unique("probe")));
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n\
         \x20     - docker buildx version\n\
         \x20     - docker buildx build --progress plain --network host . 2>&1 | sed 's/^/bx| /'\n\
         \x20     - docker buildx build --progress plain --allow security.insecure . 2>&1 | sed 's/^/insecure| /'\n",
    );
    let run = build(&p);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(
        !run.logs().iter().any(|l| l.contains("SAW-HOST-NETWORK")),
        "a BuildKit step ran in the host's network namespace:\n{}",
        run.debug()
    );
    for (prefix, entitlement) in [
        ("bx| ", "network.host"),
        ("insecure| ", "security.insecure"),
    ] {
        assert!(
            run.logs().iter().any(|l| l.starts_with(prefix)
                && l.contains(&format!(
                    "runner's Docker gate refuses BuildKit entitlement {entitlement}"
                ))),
            "{entitlement} was not refused by the gate:\n{}",
            run.debug()
        );
    }
}

#[test]
fn buildx_cannot_write_runners_own_images() {
    let (loaded, exported) = ("runner/gate-poison-bx:1", "runner/gate-poison-bx-out:1");
    let gone = || {
        for name in [loaded, exported] {
            let _ = docker(&["image", "rm", "--force", name]);
        }
    };
    gone();
    let p = Project::new();
    p.write(
        "Dockerfile",
        &format!(
            "FROM runner/busybox:latest\nRUN echo {} > /poison\n",
            unique("poison")
        ),
    );
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n\
             \x20     - docker buildx build --progress plain -t {loaded} --load . 2>&1 | sed 's/^/load| /'\n\
             \x20     - docker buildx build --progress plain --output type=image,name=docker.io/{exported} . 2>&1 | sed 's/^/output| /'\n"
        ),
    );
    let run = build(&p);
    let landed = (image_exists(loaded), image_exists(exported));
    gone();
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(!landed.0, "buildx --load wrote {loaded}:\n{}", run.debug());
    assert!(
        !landed.1,
        "buildx --output type=image wrote {exported}:\n{}",
        run.debug()
    );
    for prefix in ["load| ", "output| "] {
        assert!(
            run.logs().iter().any(|l| l.starts_with(prefix)
                && l.contains("runner's own base images")
                && l.contains("runner's Docker gate")),
            "{prefix}was not refused by the gate:\n{}",
            run.debug()
        );
    }
}

#[test]
fn buildx_builds_load_and_run_through_the_gate() {
    let p = Project::new();
    let tag = unique("gate-bx-app");
    let token = unique("bx-built");
    p.write("marker.txt", "copied-by-buildx\n");
    p.write(
        "Dockerfile",
        &format!(
            "FROM runner/busybox:latest\nCOPY marker.txt /marker.txt\nRUN echo {token} > /built\n"
        ),
    );
    // A step's own network namespace is the default: the probe prints its marker.
    p.write("probe/Dockerfile", &network_probe_dockerfile(&token));
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n\
             \x20     - docker buildx build --progress plain -t {tag}:1 --load .\n\
             \x20     - docker run --rm {tag}:1 cat /built /marker.txt\n\
             \x20     - docker build -q -t {tag}:2 . >/dev/null && echo plain-build-ok\n\
             \x20     - docker buildx build --progress plain probe 2>&1 | sed 's/^/probe| /'\n"
        ),
    );
    let run = build(&p);
    let _ = docker(&["rmi", &format!("{tag}:1"), &format!("{tag}:2")]);
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(run.has_line(&token), "{}", run.debug());
    assert!(run.has_line("copied-by-buildx"), "{}", run.debug());
    assert!(run.has_line("plain-build-ok"), "{}", run.debug());
    assert!(
        run.logs()
            .iter()
            .any(|l| l.starts_with("probe| ") && l.contains("OWN-NAMESPACE")),
        "{}",
        run.debug()
    );
}

/// POSTs a file to the gate's socket (perl: the build image has no curl) and prints the
/// answer: `post.pl PATH FILE`.
const POST_PL: &str = r#"use strict;
use IO::Socket::UNIX;
my ($path, $file) = @ARGV;
open(my $fh, '<:raw', $file) or die "$file: $!";
my $body = do { local $/; <$fh> };
close $fh;
my $s = IO::Socket::UNIX->new(Peer => '/var/run/docker.sock') or die "connect: $!";
binmode $s;
print $s "POST $path HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\n"
  . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n" . $body;
while (my $line = <$s>) { print $line; }
"#;

/// `%XX` for everything but unreserved characters.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn buildkit_through_the_classic_build_endpoint_cannot_name_runners_images_or_use_the_host_network()
{
    // `/build?version=2` is BuildKit behind the classic endpoint: it needs no session
    // when the context is uploaded, and its `outputs` name the image (no `t` needed).
    let (poison, own) = ("runner/gate-poison-v2:1", unique("gate-v2-own"));
    let gone = || {
        let _ = docker(&["image", "rm", "--force", poison]);
        let _ = docker(&["image", "rm", "--force", &format!("{own}:1")]);
    };
    gone();
    let outputs = |name: &str| {
        query_escape(&format!(
            r#"[{{"Type":"moby","Attrs":{{"name":"{name}"}}}}]"#
        ))
    };
    let p = Project::new();
    p.write("post.pl", POST_PL);
    p.write(
        "ctx/Dockerfile",
        &format!(
            "FROM runner/busybox:latest\nRUN echo {} > /v2\n",
            unique("v2")
        ),
    );
    // A step asking for the host's network itself: the engine refuses it without the
    // network.host entitlement (or, before dockerfile 1.3, does not know the flag).
    p.write(
        "nethost/Dockerfile",
        &network_probe_dockerfile(&unique("v2-probe")).replace("RUN ", "RUN --network=host "),
    );
    // The same probe without the flag: its marker shows the decoding below finds one.
    p.write(
        "probe/Dockerfile",
        &network_probe_dockerfile(&unique("v2-probe")),
    );
    p.write(
        "buildspec.yml",
        &format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n\
             \x20     - tar -C ctx -cf ctx.tar Dockerfile\n\
             \x20     - tar -C nethost -cf nethost.tar Dockerfile\n\
             \x20     - tar -C probe -cf probe.tar Dockerfile\n\
             \x20     - perl post.pl '/v1.41/build?version=2' probe.tar | sed 's/^/probe| /'\n\
             \x20     - perl post.pl '/v1.41/build?version=2' nethost.tar | sed 's/^/nethost| /'\n\
             \x20     - perl post.pl '/v1.41/build?version=2&networkmode=host' ctx.tar | sed 's/^/netmode| /'\n\
             \x20     - perl post.pl '/v1.41/build?version=2&outputs={}' ctx.tar | grep -v buildkit.trace | sed 's/^/poison| /'\n\
             \x20     - perl post.pl '/v1.41/build?version=2&outputs={}' ctx.tar | grep -v buildkit.trace | sed 's/^/own| /'\n",
            outputs(poison),
            outputs(&format!("{own}:1")),
        ),
    );
    let run = build(&p);
    let landed = (image_exists(poison), image_exists(&format!("{own}:1")));
    gone();
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    assert!(
        !landed.0,
        "/build?version=2 outputs wrote {poison}:\n{}",
        run.debug()
    );
    assert!(
        run.logs().iter().any(|l| l.starts_with("poison| ")
            && l.contains("runner's own base images")
            && l.contains("runner's Docker gate")),
        "the outputs name was not refused by the gate:\n{}",
        run.debug()
    );
    // BuildKit's progress is base64 in `moby.buildkit.trace` records: look for the
    // marker there too.
    let decoded = |prefix: &str| -> Vec<String> {
        run.logs()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .flat_map(|l| l.split('"').map(str::to_string).collect::<Vec<_>>())
            .filter_map(|field| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(field).ok()
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    };
    assert!(
        decoded("probe| ")
            .iter()
            .any(|l| l.contains("OWN-NAMESPACE")),
        "the probe's marker was not found in BuildKit's progress:\n{}",
        run.debug()
    );
    let decoded = decoded("nethost| ");
    assert!(
        !run.logs().iter().any(|l| l.contains("SAW-HOST-NETWORK"))
            && !decoded.iter().any(|l| l.contains("SAW-HOST-NETWORK")),
        "RUN --network=host saw the host's network through /build?version=2:\n{}",
        run.debug()
    );
    assert!(
        run.logs()
            .iter()
            .any(|l| l.starts_with("nethost| ") && l.contains("errorDetail")),
        "RUN --network=host did not fail:\n{}",
        run.debug()
    );
    assert!(
        run.logs()
            .iter()
            .any(|l| l.starts_with("netmode| ") && l.contains("--network host is not allowed")),
        "{}",
        run.debug()
    );
    // The same request with a name of the build's own works: the check is not a wall.
    assert!(
        landed.1,
        "/build?version=2 with outputs failed:\n{}",
        run.debug()
    );
}
