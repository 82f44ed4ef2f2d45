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

#[test]
fn miss_then_hit_then_fallback_after_a_key_change() {
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
    assert_eq!(save(&warm)["hit"], false, "an exact hit is not saved again");

    // A new lockfile: a new key, restored from the newest `deps-` entry, then saved.
    p.write("lock.txt", "v2");
    let changed = build(&p, &[]);
    let r = restore(&changed);
    assert_eq!(r["hit"], true);
    assert_eq!(r["matched_key"], Value::String(key.clone()));
    assert_ne!(r["key"], Value::String(key));
    assert!(changed.has_line("deps: restored lib-v1"));
    assert_eq!(save(&changed)["hit"], true);
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
    let next = build(&p, &["--cache-dir", &dir]);
    assert_eq!(restore(&next)["hit"], true);
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
    let run = build(&p, &["--cache-dir", &dir]);
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
