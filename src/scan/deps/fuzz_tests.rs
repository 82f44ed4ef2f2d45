//! Garbage in, no panic out: every parser gets truncated, bit-flipped and random
//! variants of its fixture (deterministic pseudo-random, so failures reproduce).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::scan::deps::LockfileKind;
use std::path::Path;

const CASES: [(&str, &str, LockfileKind); 14] = [
    ("cargo", "Cargo.lock", LockfileKind::CargoLock),
    ("npm-v1", "package-lock.json", LockfileKind::PackageLock),
    ("npm-v2", "package-lock.json", LockfileKind::PackageLock),
    ("npm-v3", "package-lock.json", LockfileKind::PackageLock),
    ("yarn-classic", "yarn.lock", LockfileKind::YarnLock),
    ("yarn-berry", "yarn.lock", LockfileKind::YarnLock),
    ("pnpm", "pnpm-lock.yaml", LockfileKind::PnpmLock),
    (
        "requirements",
        "requirements.txt",
        LockfileKind::Requirements,
    ),
    ("poetry", "poetry.lock", LockfileKind::PoetryLock),
    ("pipfile", "Pipfile.lock", LockfileKind::PipfileLock),
    ("uv", "uv.lock", LockfileKind::UvLock),
    ("go", "go.mod", LockfileKind::GoMod),
    ("gemfile", "Gemfile.lock", LockfileKind::GemfileLock),
    ("composer", "composer.lock", LockfileKind::ComposerLock),
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn parsers_survive_garbage() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scan/deps");
    let mut rng = Lcg(0x5eed);
    let specials = [
        "\"",
        "{",
        "}",
        "[",
        "]",
        ":",
        "\n",
        "  ",
        "@",
        "==",
        "(",
        ")",
        "\\",
        "#",
        "'",
        "=>",
        "é",
        "\u{1F600}",
        "\x27\x27",
        "/",
    ];
    for (dir, file, kind) in CASES {
        let text = std::fs::read_to_string(root.join(dir).join(file)).unwrap();
        let parsed = kind.parse(&text, file).unwrap();
        assert!(!parsed.packages.is_empty(), "{dir}");
        // Truncations at char boundaries.
        for cut in (0..text.len()).step_by(7) {
            if text.is_char_boundary(cut) {
                let _ = kind.parse(&text[..cut], file);
            }
        }
        // Random splices of syntax characters.
        for _ in 0..300 {
            let mut t = text.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let mut at = (rng.next() as usize) % (t.len() + 1);
                while !t.is_char_boundary(at) {
                    at -= 1;
                }
                let s = specials[(rng.next() as usize) % specials.len()];
                if rng.next().is_multiple_of(2) {
                    t.insert_str(at, s);
                } else {
                    let end = (at + 1 + (rng.next() as usize) % 8).min(t.len());
                    if t.is_char_boundary(end) {
                        t.replace_range(at..end, s);
                    }
                }
            }
            let _ = kind.parse(&t, file);
        }
        // Pure noise.
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..(rng.next() % 200))
                .map(|_| (rng.next() % 256) as u8)
                .collect();
            let _ = kind.parse(&String::from_utf8_lossy(&bytes), file);
        }
    }
}
