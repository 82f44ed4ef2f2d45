//! Throughput of secret masking over ~64 MiB of generated log lines, for two logs: a
//! plausible build log, and a digit-heavy one (test and compiler output full of numbers,
//! timestamps, hashes, addresses and hex dumps: the text that looks most like the hex and
//! `od` forms of a secret).
//!
//! `cargo bench --bench mask_throughput` prints MiB/s, per log, for: `Masker::mask` with no
//! secrets, `Masker::mask` with 20 secrets (all encodings: several hundred patterns), and
//! `StreamMasker` over 64 KiB chunks of the same log; then the masked/unmasked ratio.
//! No external harness: each measurement is the best of a few runs.
//! `benches/mask/compare.sh` runs this against an older masker, side by side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runner::secrets::{Masker, Secret};

const TARGET_BYTES: usize = 64 << 20;
const CHUNK: usize = 64 << 10;
const RUNS: usize = 3;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8] = b"0123456789abcdef";

fn pick(rng: &mut StdRng, set: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| char::from(set[rng.random_range(0..set.len())]))
        .collect()
}

fn pem(rng: &mut StdRng) -> String {
    let mut s = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
    for _ in 0..25 {
        s.push_str(&pick(rng, B64, 64));
        s.push('\n');
    }
    s.push_str(&pick(rng, B64, 44));
    s.push_str("==\n-----END RSA PRIVATE KEY-----\n");
    s
}

/// 20 secrets of the kinds builds actually get.
fn secrets(rng: &mut StdRng) -> Vec<(String, Secret)> {
    let mut v = Vec::new();
    for i in 0..3 {
        v.push((
            format!("AWS_ACCESS_KEY_ID_{i}"),
            format!("AKIA{}", pick(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        ));
        v.push((format!("AWS_SECRET_ACCESS_KEY_{i}"), pick(rng, B64, 40)));
    }
    for i in 0..3 {
        v.push((
            format!("GITHUB_TOKEN_{i}"),
            format!("ghp_{}", pick(rng, ALNUM, 36)),
        ));
    }
    for i in 0..4 {
        // Passwords with characters that URL and JSON encoding change.
        v.push((
            format!("DB_PASSWORD_{i}"),
            format!(
                "{}@{}/{} {}\"!",
                pick(rng, ALNUM, 6),
                pick(rng, ALNUM, 4),
                pick(rng, ALNUM, 3),
                pick(rng, ALNUM, 5)
            ),
        ));
    }
    v.push((
        "DATABASE_URL".into(),
        format!(
            "postgres://app:{}@db.internal:5432/prod",
            pick(rng, ALNUM, 20)
        ),
    ));
    v.push((
        "JWT".into(),
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.{}",
            pick(rng, ALNUM, 120),
            pick(rng, ALNUM, 43)
        ),
    ));
    v.push(("NPM_TOKEN".into(), format!("npm_{}", pick(rng, ALNUM, 36))));
    v.push(("UNICODE_PASSWORD".into(), "пароль-密码-ключ-🔑".into()));
    v.push(("HEX_KEY".into(), pick(rng, HEX, 64)));
    v.push((
        "SLACK_WEBHOOK_URL".into(),
        format!(
            "https://hooks.slack.com/services/T{}/B{}/{}",
            pick(rng, ALNUM, 8),
            pick(rng, ALNUM, 10),
            pick(rng, ALNUM, 24)
        ),
    ));
    v.push(("SIGNING_KEY".into(), pem(rng)));
    assert_eq!(v.len(), 20);
    v.into_iter().map(|(n, s)| (n, Secret::new(s))).collect()
}

/// One line of a plausible build log. Occasionally includes a secret in some form.
fn log_line(rng: &mut StdRng, secrets: &[(String, Secret)]) -> String {
    let line = build_line(rng);
    leak(rng, secrets, line)
}

fn build_line(rng: &mut StdRng) -> String {
    const WORDS: &[&str] = &[
        "install",
        "warning",
        "deprecated",
        "building",
        "target",
        "release",
        "dependency",
        "resolved",
        "cache",
        "layer",
        "upload",
        "artifact",
        "test",
        "passed",
        "module",
        "compiling",
        "linking",
        "done",
        "src/main.rs",
        "node_modules",
        "com.example.app",
    ];
    let ts = format!(
        "[Container] 2024/05/{:02} {:02}:{:02}:{:02}.{:06}",
        rng.random_range(1..29),
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60),
        rng.random_range(0..1_000_000)
    );
    match rng.random_range(0..100) {
        0..=9 => String::new(),
        10..=14 => "}".into(),
        15..=34 => format!("{ts} Running command npm ci --no-audit"),
        35..=49 => format!(
            "   Compiling {} v{}.{}.{}",
            WORDS[rng.random_range(0..WORDS.len())],
            rng.random_range(0..3),
            rng.random_range(0..40),
            rng.random_range(0..20)
        ),
        50..=59 => format!(
            "Step {}/{} : RUN apt-get install -y {} && rm -rf /var/lib/apt/lists/*",
            rng.random_range(1..20),
            20,
            WORDS[rng.random_range(0..WORDS.len())]
        ),
        60..=69 => format!(
            "{} sha256:{} {} kB",
            WORDS[rng.random_range(0..WORDS.len())],
            pick(rng, HEX, 64),
            rng.random_range(1..99999)
        ),
        70..=79 => format!(
            "Downloading https://repo.maven.apache.org/maven2/org/{}/{}/{}.jar ({} kB at {} MB/s)",
            WORDS[rng.random_range(0..WORDS.len())],
            WORDS[rng.random_range(0..WORDS.len())],
            pick(rng, ALNUM, 12),
            rng.random_range(1..9000),
            rng.random_range(1..90)
        ),
        80..=94 => {
            let n = rng.random_range(3..30);
            let words: Vec<&str> = (0..n)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect();
            format!("{ts} {}", words.join(" "))
        }
        _ => {
            // Long JSON-ish line (test reports, API responses).
            let n = rng.random_range(5..60);
            let fields: Vec<String> = (0..n)
                .map(|i| format!("\"field{i}\":\"{}\"", pick(rng, ALNUM, 20)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
    }
}

/// About 1 line in 500 leaks a secret, raw or encoded.
fn leak(rng: &mut StdRng, secrets: &[(String, Secret)], mut line: String) -> String {
    if rng.random_range(0..500) == 0 {
        let value = secrets[rng.random_range(0..secrets.len())].1.expose();
        let value = value.lines().nth(1).unwrap_or(value).to_owned();
        let leaked = match rng.random_range(0..4) {
            0 => value,
            1 => STANDARD.encode(format!("user:{value}")),
            2 => serde_json::to_string(&value).unwrap(),
            _ => format!("export TOKEN={value}; echo done"),
        };
        line.push_str(" token=");
        line.push_str(&leaked);
    }
    line
}

/// One line of a digit-heavy log: test and compiler output, timings, hashes, addresses,
/// `od` and `xxd` dumps of ordinary bytes. Occasionally includes a secret in some form.
fn digit_line(rng: &mut StdRng, secrets: &[(String, Secret)]) -> String {
    let ts = format!(
        "2024-05-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        rng.random_range(1..29),
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60),
        rng.random_range(0..1_000_000_000)
    );
    let line = match rng.random_range(0..100) {
        0..=19 => format!(
            "test tests::case_{}_{} ... ok ({}.{:03}s)",
            rng.random_range(0..5000),
            rng.random_range(0..100),
            rng.random_range(0..10),
            rng.random_range(0..1000)
        ),
        20..=29 => format!(
            "test result: ok. {} passed; {} failed; {} ignored; 0 measured; finished in {}.{:02}s",
            rng.random_range(0..5000),
            rng.random_range(0..3),
            rng.random_range(0..40),
            rng.random_range(0..600),
            rng.random_range(0..100)
        ),
        30..=44 => format!(
            "[{ts}] pid={} elapsed={}.{:03}ms rss={} bytes={} seq={}",
            rng.random_range(1..65536),
            rng.random_range(0..10000),
            rng.random_range(0..1000),
            rng.random_range(1_000_000..4_000_000_000u64),
            rng.random_range(0..100_000_000),
            rng.random_range(0..1_000_000)
        ),
        45..=54 => format!(
            "commit {} {} {}",
            pick(rng, HEX, 40),
            pick(rng, HEX, 12),
            rng.random_range(1_600_000_000..1_800_000_000u64)
        ),
        55..=64 => format!(
            "{}  target/release/deps/lib{}.rlib",
            pick(rng, HEX, 64),
            pick(rng, b"abcdefghijklmnopqrstuvwxyz_", 10)
        ),
        65..=72 => {
            // `od -An -tx1` of ordinary text: the shape of an od form.
            let bytes: Vec<String> = (0..16)
                .map(|_| format!("{:02x}", rng.random_range(0x20..0x7fu8)))
                .collect();
            format!(" {}", bytes.join(" "))
        }
        73..=80 => {
            // `xxd` of ordinary text.
            let groups: Vec<String> = (0..8)
                .map(|_| {
                    format!(
                        "{:02x}{:02x}",
                        rng.random_range(0x20..0x7fu8),
                        rng.random_range(0x20..0x7fu8)
                    )
                })
                .collect();
            format!(
                "{:08x}: {}  {}",
                rng.random_range(0..1u32 << 24) * 16,
                groups.join(" "),
                pick(rng, ALNUM, 16)
            )
        }
        81..=88 => format!(
            "   {} 0x{:012x} in {}::{} at src/{}.rs:{}:{}",
            rng.random_range(0..64),
            rng.random_range(0x5555_0000_0000u64..0x7fff_ffff_ffffu64),
            pick(rng, b"abcdefghijklmnopqrstuvwxyz", 6),
            pick(rng, b"abcdefghijklmnopqrstuvwxyz", 8),
            pick(rng, b"abcdefghijklmnopqrstuvwxyz", 5),
            rng.random_range(1..2000),
            rng.random_range(1..120)
        ),
        _ => {
            // A table of numbers (benchmark output, metrics).
            let n = rng.random_range(4..16);
            let cells: Vec<String> = (0..n)
                .map(|_| format!("{:>9}", rng.random_range(0..100_000_000)))
                .collect();
            cells.join(" ")
        }
    };
    leak(rng, secrets, line)
}

fn mib_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / time.as_secs_f64()
}

/// The clock runs are timed by: wall time. `benches/mask/compare.sh` replaces the body
/// with the thread's CPU time, which preemption on a busy machine does not inflate.
fn clock() -> Duration {
    wall_clock()
}

fn wall_clock() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn best_of<F: FnMut() -> usize>(mut f: F) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..RUNS {
        let start = clock();
        out = black_box(f());
        best = best.min(clock().saturating_sub(start));
    }
    (best, out)
}

fn mask_all(masker: &Masker, lines: &[String]) -> usize {
    let mut out = 0;
    for line in lines {
        out += black_box(masker.mask(line)).len();
    }
    out
}

/// The logs measured: name and line generator.
type LineFn = fn(&mut StdRng, &[(String, Secret)]) -> String;
const LOGS: [(&str, LineFn); 2] = [("build log", log_line), ("digit-heavy log", digit_line)];

/// Measures every log; returns `(log, measurement, MiB/s)` and prints as it goes.
pub fn measure_all() -> Vec<(&'static str, &'static str, f64)> {
    let mut rng = StdRng::seed_from_u64(0x10c5);
    let secrets = secrets(&mut rng);
    let build_start = Instant::now();
    let masker = Masker::new(secrets.iter().map(|(n, s)| (n.as_str(), s)));
    println!(
        "masker: 20 secrets -> {} patterns (longest {} B, automaton {} KiB), built in {:.1?}",
        masker.pattern_count(),
        masker.max_pattern_len(),
        masker.memory_usage() / 1024,
        build_start.elapsed()
    );
    let mut rates = Vec::new();
    for (i, (log, line_fn)) in LOGS.into_iter().enumerate() {
        // The build log continues the secrets' sequence (as it always has); later logs
        // have their own seeds.
        let mut own = StdRng::seed_from_u64(0xd161 + i as u64);
        let rng = if i == 0 { &mut rng } else { &mut own };
        let (empty, masked, stream) = measure(log, rng, line_fn, &masker, &secrets);
        rates.push((log, "mask, empty masker", empty));
        rates.push((log, "mask, 20 secrets", masked));
        rates.push((log, "StreamMasker, 64 KiB push", stream));
    }
    rates
}

fn measure(
    log: &str,
    rng: &mut StdRng,
    line_fn: LineFn,
    masker: &Masker,
    secrets: &[(String, Secret)],
) -> (f64, f64, f64) {
    let gen_start = Instant::now();
    let mut lines = Vec::new();
    let mut total = 0;
    while total < TARGET_BYTES {
        let line = line_fn(rng, secrets);
        total += line.len() + 1;
        lines.push(line);
    }
    let stream: Vec<u8> = lines.join("\n").into_bytes();
    println!(
        "{log}: {} lines, {:.1} MiB (avg {:.0} B/line), generated in {:.1?}",
        lines.len(),
        total as f64 / (1024.0 * 1024.0),
        total as f64 / lines.len() as f64,
        gen_start.elapsed()
    );
    let empty = Masker::empty();

    let (t_empty, out_empty) = best_of(|| mask_all(&empty, &lines));
    let (t_masked, out_masked) = best_of(|| mask_all(masker, &lines));
    let (t_stream, out_stream) = best_of(|| {
        let mut s = masker.stream();
        let mut n = 0;
        for chunk in stream.chunks(CHUNK) {
            n += black_box(s.push(chunk)).len();
        }
        n + s.finish().len()
    });

    // Sanity: same output size line-wise and stream-wise, and something was masked.
    let mut changed = 0;
    for line in &lines {
        if let std::borrow::Cow::Owned(masked) = masker.mask(line) {
            changed += 1;
            for (_, secret) in secrets {
                for part in secret.expose().lines().filter(|l| l.len() > 4) {
                    assert!(!masked.contains(part), "leak in {masked}");
                }
            }
        }
    }
    assert_eq!(out_empty, total - lines.len());
    assert_eq!(out_stream, out_masked + lines.len() - 1);
    assert!(changed > 0);

    let empty_rate = mib_per_s(total, t_empty);
    let masked_rate = mib_per_s(total, t_masked);
    let stream_rate = mib_per_s(stream.len(), t_stream);
    println!("  lines containing a secret: {changed}");
    println!("  mask, empty masker:        {empty_rate:>9.1} MiB/s  ({t_empty:.2?})");
    println!("  mask, 20 secrets:          {masked_rate:>9.1} MiB/s  ({t_masked:.2?})");
    println!("  StreamMasker, 64 KiB push: {stream_rate:>9.1} MiB/s  ({t_stream:.2?})");
    println!(
        "  ratio masked/unmasked:     {:>9.3}  (stream/unmasked {:.3})",
        masked_rate / empty_rate,
        stream_rate / empty_rate
    );
    (empty_rate, masked_rate, stream_rate)
}

fn main() {
    measure_all();
}
