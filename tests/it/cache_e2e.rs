//! The buildspec cache through `runner build`, against the real engine.

use crate::support::{Project, Run};
use serde_json::Value;

const BUILDSPEC: &str = r#"version: 0.2
phases:
  install:
    commands:
      - |
        if [ -f deps/lib.txt ]; then
          echo "deps: restored $(cat deps/lib.txt)"
        else
          mkdir -p deps/bin && echo "lib-$(cat lock.txt)" > deps/lib.txt
          printf '#!/bin/sh\necho tool\n' > deps/bin/tool && chmod 755 deps/bin/tool
          ln -s lib.txt deps/link && echo "deps: downloaded"
        fi
      - |
        if [ -f /root/.cache/tool/x ]; then echo "home: restored"; else
          mkdir -p /root/.cache/tool && echo x > /root/.cache/tool/x && echo "home: fresh"
        fi
  build:
    commands:
      - deps/bin/tool
      - cat deps/link
cache:
  key: deps-$(codebuild-hash-files lock.txt)
  fallback-keys:
    - deps-
  paths:
    - deps/**/*
    - /root/.cache/tool/**/*
"#;

fn cache_events(run: &Run) -> Vec<Value> {
    run.events
        .iter()
        .filter(|e| e["event"] == "cache")
        .cloned()
        .collect()
}

fn restore(run: &Run) -> Value {
    cache_events(run)
        .into_iter()
        .find(|e| e["action"] == "restore")
        .unwrap_or_else(|| panic!("no restore event: {}", run.debug()))
}

fn save(run: &Run) -> Value {
    cache_events(run)
        .into_iter()
        .find(|e| e["action"] == "save")
        .unwrap_or_else(|| panic!("no save event: {}", run.debug()))
}

fn project(lock: &str) -> Project {
    let p = Project::new();
    p.write("buildspec.yml", BUILDSPEC);
    p.write("lock.txt", lock);
    p
}

/// Copy mode, so that nothing a build leaves in the source directory survives to the next.
fn build(p: &Project, extra: &[&str]) -> Run {
    let mut args = vec!["--source-mode", "copy"];
    args.extend_from_slice(extra);
    let run = p.build(&args);
    assert_eq!(run.code, 0, "{}", run.debug());
    run
}

/// With the local cache volumes (the default) and with the archive alone.
#[test]
fn miss_then_hit_then_fallback_after_a_key_change() {
    for (mode, source) in [
        (&[][..], "volume"),
        (&["--no-cache-volumes"][..], "archive"),
    ] {
        miss_hit_fallback(mode, source);
    }
}

fn miss_hit_fallback(mode: &[&str], source: &str) {
    let build = |p: &Project, extra: &[&str]| {
        let args: Vec<&str> = mode.iter().chain(extra).copied().collect();
        build(p, &args)
    };
    let p = project("v1");
    let cold = build(&p, &[]);
    assert!(cold.has_line("deps: downloaded") && cold.has_line("home: fresh"));
    let r = restore(&cold);
    assert_eq!(r["hit"], false);
    let key = r["key"].as_str().unwrap_or("").to_string();
    assert!(key.starts_with("deps-") && key.len() == 5 + 64, "{key}");
    let s = save(&cold);
    assert_eq!(s["hit"], true, "{s}");
    assert_eq!(s["files"], 3, "lib.txt, bin/tool, /root/.cache/tool/x: {s}");

    let warm = build(&p, &[]);
    assert!(warm.has_line("deps: restored lib-v1"), "{}", warm.debug());
    assert!(warm.has_line("home: restored"));
    assert!(warm.has_line("tool"), "executable bit kept");
    assert!(warm.has_line("lib-v1"), "symlink kept");
    let r = restore(&warm);
    assert_eq!(
        (r["hit"].clone(), r["matched_key"].clone()),
        (Value::Bool(true), Value::String(key.clone()))
    );
    assert_eq!(r["source"], source, "{r}");
    assert_eq!(r["files"], 3, "{r}");
    assert_eq!(save(&warm)["hit"], false, "an exact hit is not saved again");

    // A new lockfile: a new key, restored from the newest `deps-` entry, then saved.
    p.write("lock.txt", "v2");
    let changed = build(&p, &[]);
    let r = restore(&changed);
    assert_eq!(r["hit"], true);
    assert_eq!(r["matched_key"], Value::String(key.clone()));
    assert_ne!(r["key"], Value::String(key));
    assert_eq!(r["source"], source, "{r}");
    assert!(changed.has_line("deps: restored lib-v1"));
    assert_eq!(save(&changed)["hit"], true);
}

/// A small image with content at a cache path, so that a reset volume can be seen to get
/// the image's content back. Built once per test run.
fn seeded_image() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    const TAG: &str = "runner-test/cache-seed:1";
    BUILT.get_or_init(|| {
        crate::support::stack();
        let ctx = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM {}\nRUN mkdir -p /opt/tool && echo from-image > /opt/tool/seed\n",
                crate::support::IMAGE
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new("docker")
            .args(["build", "-q", "-t", TAG])
            .arg(ctx.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap_or_else(|e| panic!("docker build: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    TAG
}

const VOLUME_BUILDSPEC: &str = r#"version: 0.2
phases:
  install:
    commands:
      - |
        echo "listing: $(ls /opt/tool | tr '\n' ' ')"
      - |
        if [ -f /opt/tool/dep-$LOCK ]; then echo "dep: restored"; else
          echo "dep: fetched"; echo $LOCK > /opt/tool/dep-$LOCK
        fi
  build:
    commands:
      - |
        if [ -n "$POISON" ]; then echo bad > /opt/tool/poison; false; fi
cache:
  key: tool-$LOCK
  paths:
    - /opt/tool/**/*
"#;

/// The local cache volumes: used as they are when they hold the key; reset to the image's
/// content (never another key's files) on a key change; not trusted after a failed build.
#[test]
fn cache_volumes_are_reused_for_their_key_and_reset_otherwise() {
    let image = seeded_image();
    let p = Project::new();
    p.write("buildspec.yml", VOLUME_BUILDSPEC);
    let run = |lock: &str, extra: &[&str]| {
        let out = p
            .runner()
            .args(["build", "--json", "--image", image, "--env"])
            .arg(format!("LOCK={lock}"))
            .args(extra)
            .arg("--source")
            .arg(p.path())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        Run::from(out)
    };
    let ok = |r: Run| {
        assert_eq!(r.code, 0, "{}", r.debug());
        r
    };
    let listing = |r: &Run| {
        r.events
            .iter()
            .filter(|e| e["event"] == "log")
            .filter_map(|e| e["line"].as_str())
            .find_map(|l| l.strip_prefix("listing: "))
            .unwrap_or_else(|| panic!("no listing: {}", r.debug()))
            .trim()
            .to_string()
    };

    let cold = ok(run("a", &[]));
    assert_eq!(
        listing(&cold),
        "seed",
        "a new volume has the image's content"
    );
    assert!(cold.has_line("dep: fetched"));
    let warm = ok(run("a", &[]));
    let r = restore(&warm);
    assert_eq!(
        (r["hit"].as_bool(), r["source"].as_str()),
        (Some(true), Some("volume")),
        "{r}"
    );
    assert_eq!(listing(&warm), "dep-a seed");
    assert!(warm.has_line("dep: restored"));

    // Another key and no fallback: the volume is put back to the image's content.
    let other = ok(run("b", &[]));
    assert_eq!(restore(&other)["hit"], false, "{}", other.debug());
    assert_eq!(listing(&other), "seed", "nothing of key a is left");
    assert!(other.has_line("dep: fetched"));

    // Back to key a: the volume holds b, the archive of a is extracted into it (reset).
    let back = ok(run("a", &[]));
    let r = restore(&back);
    assert_eq!(
        (r["hit"].as_bool(), r["source"].as_str()),
        (Some(true), Some("archive")),
        "{r}"
    );
    assert_eq!(listing(&back), "dep-a seed");

    // A failed build leaves a poisoned volume behind: the next build does not trust it.
    let failed = run("a", &["--env", "POISON=1"]);
    assert_eq!(failed.code, 1, "{}", failed.debug());
    let after = ok(run("a", &[]));
    let r = restore(&after);
    assert_eq!(
        (r["hit"].as_bool(), r["source"].as_str()),
        (Some(true), Some("archive")),
        "{r}"
    );
    assert_eq!(listing(&after), "dep-a seed", "the poison is gone");

    // One volume (one cache path), kept by the engine between builds.
    let name = p
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = runner::cache::volume_prefix(&name);
    let volumes = || {
        let out = std::process::Command::new("docker")
            .args(["volume", "ls", "-q", "--filter", &format!("name={prefix}")])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let kept = volumes();
    assert_eq!(kept.len(), 1, "{kept:?}");

    // A volume removed behind runner's back is not taken for the key it held.
    let rm = std::process::Command::new("docker")
        .args(["volume", "rm", &kept[0]])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let again = ok(run("a", &[]));
    let r = restore(&again);
    assert_eq!(r["source"], "archive", "{r}");
    assert_eq!(listing(&again), "dep-a seed");
    let kept = volumes();
    assert_eq!(kept.len(), 1, "{kept:?}");

    // `runner cache invalidate` (CodeBuild's InvalidateProjectCache) removes them; the
    // next build restores from the archive.
    let out = p
        .runner()
        .args(["cache", "invalidate", &name, "--json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let inv = Run::from(out);
    assert_eq!(inv.code, 0, "{}", inv.debug());
    assert_eq!(
        inv.events[0]["removed"],
        serde_json::json!(kept),
        "{}",
        inv.debug()
    );
    assert!(volumes().is_empty());
    let fresh = ok(run("a", &[]));
    let r = restore(&fresh);
    assert_eq!(r["source"], "archive", "{r}");
    assert_eq!(listing(&fresh), "dep-a seed");
}

#[test]
fn no_cache_and_failed_builds_leave_the_cache_alone() {
    let p = project("v1");
    let off = build(&p, &["--no-cache"]);
    assert!(cache_events(&off).is_empty());

    p.write(
        "buildspec.yml",
        &BUILDSPEC.replace(
            "      - cat deps/link\n",
            "      - cat deps/link\n      - \"false\"\n",
        ),
    );
    let failed = p.build(&["--source-mode", "copy"]);
    assert_eq!(failed.code, 1);
    let s = save(&failed);
    assert_eq!(s["hit"], false);
    assert!(s["note"]
        .as_str()
        .unwrap_or("")
        .contains("only after a successful build"));
    p.write("buildspec.yml", BUILDSPEC);
    let after = build(&p, &[]);
    assert_eq!(
        restore(&after)["hit"],
        false,
        "nothing was saved by the failed build"
    );
}

fn blobs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir.join("blobs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn a_corrupt_entry_is_a_miss_with_a_warning_and_is_removed() {
    let p = project("v1");
    let cache_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = cache_dir.path().display().to_string();
    // The archive alone: the volumes would serve the next build without reading it.
    let build = |p: &Project, extra: &[&str]| {
        let args: Vec<&str> = ["--no-cache-volumes"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        build(p, &args)
    };
    build(&p, &["--cache-dir", &dir]);
    let stored = blobs(cache_dir.path());
    assert_eq!(stored.len(), 1);
    // Truncate the entry, as a crash or a full disk would.
    let bytes = std::fs::read(&stored[0]).unwrap_or_default();
    std::fs::write(&stored[0], &bytes[..bytes.len() / 2]).unwrap_or_else(|e| panic!("{e}"));

    let run = build(&p, &["--cache-dir", &dir]);
    let r = restore(&run);
    assert_eq!(r["hit"], false, "{r}");
    assert!(r["note"].as_str().unwrap_or("").contains("damaged"), "{r}");
    assert!(
        run.has_line("deps: downloaded"),
        "the build ran on, as on a miss"
    );
    assert_eq!(save(&run)["hit"], true, "and saved a fresh entry");
    let third = build(&p, &["--cache-dir", &dir]);
    assert_eq!(restore(&third)["hit"], true);
}

#[test]
fn the_size_limit_evicts_least_recently_used_entries() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p big && head -c 700000 /dev/urandom > big/blob-$KEY\ncache:\n  key: k-$KEY\n  paths:\n    - big/**/*\n",
    );
    let cache_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = cache_dir.path().display().to_string();
    for key in ["a", "b"] {
        build(
            &p,
            &[
                "--cache-dir",
                &dir,
                "--cache-size",
                "1",
                "--env",
                &format!("KEY={key}"),
            ],
        );
    }
    // 1 MiB holds one ~700 KB entry: `a` was evicted when `b` was saved.
    let a = build(
        &p,
        &["--cache-dir", &dir, "--cache-size", "1", "--env", "KEY=a"],
    );
    assert_eq!(restore(&a)["hit"], false);
}

#[test]
fn concurrent_builds_saving_one_key_leave_a_valid_entry() {
    let p = project("v1");
    let cache_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = cache_dir.path().display().to_string();
    let spawn = || {
        p.runner()
            .args([
                "build",
                "--json",
                "--image",
                crate::support::IMAGE,
                "--source-mode",
                "copy",
                "--cache-dir",
                &dir,
                "--source",
            ])
            .arg(p.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let run = Run::from(child.wait_with_output().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(run.code, 0, "{}", run.debug());
    }
    // The entry itself, not the volumes that one of the two builds kept.
    let next = build(&p, &["--cache-dir", &dir, "--no-cache-volumes"]);
    assert_eq!(restore(&next)["hit"], true);
    assert_eq!(restore(&next)["source"], "archive");
    assert!(next.has_line("deps: restored lib-v1"));
}

#[test]
fn an_entry_that_would_write_outside_its_paths_is_refused() {
    use runner::cache::{CacheStore, LocalStore};
    use sha2::Digest;
    let p = project("v1");
    let cache_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = cache_dir.path().display().to_string();
    // A first build learns the key; then the entry under that key is replaced by a
    // hostile one that writes /etc/evil through a path outside the cache paths.
    let first = build(&p, &["--cache-dir", &dir]);
    let key = restore(&first)["key"].as_str().unwrap_or("").to_string();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append_data(&mut h, "etc/evil", &b"evil"[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = tar.into_inner().unwrap_or_else(|e| panic!("{e}"));
    let entry = zstd::encode_all(&raw[..], 3).unwrap_or_else(|e| panic!("{e}"));
    let sha = format!("{:x}", sha2::Sha256::digest(&entry));
    let store = LocalStore::new(cache_dir.path().to_path_buf()).unwrap_or_else(|e| panic!("{e}"));
    store
        .save(&key, &sha, &mut &entry[..])
        .unwrap_or_else(|e| panic!("{e}"));

    p.write(
        "buildspec.yml",
        &BUILDSPEC.replace(
            "      - cat deps/link\n",
            "      - cat deps/link\n      - test ! -e /etc/evil && echo clean\n",
        ),
    );
    let run = build(&p, &["--cache-dir", &dir, "--no-cache-volumes"]);
    let r = restore(&run);
    assert_eq!(r["hit"], false, "{r}");
    assert!(r["note"].as_str().unwrap_or("").contains("refused"), "{r}");
    assert!(run.has_line("clean"), "{}", run.debug());
}

/// `--cache-s3`: the same cache kept in S3 (moto), as a pool of runners shares it.
#[test]
fn the_cache_round_trips_through_s3() {
    let moto = crate::support_moto::moto_s3();
    let url = format!(
        "s3://{}/runner-e2e-{}",
        moto.fixture("bucket"),
        std::process::id()
    );
    let run = |p: &Project| {
        let out = p
            .runner()
            .args([
                "build",
                "--json",
                "--image",
                crate::support::IMAGE,
                "--source-mode",
                "copy",
                "--project",
                "pooled",
                "--cache-s3",
                &url,
                "--source",
            ])
            .arg(p.path())
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        Run::from(out)
    };
    let _volumes = crate::support::CacheVolumes("pooled".into());
    // Two "machines": separate data directories, one shared bucket.
    let first = project("v1");
    let cold = run(&first);
    assert_eq!(cold.code, 0, "{}", cold.debug());
    assert_eq!(restore(&cold)["hit"], false);
    assert_eq!(save(&cold)["hit"], true, "{}", save(&cold));
    let second = project("v1");
    let warm = run(&second);
    assert_eq!(warm.code, 0, "{}", warm.debug());
    assert_eq!(restore(&warm)["hit"], true, "{}", restore(&warm));
    assert_eq!(
        restore(&warm)["source"],
        "archive",
        "another data directory never trusts the first one's volumes"
    );
    assert!(warm.has_line("deps: restored lib-v1"));

    let missing = Project::new();
    missing.write("buildspec.yml", BUILDSPEC);
    missing.write("lock.txt", "v1");
    let out = missing
        .runner()
        .args([
            "build",
            "--image",
            crate::support::IMAGE,
            "--cache-s3",
            "s3://no-such-bucket-here/x",
            "--source",
        ])
        .arg(missing.path())
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-bucket-here"));
}

/// Without a `cache.key` the entry is refreshed after each build; with the cache volumes
/// that is skipped while they are exactly as they were saved, and done again once a build
/// changes them.
#[test]
fn a_default_key_is_saved_again_only_when_the_volumes_changed() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p deps && [ -f deps/lib ] || echo lib > deps/lib
      - if [ -n "$BUMP" ]; then echo "$BUMP" > deps/extra; fi
      - echo "have: $(ls deps | tr '\n' ' ')"
cache:
  paths:
    - deps/**/*
"#,
    );
    let run = |extra: &[&str]| build(&p, extra);
    let cold = run(&[]);
    assert_eq!(save(&cold)["hit"], true, "{}", cold.debug());

    let warm = run(&[]);
    assert_eq!(restore(&warm)["source"], "volume", "{}", warm.debug());
    let s = save(&warm);
    assert_eq!(s["hit"], false, "{s}");
    assert!(
        s["note"].as_str().unwrap_or("").contains("unchanged"),
        "{s}"
    );

    // A build that changes the cache paths saves again...
    let changed = run(&["--env", "BUMP=1"]);
    assert_eq!(save(&changed)["hit"], true, "{}", changed.debug());
    assert_eq!(save(&changed)["files"], 2);
    // ... and what it saved is what another machine restores.
    let elsewhere = run(&["--no-cache-volumes"]);
    assert_eq!(restore(&elsewhere)["source"], "archive");
    assert!(
        elsewhere.has_line("have: extra lib "),
        "{}",
        elsewhere.debug()
    );
}
