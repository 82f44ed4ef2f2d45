#!/bin/sh
# RUSTC_WRAPPER for scripts/fuzz.sh: adds libFuzzer's coverage instrumentation to the
# `runner` crate only, so the dependencies compiled for a normal `cargo build` are reused.
rustc=$1
shift
case " $* " in
    *" --crate-name runner "*)
        exec "$rustc" "$@" -Cpasses=sancov-module \
            -Cllvm-args=-sanitizer-coverage-level=4 \
            -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
            -Cllvm-args=-sanitizer-coverage-pc-table \
            -Cllvm-args=-sanitizer-coverage-trace-compares \
            --cfg fuzzing ;;
esac
exec "$rustc" "$@"
