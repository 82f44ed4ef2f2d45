#!/usr/bin/env bash
# Masking throughput, before vs after, in one binary and one run: builds a scratch crate
# holding two copies of src/secrets/mask.rs (OLD_REV's and the working tree's), each
# driven by benches/mask_throughput.rs, and runs them interleaved ROUNDS times (which one
# goes first alternates). Runs are timed by the thread's CPU time: on a shared machine
# wall time varies twofold (other processes' cache traffic still shows). Ends with a
# summary per log and measurement: the after/before ratio of each round (min-max) and the
# best MiB/s of each side. Notes: benches/mask/README.md.
#
#   bash benches/mask/compare.sh [--old REV] [--rounds N]
#
# Default OLD_REV b92e086 is main before the masking-gap work of issue #17.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
old=b92e086
rounds=2
while [ $# -gt 0 ]; do
  case $1 in
    --old) old=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--old REV] [--rounds N]" >&2; exit 2 ;;
  esac
done
work=${MASK_COMPARE_DIR:-${TMPDIR:-/tmp}/runner-mask-compare}
mkdir -p "$work/src/old" "$work/src/new"
git show "$old:src/secrets/mask.rs" > "$work/src/old/mask.rs"
cp src/secrets/mask.rs "$work/src/new/mask.rs"
cp src/secrets/secret.rs "$work/src/secret.rs"
# The bench's body, without its crate attribute and its `use runner::…` line.
grep -v '^//!\|^#!\[allow\|^use runner::' benches/mask_throughput.rs |
  sed 's/^fn main()/pub fn main()/; s/^    wall_clock()$/    crate::thread_cpu_time()/' > "$work/src/body.rs"
cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "mask-compare"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
aho-corasick = "1"
base64 = "0.22"
memchr = "2"
rand = "0.9"
rustix = { version = "1", features = ["time"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
zeroize = { version = "1", features = ["derive"] }
[profile.release]
debug = false
[workspace]
TOML
cat > "$work/src/main.rs" <<'RS'
#![allow(dead_code, clippy::all)]
mod secret;
pub mod old { pub use crate::secret::Secret; pub mod mask; }
pub mod new { pub use crate::secret::Secret; pub mod mask; }
mod bench_old { use crate::old::mask::Masker; use crate::secret::Secret; include!("body.rs"); }
mod bench_new { use crate::new::mask::Masker; use crate::secret::Secret; include!("body.rs"); }
/// The CPU time of this thread: runs are timed by it (see `clock` in the bench), so that
/// other processes on a busy machine do not add their time slices to a run.
pub fn thread_cpu_time() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    // (log, measurement) -> per round (before, after) MiB/s.
    let mut table: Vec<((&str, &str), Vec<(f64, f64)>)> = Vec::new();
    for round in 1..=rounds {
        // Alternate which runs first, so neither always gets the warmer (or noisier) turn.
        let (before, after) = if round % 2 == 1 {
            println!("== round {round}: before ({})", env!("OLD_REV"));
            let before = bench_old::measure_all();
            println!("== round {round}: after (working tree)");
            (before, bench_new::measure_all())
        } else {
            println!("== round {round}: after (working tree)");
            let after = bench_new::measure_all();
            println!("== round {round}: before ({})", env!("OLD_REV"));
            (bench_old::measure_all(), after)
        };
        for ((log, what, old), (_, _, new)) in before.into_iter().zip(after) {
            match table.iter_mut().find(|(key, _)| *key == (log, what)) {
                Some((_, runs)) => runs.push((old, new)),
                None => table.push(((log, what), vec![(old, new)])),
            }
        }
    }
    println!("\n== summary: after/before ratio per round (min-max), and best MiB/s before -> after");
    for ((log, what), runs) in &table {
        let ratios: Vec<f64> = runs.iter().map(|(old, new)| new / old).collect();
        let min = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().cloned().fold(0.0, f64::max);
        let best_old = runs.iter().map(|r| r.0).fold(0.0, f64::max);
        let best_new = runs.iter().map(|r| r.1).fold(0.0, f64::max);
        println!(
            "{log:<16} {what:<27} ratio {min:.2}-{max:.2}   {best_old:>8.1} -> {best_new:>8.1} MiB/s (best {:.2})",
            best_new / best_old
        );
    }
}
RS
# Cargo.lock from the project, so the same dependency versions are measured.
cp Cargo.lock "$work/Cargo.lock"
(cd "$work" && OLD_REV=$old cargo build --release --quiet 2>&1 | grep -v '^warning' >&2 || true)
"$work/target/release/mask-compare" "$rounds"
