use super::args::ValidateArgs;
use super::exit::ExitStatus;
use crate::buildspec::yaml::{self, LIMITS};
use crate::buildspec::{self, Diagnostic, Severity};

pub fn run(args: &ValidateArgs) -> ExitStatus {
    let mut worst = ExitStatus::Success;
    let (mut errors, mut warnings) = (0usize, 0usize);
    for path in &args.files {
        let display = path.display().to_string();
        let start = crate::buildspec::model::Pos { line: 1, col: 1 };
        let too_large = |size: u64| {
            Diagnostic::error(
                start,
                format!(
                    "the file is {size} bytes, more than the {} MiB runner reads; is it a buildspec?",
                    LIMITS.max_bytes >> 20
                ),
            )
        };
        let bytes = match std::fs::metadata(path) {
            Ok(m) if m.len() > LIMITS.max_bytes as u64 => Err(too_large(m.len())),
            _ => match std::fs::read(path) {
                Ok(b) => Ok(b),
                Err(e) => {
                    eprintln!("error: cannot read {display}: {e}");
                    worst = ExitStatus::Setup;
                    continue;
                }
            },
        };
        // Invalid UTF-8 or a file too large is an error diagnostic like any other.
        let mut diagnostics = match bytes
            .as_deref()
            .map_err(Clone::clone)
            .and_then(yaml::utf8_text)
        {
            Ok(text) => buildspec::parse(text).diagnostics,
            Err(d) => vec![d],
        };
        if args.strict {
            buildspec::apply_strict(&mut diagnostics);
        }
        for d in &diagnostics {
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
        }
        if args.json {
            let obj = serde_json::json!({
                "file": display,
                "valid": !buildspec::has_errors(&diagnostics),
                "diagnostics": diagnostics,
            });
            println!("{obj}");
        } else {
            for d in &diagnostics {
                println!("{}", buildspec::render(&display, d));
            }
        }
        if buildspec::has_errors(&diagnostics) && worst == ExitStatus::Success {
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
