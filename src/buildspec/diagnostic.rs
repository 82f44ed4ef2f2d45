//! Compiler-style diagnostics (`buildspec.yml:12:7: error: ...`) for buildspec problems.

use super::model::Pos;

/// How bad a [`Diagnostic`] is: errors stop the build, warnings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a buildspec, at a 1-based line and column.
///
/// `message` is a lowercase fragment (`phases.build.commands[2] must be a string, found a
/// mapping`); `hint` is an optional suggestion printed as `= help: ...`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub line: u32,
    pub col: u32,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(pos: Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, pos, message)
    }

    pub fn warning(pos: Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, pos, message)
    }

    pub fn new(severity: Severity, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            line: pos.line.max(1),
            col: pos.col.max(1),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Renders one diagnostic the way compilers do:
///
/// ```text
/// buildspec.yml:12:7: error: phases.build.commands[2] must be a string, found a mapping
///   = help: quote the whole command: - "echo foo: bar"
/// ```
///
/// No trailing newline.
pub fn render(file: &str, d: &Diagnostic) -> String {
    let mut out = format!("{file}:{}:{}: {}: {}", d.line, d.col, d.severity, d.message);
    if let Some(hint) = &d.hint {
        out.push_str("\n  = help: ");
        out.push_str(hint);
    }
    out
}

/// True when any diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// `--strict`: every warning becomes an error.
pub fn apply_strict(diags: &mut [Diagnostic]) {
    for d in diags {
        d.severity = Severity::Error;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    #[test]
    fn renders_without_hint() {
        let d = Diagnostic::error(
            at(12, 7),
            "phases.build.commands[2] must be a string, found a mapping",
        );
        assert_eq!(
            render("buildspec.yml", &d),
            "buildspec.yml:12:7: error: phases.build.commands[2] must be a string, found a mapping"
        );
    }

    #[test]
    fn renders_hint_on_second_line() {
        let d = Diagnostic::warning(at(3, 1), "unknown key \"enn\" (CodeBuild ignores it)")
            .with_hint("did you mean \"env\"?");
        assert_eq!(
            render("b.yml", &d),
            "b.yml:3:1: warning: unknown key \"enn\" (CodeBuild ignores it)\n  = help: did you mean \"env\"?"
        );
    }

    #[test]
    fn positions_are_at_least_one() {
        let d = Diagnostic::error(at(0, 0), "x");
        assert_eq!((d.line, d.col), (1, 1));
    }

    #[test]
    fn strict_turns_warnings_into_errors() {
        let mut v = vec![Diagnostic::warning(at(1, 1), "w")];
        assert!(!has_errors(&v));
        apply_strict(&mut v);
        assert!(has_errors(&v));
    }

    #[test]
    fn serializes_to_json() {
        let d = Diagnostic::warning(at(2, 3), "m").with_hint("h");
        let json = serde_json::to_string(&d).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"severity":"warning","line":2,"col":3,"message":"m","hint":"h"}"#
        );
        let d = Diagnostic::error(at(2, 3), "m");
        let json = serde_json::to_string(&d).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"severity":"error","line":2,"col":3,"message":"m","hint":null}"#
        );
    }
}
