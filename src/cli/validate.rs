use super::args::ValidateArgs;
use super::exit::ExitStatus;
use crate::buildspec::{self, Severity};

pub fn run(args: &ValidateArgs) -> ExitStatus {
    let mut worst = ExitStatus::Success;
    let (mut errors, mut warnings) = (0usize, 0usize);
    for path in &args.files {
        let display = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {display}: {e}");
                worst = ExitStatus::Setup;
                continue;
            }
        };
        let mut parsed = buildspec::parse(&text);
        if args.strict {
            buildspec::apply_strict(&mut parsed.diagnostics);
        }
        for d in &parsed.diagnostics {
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
        }
        if args.json {
            let obj = serde_json::json!({
                "file": display,
                "valid": !buildspec::has_errors(&parsed.diagnostics),
                "diagnostics": parsed.diagnostics,
            });
            println!("{obj}");
        } else {
            for d in &parsed.diagnostics {
                println!("{}", buildspec::render(&display, d));
            }
        }
        if buildspec::has_errors(&parsed.diagnostics) && worst == ExitStatus::Success {
            worst = ExitStatus::Failed;
        }
    }
    if !args.json {
        eprintln!(
            "{} file(s) checked: {errors} error(s), {warnings} warning(s)",
            args.files.len()
        );
    }
    worst
}
