#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: sets up the local stack (Docker engine,
# base images), then formatting, lints, unit and integration tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --debian: the image scanner's tests compare against a debootstrap image.
bash scripts/setup.sh --debian
echo "test: cargo fmt --check" >&2
cargo fmt --check
echo "test: cargo clippy" >&2
cargo clippy --all-targets --quiet -- -D warnings
echo "test: cargo test" >&2
cargo test --lib --bins --tests
