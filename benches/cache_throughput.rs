//! Throughput of the build cache over ~200 MiB of generated files.
//!
//! `cargo bench --bench cache_throughput` builds two Docker-like archive streams — a
//! `node_modules` of ~30 000 small, compressible text files (~100 MiB) and a pip cache of
//! 40 incompressible 2.5 MiB wheels (100 MiB) — then measures, as MiB of file content per
//! second: `build_entry` (filter, sort, tar, zstd level 3, sha256) into a temporary file,
//! `LocalStore::save` of that entry, and restore (`LocalStore::open` with sha256
//! verification + `validated_restore_tar`, output discarded). Best of a few runs; the
//! input streams are generated in memory beforehand and not timed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, Seek, SeekFrom};
use std::time::{Duration, Instant};

use runner::cache::{build_entry, validated_restore_tar, CachePath, CacheStore, LocalStore};

const RUNS: usize = 3;
const SMALL_FILES: usize = 30_000;
const LARGE_FILES: usize = 40;
const LARGE_SIZE: usize = 5 << 19; // 2.5 MiB

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "function",
    "return",
    "const",
    "module",
    "exports",
    "require",
    "this",
    "undefined",
    "prototype",
    "object",
    "length",
    "value",
    "callback",
    "error",
    "promise",
    "async",
    "await",
    "=>",
    "{",
    "}",
    "(",
    ")",
    ";",
    "if",
    "else",
    "for",
    "let",
    "var",
    "new",
    "null",
    "true",
    "false",
    "string",
    "number",
    "options",
    "default",
    "import",
    "from",
];

fn js_file(rng: &mut XorShift, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 16);
    while out.len() < size {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
        if rng.below(40) == 0 {
            out.extend_from_slice(format!("v{:x}", rng.next() & 0xffff).as_bytes());
        }
    }
    out.truncate(size);
    out
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

/// Docker's archive of `node_modules`: returns (tar, content bytes, files).
fn node_modules(rng: &mut XorShift) -> (Vec<u8>, u64, u64) {
    let mut b = tar::Builder::new(Vec::new());
    let mut bytes = 0u64;
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str| {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, p, io::empty()).unwrap();
    };
    dir(&mut b, "node_modules");
    let packages = SMALL_FILES / 25;
    for p in 0..packages {
        let pkg = format!("node_modules/pkg-{p:04}");
        dir(&mut b, &pkg);
        dir(&mut b, &format!("{pkg}/lib"));
        for f in 0..25 {
            let size = 512 + rng.below(6 * 1024) as usize;
            let data = js_file(rng, size);
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            let path = if f == 0 {
                format!("{pkg}/package.json")
            } else {
                format!("{pkg}/lib/module-{f:02}.js")
            };
            b.append_data(&mut h, path, data.as_slice()).unwrap();
            bytes += data.len() as u64;
        }
    }
    dir(&mut b, "node_modules/.bin");
    for p in 0..packages.min(200) {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(
            &mut h,
            format!("node_modules/.bin/cli-{p}"),
            format!("../pkg-{p:04}/lib/module-01.js"),
        )
        .unwrap();
    }
    (b.into_inner().unwrap(), bytes, (packages * 25) as u64)
}

/// Docker's archive of `/root/.cache/pip`: incompressible wheels.
fn pip_cache(rng: &mut XorShift) -> (Vec<u8>, u64, u64) {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["pip", "pip/wheels"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, d, io::empty()).unwrap();
    }
    let mut data = vec![0u8; LARGE_SIZE];
    for i in 0..LARGE_FILES {
        for chunk in data.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(
            &mut h,
            format!("pip/wheels/pkg_{i}-1.0-py3-none-any.whl"),
            data.as_slice(),
        )
        .unwrap();
    }
    (
        b.into_inner().unwrap(),
        (LARGE_FILES * LARGE_SIZE) as u64,
        LARGE_FILES as u64,
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn best<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let v = f();
        let t = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| t < *b) {
            best = Some((t, v));
        }
    }
    best.unwrap()
}

fn main() {
    let src = "/codebuild/output/src1/src";
    let paths = vec![
        CachePath::parse("node_modules/**/*", src).unwrap(),
        CachePath::parse("/root/.cache/pip/**/*", src).unwrap(),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (node, node_bytes, node_files) = node_modules(&mut rng);
    let (pip, pip_bytes, pip_files) = pip_cache(&mut rng);
    let content = node_bytes + pip_bytes;
    println!(
        "input: {} files, {:.1} MiB of content ({:.1} MiB small text files, {:.1} MiB wheels); \
         tar streams {:.1} MiB",
        node_files + pip_files,
        mib(content),
        mib(node_bytes),
        mib(pip_bytes),
        mib((node.len() + pip.len()) as u64)
    );

    let dir = tempfile::tempdir().unwrap();
    let entry_path = dir.path().join("entry.tar.zst");

    let (t_build, stats) = best(|| {
        let mut out = io::BufWriter::new(std::fs::File::create(&entry_path).unwrap());
        let inputs = vec![
            (paths[0].clone(), node.as_slice()),
            (paths[1].clone(), pip.as_slice()),
        ];
        let stats = build_entry(inputs, &mut out).unwrap();
        out.into_inner().unwrap().sync_all().unwrap();
        stats
    });
    println!(
        "save  build_entry:  {:>7.1} MiB/s  ({:.2} s; tar {:.1} MiB -> zstd {:.1} MiB, ratio {:.2})",
        mib(content) / t_build.as_secs_f64(),
        t_build.as_secs_f64(),
        mib(stats.bytes_uncompressed),
        mib(stats.bytes_compressed),
        stats.bytes_uncompressed as f64 / stats.bytes_compressed as f64
    );

    let mut n = 0;
    let (t_store, handle) = best(|| {
        let store = LocalStore::new(dir.path().join(format!("store-{n}"))).unwrap();
        n += 1;
        let mut f = std::fs::File::open(&entry_path).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let h = store.save("bench-key", &stats.sha256, &mut f).unwrap();
        (store, h)
    });
    println!(
        "save  store.save:   {:>7.1} MiB/s  ({:.2} s; copy + sha256 + fsync of the entry)",
        mib(content) / t_store.as_secs_f64(),
        t_store.as_secs_f64()
    );
    let total = t_build + t_store;
    println!(
        "save  total:        {:>7.1} MiB/s",
        mib(content) / total.as_secs_f64()
    );

    let (store, h) = handle;
    let (t_restore, rs) = best(|| {
        let hit = store.lookup("bench-key").unwrap().unwrap();
        assert_eq!(hit.blob, h.blob);
        let reader = store.open(&hit).unwrap();
        validated_restore_tar(reader, &paths, io::sink()).unwrap()
    });
    assert_eq!(rs.files, stats.files);
    println!(
        "restore (verify + decompress + validate + spool + emit): {:>7.1} MiB/s  ({:.2} s; \
         {} files, {} symlinks, tar {:.1} MiB)",
        mib(content) / t_restore.as_secs_f64(),
        t_restore.as_secs_f64(),
        rs.files,
        rs.symlinks,
        mib(rs.bytes)
    );
}
