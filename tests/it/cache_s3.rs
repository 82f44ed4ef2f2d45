//! `cache::S3Store` against a real moto server (see `support_moto.rs`). Each test works
//! under its own prefix of the one bucket.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::aws_config::AwsSettings;
use runner::cache::{CacheError, CacheStore, EntryHandle, S3Location, S3Store};
use sha2::{Digest, Sha256};

use crate::support_moto::{closed_endpoint, moto_s3};

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fills `buf` with incompressible bytes (splitmix64; `rand` is slow in debug builds).
fn pseudo_random(buf: &mut [u8], seed: u64) {
    let mut state = seed;
    for chunk in buf.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

fn bucket() -> String {
    moto_s3().fixture("bucket")
}

fn store(prefix: &str) -> S3Store {
    let location = S3Location::parse(&format!("s3://{}/{prefix}", bucket())).unwrap();
    S3Store::new(location, moto_s3().settings()).unwrap()
}

fn save(s: &S3Store, key: &str, data: &[u8]) -> EntryHandle {
    s.save(key, &sha(data), &mut &data[..]).unwrap()
}

fn read_all(s: &S3Store, h: &EntryHandle) -> Result<Vec<u8>, io::Error> {
    let mut r = s.open(h).map_err(io::Error::other)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

/// Object keys of the bucket under `prefix`, sorted.
fn objects(prefix: &str) -> Vec<String> {
    let out = moto_s3().boto3_s3(
        "for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=key):\n    \
         for o in page.get('Contents', []): print(o['Key'])",
        &bucket(),
        prefix,
        b"",
    );
    let mut keys: Vec<String> = out.lines().map(str::to_string).collect();
    keys.sort();
    keys
}

/// Replaces an object's bytes behind the store's back.
fn overwrite_object(key: &str, data: &[u8]) {
    moto_s3().boto3_s3(
        "s3.put_object(Bucket=bucket, Key=key, Body=data)",
        &bucket(),
        key,
        data,
    );
}

fn get_object(key: &str) -> String {
    moto_s3().boto3_s3(
        "sys.stdout.write(s3.get_object(Bucket=bucket, Key=key)['Body'].read().decode())",
        &bucket(),
        key,
        b"",
    )
}

#[test]
fn save_lookup_round_trip_layout_and_miss() {
    let s = store("t/round-trip");
    assert_eq!(s.lookup("deps-1").unwrap(), None);
    let saved = save(&s, "deps-1", b"one");
    assert_eq!(saved.size, 3);
    assert_eq!(saved.blob, sha(b"one"));
    assert_eq!(
        objects("t/round-trip/"),
        [
            format!("t/round-trip/blobs/sha256/{}", sha(b"one")),
            "t/round-trip/keys/deps-1.json".to_string(),
        ]
    );
    let record: EntryHandle =
        serde_json::from_str(&get_object("t/round-trip/keys/deps-1.json")).unwrap();
    assert_eq!(record, saved);

    let hit = s.lookup("deps-1").unwrap().unwrap();
    assert_eq!(
        (&hit.key, &hit.blob, hit.size),
        (&saved.key, &saved.blob, 3)
    );
    assert_eq!(hit.created, saved.created);
    assert!(hit.last_used > saved.last_used);
    // The lookup marked the record used in the bucket too.
    let record: EntryHandle =
        serde_json::from_str(&get_object("t/round-trip/keys/deps-1.json")).unwrap();
    assert_eq!(record, hit);
    assert_eq!(read_all(&s, &hit).unwrap(), b"one");

    // Misses: exact lookups only.
    assert_eq!(s.lookup("deps-").unwrap(), None);
    assert_eq!(s.lookup("deps-10").unwrap(), None);
    assert!(matches!(s.lookup(""), Err(CacheError::BadKey { .. })));

    // A wrong announced sha256 stores nothing.
    let err = s.save("k", &sha(b"other"), &mut &b"x"[..]).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert_eq!(s.lookup("k").unwrap(), None);
    assert_eq!(objects("t/round-trip/").len(), 2);

    // A blob already stored is not uploaded again (the stream is not even read).
    struct Panics;
    impl Read for Panics {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("read");
        }
    }
    let h = s.save("deps-2", &sha(b"one"), &mut Panics).unwrap();
    assert_eq!(h.size, 3);
    assert_eq!(
        read_all(&s, &s.lookup("deps-2").unwrap().unwrap()).unwrap(),
        b"one"
    );

    // An empty entry is a valid blob.
    save(&s, "empty", b"");
    assert_eq!(
        read_all(&s, &s.lookup("empty").unwrap().unwrap()).unwrap(),
        b""
    );

    // Another store on the same location sees the same entries; another prefix does not.
    assert!(store("t/round-trip/").lookup("deps-1").unwrap().is_some());
    assert_eq!(store("t/round-trip-other").lookup("deps-1").unwrap(), None);
}

#[test]
fn overwrite_replaces_what_the_key_names() {
    let s = store("t/overwrite");
    save(&s, "deps", b"first");
    save(&s, "deps", b"second");
    let hit = s.lookup("deps").unwrap().unwrap();
    assert_eq!(hit.blob, sha(b"second"));
    assert_eq!(read_all(&s, &hit).unwrap(), b"second");
    // The old blob stays (no garbage collection in the runner).
    assert_eq!(objects("t/overwrite/blobs/").len(), 2);
}

#[test]
fn fallback_prefix_newest_first() {
    let s = store("t/fallback");
    save(&s, "npm-main-aaa", b"a");
    save(&s, "npm-main-bbb", b"b");
    save(&s, "npm-feature-ccc", b"c");
    save(&s, "pip-ddd", b"d");
    let newest = |p: &str| s.lookup_prefix(p).unwrap().map(|h| h.key);
    assert_eq!(newest("npm-main-").as_deref(), Some("npm-main-bbb"));
    assert_eq!(newest("npm-").as_deref(), Some("npm-feature-ccc"));
    assert_eq!(newest("").as_deref(), Some("pip-ddd"));
    assert_eq!(newest("gradle-"), None);
    // Re-saving makes a key the newest; a lookup (which rewrites last_used) does not.
    s.lookup("npm-main-aaa").unwrap().unwrap();
    assert_eq!(newest("npm-main-").as_deref(), Some("npm-main-bbb"));
    save(&s, "npm-main-aaa", b"a2");
    assert_eq!(newest("npm-main-").as_deref(), Some("npm-main-aaa"));

    // CodeBuild order: the exact key, then each fallback in order.
    let f = |k: &str, fb: &[&str]| {
        let fb: Vec<String> = fb.iter().map(|s| s.to_string()).collect();
        s.find(k, &fb).unwrap().map(|h| h.key)
    };
    assert_eq!(
        f("npm-main-bbb", &["npm-"]).as_deref(),
        Some("npm-main-bbb")
    );
    assert_eq!(
        f("npm-main-zzz", &["npm-main-", "npm-"]).as_deref(),
        Some("npm-main-aaa")
    );
    assert_eq!(
        f("npm-x-zzz", &["npm-f"]).as_deref(),
        Some("npm-feature-ccc")
    );
    assert_eq!(f("npm-x-zzz", &["yarn-"]), None);

    // Keys with slashes and odd characters stay one flat object each, and prefix
    // lookups work across the encoding (long keys, cut and hashed, included).
    let long = format!("long/{}", "é../".repeat(200));
    let keys = ["../../etc/passwd", "a/b/c", "sp ace%2F~", long.as_str()];
    for (i, k) in keys.iter().enumerate() {
        save(&s, k, format!("data {i}").as_bytes());
    }
    for (i, k) in keys.iter().enumerate() {
        let h = s.lookup(k).unwrap().unwrap();
        assert_eq!(&h.key, k);
        assert_eq!(read_all(&s, &h).unwrap(), format!("data {i}").as_bytes());
    }
    for o in objects("t/fallback/keys/") {
        let name = o.strip_prefix("t/fallback/keys/").unwrap();
        assert!(!name.contains('/') && name.ends_with(".json"), "{o}");
    }
    assert_eq!(newest("../").as_deref(), Some(keys[0]));
    assert_eq!(newest("long/é../é").as_deref(), Some(long.as_str()));
    assert_eq!(
        newest(&long[..long.len() - 3]).as_deref(),
        Some(long.as_str())
    );
    assert_eq!(newest("sp ace%").as_deref(), Some(keys[2]));
    assert_eq!(newest("sp ace%3"), None);
}

#[test]
fn concurrent_saves_of_one_key_leave_a_valid_entry() {
    let s = Arc::new(store("t/concurrent"));
    let payloads: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            (0..(256 * 1024 + i as usize * 1000))
                .map(|j| (j as u8) ^ i)
                .collect()
        })
        .collect();
    for round in 0..3 {
        let barrier = Arc::new(std::sync::Barrier::new(payloads.len()));
        let handles: Vec<_> = payloads
            .iter()
            .cloned()
            .map(|data| {
                let s = Arc::clone(&s);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    // Same key, and a shared blob under a second key.
                    save(&s, "same-key", &data);
                    save(&s, "shared", b"same content for all");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let hit = s.lookup("same-key").unwrap().unwrap();
        let data = read_all(&s, &hit).unwrap();
        assert!(
            payloads.contains(&data),
            "round {round}: unexpected content"
        );
        assert_eq!(sha(&data), hit.blob);
        let shared = s.lookup("shared").unwrap().unwrap();
        assert_eq!(read_all(&s, &shared).unwrap(), b"same content for all");
    }
    // One blob per distinct content, one record per key.
    assert_eq!(objects("t/concurrent/blobs/").len(), payloads.len() + 1);
    assert_eq!(objects("t/concurrent/keys/").len(), 2);
}

#[test]
fn corrupt_or_missing_blob_is_reported_and_removed() {
    let s = store("t/corrupt");
    let data = vec![42u8; 100_000];
    let blob_object = format!("t/corrupt/blobs/sha256/{}", sha(&data));

    // Same size, other bytes.
    save(&s, "k", &data);
    let h = s.lookup("k").unwrap().unwrap();
    let mut damaged = data.clone();
    damaged[50_000] ^= 1;
    overwrite_object(&blob_object, &damaged);
    let err = read_all(&s, &h).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<CacheError>())
        .unwrap();
    assert!(inner.is_corrupt(), "{inner}");
    assert!(inner.to_string().contains("damaged"), "{inner}");
    // Entry and blob are gone: the next save uploads the blob again.
    assert_eq!(s.lookup("k").unwrap(), None);
    assert!(objects("t/corrupt/").is_empty());
    save(&s, "k", &data);
    assert_eq!(
        read_all(&s, &s.lookup("k").unwrap().unwrap()).unwrap(),
        data
    );

    // Truncated and longer blobs.
    for bad in [&data[..10], &[&data[..], b"x"].concat()[..]] {
        save(&s, "k", &data);
        let h = s.lookup("k").unwrap().unwrap();
        overwrite_object(&blob_object, bad);
        let err = read_all(&s, &h).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(s.lookup("k").unwrap(), None);
    }

    // Missing blob: Corrupt at once.
    save(&s, "k", &data);
    let h = s.lookup("k").unwrap().unwrap();
    moto_s3().boto3_s3(
        "s3.delete_object(Bucket=bucket, Key=key)",
        &bucket(),
        &blob_object,
        b"",
    );
    let err = s.open(&h).err().unwrap();
    assert!(err.is_corrupt(), "{err}");
    assert_eq!(s.lookup("k").unwrap(), None);

    // A damaged record is a miss; a record naming a path is ignored.
    overwrite_object("t/corrupt/keys/j.json", b"{not json");
    assert_eq!(s.lookup("j").unwrap(), None);
    overwrite_object(
        "t/corrupt/keys/j.json",
        br#"{"key":"j","blob":"../../../etc/passwd","size":1,"created":1,"last_used":1}"#,
    );
    assert_eq!(s.lookup("j").unwrap(), None);
    assert_eq!(s.lookup_prefix("j").unwrap(), None);

    // `remove` drops the key and the blob; a key re-saved meanwhile stays.
    save(&s, "k", &data);
    let h = s.lookup("k").unwrap().unwrap();
    s.remove(&h).unwrap();
    assert_eq!(s.lookup("k").unwrap(), None);
    assert!(objects("t/corrupt/blobs/").is_empty());
    save(&s, "k", b"old");
    let old = s.lookup("k").unwrap().unwrap();
    save(&s, "k", b"new");
    s.remove(&old).unwrap();
    assert_eq!(
        read_all(&s, &s.lookup("k").unwrap().unwrap()).unwrap(),
        b"new"
    );
}

#[test]
fn big_entry_goes_up_in_parts() {
    let s = store("t/big");
    let mut data = vec![0u8; 70 << 20];
    let started = Instant::now();
    pseudo_random(&mut data, 0x5eed);
    let data_sha = sha(&data);
    eprintln!("random data and its sha256 in {:?}", started.elapsed());
    let started = Instant::now();
    let saved = s.save("big", &data_sha, &mut &data[..]).unwrap();
    let took = started.elapsed();
    assert_eq!(saved.size, data.len() as u64);
    // A multipart upload's ETag ends in `-<number of parts>`: 16 MiB parts.
    let blob_object = format!("t/big/blobs/sha256/{data_sha}");
    let etag = moto_s3().boto3_s3(
        "print(s3.head_object(Bucket=bucket, Key=key)['ETag'])",
        &bucket(),
        &blob_object,
        b"",
    );
    assert!(etag.trim().ends_with("-5\""), "{etag}");
    let hit = s.lookup("big").unwrap().unwrap();
    let started = Instant::now();
    assert!(read_all(&s, &hit).unwrap() == data, "content differs");
    eprintln!("70 MiB read back from moto in {:?}", started.elapsed());
    let started = Instant::now();
    // Exactly the single-PUT limit: one PutObject.
    let edge = &data[..64 << 20];
    save(&s, "edge", edge);
    let etag = moto_s3().boto3_s3(
        "print(s3.head_object(Bucket=bucket, Key=key)['ETag'])",
        &bucket(),
        &format!("t/big/blobs/sha256/{}", sha(edge)),
        b"",
    );
    assert!(!etag.contains('-'), "{etag}");
    eprintln!("64 MiB single put to moto in {:?}", started.elapsed());
    let started = Instant::now();
    // A wrong announced sha256 aborts the multipart upload: nothing stored.
    let err = s
        .save("bad", &sha(b"something else"), &mut &data[..])
        .unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert_eq!(s.lookup("bad").unwrap(), None);
    let uploads = moto_s3().boto3_s3(
        "print(len(s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get('Uploads', [])))",
        &bucket(),
        "t/big/",
        b"",
    );
    assert_eq!(uploads.trim(), "0");
    eprintln!("aborted 70 MiB multipart in {:?}", started.elapsed());
    eprintln!("70 MiB multipart save to moto took {took:?}");
}

#[test]
fn missing_bucket_is_a_clear_error() {
    let location = S3Location::parse("s3://no-such-bucket-here/x").unwrap();
    let s = S3Store::new(location, moto_s3().settings()).unwrap();
    let endpoint = &moto_s3().endpoint;
    let errors = [
        s.check().unwrap_err(),
        s.lookup("k").unwrap_err(),
        s.lookup_prefix("k").unwrap_err(),
        s.save("k", &sha(b"x"), &mut &b"x"[..]).unwrap_err(),
    ];
    for err in errors {
        let msg = err.to_string();
        assert!(
            msg.contains("bucket `no-such-bucket-here` does not exist")
                && msg.contains(endpoint.as_str()),
            "{msg}"
        );
    }
    store("t/check").check().unwrap();
}

#[test]
fn unreachable_endpoint_fails_fast_and_clearly() {
    let endpoint = closed_endpoint();
    let settings = AwsSettings {
        endpoint_url: Some(endpoint.clone()),
        ..moto_s3().settings()
    };
    let location = S3Location::parse("s3://some-bucket/p").unwrap();
    let s = S3Store::new(location, settings).unwrap();
    assert_eq!(s.endpoint(), endpoint);
    let started = Instant::now();
    let err = s.lookup("k").unwrap_err();
    let took = started.elapsed();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "cannot reach S3 at {endpoint}: connection refused"
        )),
        "{msg}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let err = s.save("k", &sha(b"x"), &mut &b"x"[..]).unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_from_async_code_through_spawn_blocking() {
    let location = S3Location::parse(&format!("s3://{}/t/async", bucket())).unwrap();
    let s: Arc<dyn CacheStore> = Arc::new(
        S3Store::connect(location, moto_s3().settings())
            .await
            .unwrap(),
    );
    let s2 = Arc::clone(&s);
    let data = tokio::task::spawn_blocking(move || {
        save_dyn(&*s2, "k", b"from async");
        let h = s2.lookup("k").unwrap().unwrap();
        let mut out = Vec::new();
        s2.open(&h).unwrap().read_to_end(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert_eq!(data, b"from async");
    // Dropping the store on an async worker thread does not panic.
    drop(s);
}

fn save_dyn(s: &dyn CacheStore, key: &str, data: &[u8]) -> EntryHandle {
    s.save(key, &sha(data), &mut &data[..]).unwrap()
}

/// The endpoint from `AWS_ENDPOINT_URL_S3` (no explicit settings): runs
/// `endpoint_from_env_child` in a child process with that environment.
#[test]
fn endpoint_from_env() {
    let moto = moto_s3();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cache_s3::endpoint_from_env_child",
            "--ignored",
            "--nocapture",
        ])
        .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
        .env("AWS_ENDPOINT_URL", closed_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUNNER_TEST_BUCKET", bucket())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by endpoint_from_env with the environment set"]
fn endpoint_from_env_child() {
    let bucket = std::env::var("RUNNER_TEST_BUCKET").unwrap();
    let location = S3Location::parse(&format!("s3://{bucket}/t/env")).unwrap();
    let s = S3Store::new(location, AwsSettings::default()).unwrap();
    assert_eq!(
        Some(s.endpoint()),
        std::env::var("AWS_ENDPOINT_URL_S3").ok().as_deref()
    );
    save(&s, "k", b"via env");
    assert_eq!(
        read_all(&s, &s.lookup("k").unwrap().unwrap()).unwrap(),
        b"via env"
    );
}
