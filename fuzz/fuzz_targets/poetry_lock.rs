#![no_main]
use runner::scan::deps::LockfileKind;

libfuzzer_sys::fuzz_target!(|data: &[u8]| runner_fuzz::lockfile(LockfileKind::PoetryLock, data));
