//! `go.mod`: `require` lines, single and in blocks, including `// indirect` ones.
//! Simple `replace` directives are honoured: `old [v] => new v` swaps the module and
//! version; a replacement by a local path (`./x`, `../x`, `/x`) drops the module and
//! reports it as skipped.

use crate::scan::deps::lockfile::{line_no, ParseError, Parsed};

struct Require {
    module: String,
    version: String,
    line: u32,
}

struct Replace {
    old: String,
    old_version: Option<String>,
    new: String,
    new_version: Option<String>,
}

fn strip_comment(l: &str) -> &str {
    l.split("//").next().unwrap_or(l).trim()
}

fn unquote(s: &str) -> &str {
    s.trim_matches('"').trim_matches('`')
}

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let mut requires = Vec::new();
    let mut replaces = Vec::new();
    let mut block: Option<&str> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.is_empty() {
            continue;
        }
        let (verb, rest) = match block {
            Some(b) => {
                if line == ")" {
                    block = None;
                    continue;
                }
                (b, line)
            }
            None => {
                let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                let rest = rest.trim();
                if rest == "(" {
                    block = Some(verb);
                    continue;
                }
                (verb, rest)
            }
        };
        let fields: Vec<&str> = rest.split_whitespace().map(unquote).collect();
        match verb {
            "require" => match fields.as_slice() {
                [m, v] => requires.push(Require {
                    module: m.to_string(),
                    version: v.to_string(),
                    line: line_no(i),
                }),
                _ => {
                    return Err(ParseError::new(
                        path,
                        Some(line_no(i)),
                        format!("malformed require `{rest}`"),
                    ))
                }
            },
            "replace" => {
                let Some(arrow) = fields.iter().position(|f| *f == "=>") else {
                    return Err(ParseError::new(
                        path,
                        Some(line_no(i)),
                        format!("malformed replace `{rest}`"),
                    ));
                };
                let (lhs, rhs) = fields.split_at(arrow);
                let rhs = &rhs[1..];
                if lhs.is_empty() || rhs.is_empty() || lhs.len() > 2 || rhs.len() > 2 {
                    return Err(ParseError::new(
                        path,
                        Some(line_no(i)),
                        format!("malformed replace `{rest}`"),
                    ));
                }
                replaces.push(Replace {
                    old: lhs[0].to_string(),
                    old_version: lhs.get(1).map(|s| s.to_string()),
                    new: rhs[0].to_string(),
                    new_version: rhs.get(1).map(|s| s.to_string()),
                });
            }
            _ => {} // module, go, toolchain, exclude, retract, godebug
        }
    }
    let mut out = Parsed::default();
    for r in requires {
        let rep = replaces
            .iter()
            .find(|p| p.old == r.module && p.old_version.as_ref().is_none_or(|v| *v == r.version));
        match rep {
            Some(p) if p.new_version.is_none() => out.skip(
                Some(r.line),
                format!("{} {}", r.module, r.version),
                format!("replaced by local path {}", p.new),
            ),
            Some(p) => {
                let v = p.new_version.as_deref().unwrap_or(&r.version);
                out.push("Go", &p.new, v, path, Some(r.line));
            }
            None => out.push("Go", &r.module, &r.version, path, Some(r.line)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn requires_and_replaces() {
        let text = "module example.com/app\n\ngo 1.21\n\nrequire github.com/gin-gonic/gin v1.6.0\n\nrequire (\n\tgolang.org/x/text v0.3.2 // indirect\n\tgithub.com/old/mod v1.0.0\n\texample.com/local v0.0.0\n)\n\nreplace github.com/old/mod => github.com/new/mod v1.2.0\nreplace example.com/local => ./local\n";
        let p = parse(text, "go.mod").unwrap();
        let got = p.triples();
        assert_eq!(
            got,
            [
                ("github.com/gin-gonic/gin", "v1.6.0", Some(5)),
                ("golang.org/x/text", "v0.3.2", Some(8)),
                ("github.com/new/mod", "v1.2.0", Some(9)),
            ]
        );
        assert_eq!(p.skipped.len(), 1);
    }

    #[test]
    fn garbage() {
        assert!(parse("require x", "go.mod").is_err());
        assert!(parse("replace a b", "go.mod").is_err());
        for t in ["require (", ")", "replace => x", "require (\n a b c\n"] {
            let _ = parse(t, "go.mod");
        }
    }
}
