//! Diagnostics for operators: `-v`/`--verbose` and RUST_LOG, to standard error.
//!
//! Without either nothing is installed, so nothing extra is printed. With one, runner's
//! own events and those of its libraries (the AWS SDK's credential chain and retries,
//! hyper, reqwest's and bollard's `log` records, bridged) are written to standard error,
//! coloured only on a terminal and never when NO_COLOR is set.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The filter for `-v` counts: runner's info, then debug everywhere, then trace.
///
/// bollard stays at info: at debug it logs request and response bodies, and a container's
/// configuration holds the build's environment, secrets included. RUST_LOG=bollard=debug
/// shows them for those who ask (such a log is not to be shared).
fn directives(verbose: u8) -> Option<&'static str> {
    match verbose {
        0 => None,
        1 => Some("warn,runner=info"),
        2 => Some("debug,bollard=info"),
        _ => Some("trace,bollard=info"),
    }
}

/// Installs the subscriber when RUST_LOG is set or `-v` was given.
pub fn init(verbose: u8) {
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = match (rust_log, directives(verbose)) {
        (Some(spec), _) => match EnvFilter::try_new(&spec) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("warning: RUST_LOG `{spec}` is not a valid filter ({e}); using -v's");
                match directives(verbose.max(1)) {
                    Some(d) => EnvFilter::new(d),
                    None => return,
                }
            }
        },
        (None, Some(d)) => EnvFilter::new(d),
        (None, None) => return,
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(true)
        .try_init();
}
