//! Format-preserving YAML scalar replacement.
//!
//! The yaml-rust2 parser reports a start [`yaml_rust2::scanner::Marker`] (a *char* index,
//! 1-based line) for every event but no end. [`parse`] builds a small tree of the documents
//! whose scalars carry the exact byte range of their source text (quotes included); the end
//! is found by scanning the source according to the scalar's style and is verified against
//! the parsed value, so a scalar whose text cannot be located exactly is simply not editable
//! (`span == None`). Edits are byte-range replacements applied back to front: everything
//! outside the replaced ranges (comments, order, indentation, blank lines, `---`) is kept.

use std::ops::Range;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// One step of a path inside a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// A path: document index, then keys and sequence indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YamlPath {
    pub doc: usize,
    pub segs: Vec<PathSeg>,
}

impl std::fmt::Display for YamlPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "doc{}", self.doc)?;
        for s in &self.segs {
            match s {
                PathSeg::Key(k) => write!(f, ".{k}")?,
                PathSeg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub value: String,
    pub style: TScalarStyle,
    /// Byte range of the scalar's source text, quotes included; `None` when it could not be
    /// located exactly (block scalars, multi-line plain scalars, escapes).
    pub span: Option<Range<usize>>,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar(Scalar),
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Alias,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    /// Byte offset where the node starts (as reported by the parser).
    pub start: usize,
    /// True for `{...}` / `[...]` collections.
    pub flow: bool,
}

impl Node {
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.value.as_str())
    }
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }
    /// Value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

/// A parsed multi-document YAML file.
#[derive(Debug, Clone)]
pub struct YamlDocs {
    pub docs: Vec<Node>,
}

/// Why a file could not be parsed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("YAML syntax error at line {line}, column {col}: {info}; fix the file or exclude it from the bump")]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub info: String,
}

struct Builder<'a> {
    src: &'a str,
    /// char index -> byte index
    char_to_byte: Vec<usize>,
    events: Vec<(Event, usize)>,
    pos: usize,
    /// Collections open around the node being built.
    depth: usize,
}

/// Deepest nesting of collections accepted (block collections have no limit in the
/// parser, and the tree is built recursively): the one limit every YAML reader shares.
pub const MAX_DEPTH: usize = crate::buildspec::yaml::LIMITS.max_depth;

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let before = src.get(..at).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The byte order mark a YAML stream may start with (YAML 1.2, section 5.2).
pub const BOM: char = '\u{feff}';

/// Parse `src` into span-carrying documents. A byte order mark at the start is not part of
/// the content (yaml-rust2 alone would read it as the first character of the first scalar:
/// a key `\u{feff}images`, or a comment turned into a scalar); offsets stay those of `src`.
pub fn parse(src: &str) -> Result<YamlDocs, YamlError> {
    let Some(body) = src.strip_prefix(BOM) else {
        return parse_text(src);
    };
    let mut docs = parse_after_bom(body)?;
    for d in &mut docs.docs {
        shift(d, BOM.len_utf8());
    }
    Ok(docs)
}

/// Move every offset of `node` by `by` bytes.
fn shift(node: &mut Node, by: usize) {
    node.start += by;
    match &mut node.kind {
        NodeKind::Scalar(s) => {
            if let Some(r) = &mut s.span {
                *r = r.start + by..r.end + by;
            }
        }
        NodeKind::Map(m) => {
            for (k, v) in m {
                shift(k, by);
                shift(v, by);
            }
        }
        NodeKind::Seq(items) => {
            for n in items {
                shift(n, by);
            }
        }
        NodeKind::Alias => {}
    }
}

/// [`parse`] for the text after a byte order mark already taken off: another mark here is
/// content (as in `parse`), not a second stream start.
pub fn parse_after_bom(src: &str) -> Result<YamlDocs, YamlError> {
    parse_text(src)
}

fn parse_text(src: &str) -> Result<YamlDocs, YamlError> {
    // The scanner takes NUL for the end of the input: the rest would be silently ignored.
    if let Some(at) = src.find('\0') {
        let (line, col) = line_col(src, at);
        return Err(YamlError {
            line,
            col,
            info: "a NUL byte, which YAML text cannot hold (is it a binary file?)".into(),
        });
    }
    // The size limit every YAML reader shares (nesting: MAX_DEPTH below).
    crate::buildspec::yaml::Guard::start(src).map_err(|e| YamlError {
        line: 1,
        col: 1,
        info: e.to_string(),
    })?;
    let mut char_to_byte: Vec<usize> = src.char_indices().map(|(b, _)| b).collect();
    char_to_byte.push(src.len());
    let mut parser = Parser::new_from_str(src);
    let mut events = Vec::new();
    loop {
        match parser.next_token() {
            Ok((ev, mark)) => {
                let end = matches!(ev, Event::StreamEnd);
                let byte = char_to_byte.get(mark.index()).copied().unwrap_or(src.len());
                events.push((ev, byte));
                if end {
                    break;
                }
            }
            Err(e) => {
                // The scanner also ends a line at a bare `\r`; lines here are `\n`-ended.
                let byte = char_to_byte
                    .get(e.marker().index())
                    .copied()
                    .unwrap_or(src.len());
                let (line, col) = line_col(src, byte);
                return Err(YamlError {
                    line,
                    col,
                    info: e.info().to_string(),
                });
            }
        }
    }
    let mut b = Builder {
        src,
        char_to_byte,
        events,
        pos: 0,
        depth: 0,
    };
    let _ = &b.char_to_byte;
    let mut docs = Vec::new();
    while b.pos < b.events.len() {
        let (ev, _) = &b.events[b.pos];
        match ev {
            Event::DocumentStart => {
                b.pos += 1;
                // A document holds exactly one node (possibly an empty plain scalar).
                if let Some(Event::DocumentEnd) = b.events.get(b.pos).map(|e| &e.0) {
                    b.pos += 1;
                    continue;
                }
                let node = b.node()?;
                docs.push(node);
            }
            _ => b.pos += 1,
        }
    }
    Ok(YamlDocs { docs })
}

impl Builder<'_> {
    fn node(&mut self) -> Result<Node, YamlError> {
        let Some((ev, start)) = self.events.get(self.pos).cloned() else {
            return Err(YamlError {
                line: 0,
                col: 0,
                info: "unexpected end of events".into(),
            });
        };
        self.pos += 1;
        let flow_at = |s: usize| {
            let rest = self.src.get(s..).unwrap_or("");
            let rest = skip_props(rest);
            rest.starts_with('{') || rest.starts_with('[')
        };
        match ev {
            Event::Scalar(value, style, _, _) => {
                let span = scalar_span(self.src, start, &value, style);
                Ok(Node {
                    kind: NodeKind::Scalar(Scalar { value, style, span }),
                    start,
                    flow: false,
                })
            }
            Event::Alias(_) => Ok(Node {
                kind: NodeKind::Alias,
                start,
                flow: false,
            }),
            Event::SequenceStart(..) | Event::MappingStart(..) if self.depth >= MAX_DEPTH => {
                let (line, col) = line_col(self.src, start);
                Err(YamlError {
                    line,
                    col,
                    info: format!("nested more than {MAX_DEPTH} levels deep"),
                })
            }
            Event::SequenceStart(..) => {
                self.depth += 1;
                let mut items = Vec::new();
                loop {
                    match self.events.get(self.pos).map(|e| &e.0) {
                        Some(Event::SequenceEnd) => {
                            self.pos += 1;
                            break;
                        }
                        None => break,
                        _ => items.push(self.node()?),
                    }
                }
                self.depth -= 1;
                Ok(Node {
                    kind: NodeKind::Seq(items),
                    start,
                    flow: flow_at(start),
                })
            }
            Event::MappingStart(..) => {
                self.depth += 1;
                let mut entries = Vec::new();
                loop {
                    match self.events.get(self.pos).map(|e| &e.0) {
                        Some(Event::MappingEnd) => {
                            self.pos += 1;
                            break;
                        }
                        None => break,
                        _ => {
                            let k = self.node()?;
                            let v = self.node()?;
                            entries.push((k, v));
                        }
                    }
                }
                self.depth -= 1;
                Ok(Node {
                    kind: NodeKind::Map(entries),
                    start,
                    flow: flow_at(start),
                })
            }
            other => Err(YamlError {
                line: 0,
                col: 0,
                info: format!("unexpected event {other:?}"),
            }),
        }
    }
}

/// Skip anchors (`&a`) and tags (`!t`) in front of a node.
fn skip_props(mut s: &str) -> &str {
    loop {
        if s.starts_with('&') || s.starts_with('!') {
            let n = s.find([' ', '\t', '\n', '\r']).unwrap_or(s.len());
            s = s[n..].trim_start_matches([' ', '\t']);
        } else {
            return s;
        }
    }
}

/// Locate a scalar's source text starting at byte `start`.
fn scalar_span(src: &str, start: usize, value: &str, style: TScalarStyle) -> Option<Range<usize>> {
    let rest = src.get(start..)?;
    let trimmed = skip_props(rest);
    let start = start + (rest.len() - trimmed.len());
    let rest = trimmed;
    match style {
        TScalarStyle::Plain => {
            if value.is_empty() || value.contains('\n') {
                return None;
            }
            // A single-line plain scalar's text is exactly its value.
            if rest.starts_with(value) {
                let end = start + value.len();
                // Must not continue on the next line (multi-line plain scalars fold).
                Some(start..end)
            } else {
                None
            }
        }
        TScalarStyle::SingleQuoted => {
            let b = rest.as_bytes();
            if b.first() != Some(&b'\'') {
                return None;
            }
            let mut i = 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    let inner = &rest[1..i];
                    if inner.contains('\n') || inner.replace("''", "'") != value {
                        return None;
                    }
                    return Some(start..start + i + 1);
                }
                i += 1;
            }
            None
        }
        TScalarStyle::DoubleQuoted => {
            let b = rest.as_bytes();
            if b.first() != Some(&b'"') {
                return None;
            }
            let mut i = 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        let inner = &rest[1..i];
                        if inner.contains('\n') || inner.contains('\\') || inner != value {
                            return None;
                        }
                        return Some(start..start + i + 1);
                    }
                    _ => i += 1,
                }
            }
            None
        }
        TScalarStyle::Literal | TScalarStyle::Folded => None,
    }
}

/// Would `v` load back as the same string if written as a plain scalar?
pub fn plain_safe(v: &str) -> bool {
    if v.is_empty() || v.trim() != v {
        return false;
    }
    let first = v.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if v.contains(": ") || v.contains(" #") || v.ends_with(':') || v.contains('\n') {
        return false;
    }
    // Must stay a string: not a number, bool or null in YAML 1.1/1.2.
    let lower = v.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "null"
            | "~"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".nan"
            | ".inf"
            | "-.inf"
    ) {
        return false;
    }
    let numeric = v.parse::<f64>().is_ok()
        || v.parse::<i64>().is_ok()
        || (v.starts_with("0x") && i64::from_str_radix(&v[2..], 16).is_ok())
        || (v.starts_with("0o") && i64::from_str_radix(&v[2..], 8).is_ok());
    !numeric
}

/// Render `new` in the style of the scalar it replaces.
pub fn render_scalar(new: &str, style: TScalarStyle) -> String {
    match style {
        TScalarStyle::SingleQuoted => format!("'{}'", new.replace('\'', "''")),
        TScalarStyle::DoubleQuoted => format!("\"{}\"", escape_double(new)),
        _ => {
            if plain_safe(new) {
                new.to_string()
            } else {
                format!("\"{}\"", escape_double(new))
            }
        }
    }
}

fn escape_double(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c => o.push(c),
        }
    }
    o
}

/// One byte-range replacement. An insertion has an empty range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub text: String,
    /// Paths of the values changed or added (for reports and tests).
    pub paths: Vec<YamlPath>,
    /// True when this edit adds a key that was not there.
    pub inserted: bool,
    /// Which editor produced it (`kustomize`, `helm`, `manifest`, `flux-setter`, `argocd-source`).
    pub editor: &'static str,
}

/// Apply non-overlapping edits. Edits on the same range are deduplicated (first wins).
pub fn apply_edits(src: &str, edits: &[Edit]) -> String {
    let mut sorted: Vec<&Edit> = Vec::new();
    for e in edits {
        let overlaps = sorted.iter().any(|o| {
            o.range == e.range
                || (o.range.start < e.range.end && e.range.start < o.range.end)
                || (e.range.is_empty() && o.range.is_empty() && o.range.start == e.range.start)
        });
        if !overlaps {
            sorted.push(e);
        }
    }
    sorted.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(src.len() + 128);
    let mut at = 0;
    for e in sorted {
        if e.range.start < at || e.range.end > src.len() {
            continue;
        }
        out.push_str(&src[at..e.range.start]);
        out.push_str(&e.text);
        at = e.range.end;
    }
    out.push_str(&src[at..]);
    out
}

// Where edits go, lines end where the YAML scanner ends them: at `\n`, `\r\n` and a bare
// `\r` (line numbers in messages, [`line_col`], count `\n` only, as `str::lines` does).

/// Byte offset of the start of the line holding `pos`.
pub fn line_start(src: &str, pos: usize) -> usize {
    src[..pos.min(src.len())]
        .rfind(['\n', '\r'])
        .map_or(0, |i| i + 1)
}

/// Byte offset just after the line break ending the line holding `pos` (or the end of
/// input).
pub fn line_end_incl(src: &str, pos: usize) -> usize {
    let from = pos.min(src.len());
    let rest = &src[from..];
    match rest.find(['\n', '\r']) {
        None => src.len(),
        Some(i) if rest[i..].starts_with("\r\n") => from + i + 2,
        Some(i) => from + i + 1,
    }
}

/// Does `src` end with a line break?
pub fn ends_with_break(src: &str) -> bool {
    src.ends_with(['\n', '\r'])
}

/// The rest of the line after `pos` (without the line break).
pub fn rest_of_line(src: &str, pos: usize) -> &str {
    let s = &src[pos.min(src.len())..];
    let end = s.find(['\n', '\r']).unwrap_or(s.len());
    &s[..end]
}

/// Visit every node with its path.
pub fn walk<'a>(node: &'a Node, path: &mut Vec<PathSeg>, f: &mut dyn FnMut(&[PathSeg], &'a Node)) {
    f(path, node);
    match &node.kind {
        NodeKind::Map(m) => {
            for (k, v) in m {
                path.push(PathSeg::Key(k.as_str().unwrap_or("?").to_string()));
                walk(v, path, f);
                path.pop();
            }
        }
        NodeKind::Seq(s) => {
            for (i, v) in s.iter().enumerate() {
                path.push(PathSeg::Index(i));
                walk(v, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn spans_cover_quotes_and_non_ascii() {
        let src = "# ü comment\na: plain # c\nb: 'single ''q'''\nc: \"dbl\"\nd: &x anch\ne: |\n  block\nf: [x, 'y']\n";
        let docs = parse(src).unwrap_or_else(|e| panic!("{e}"));
        let root = &docs.docs[0];
        let sp = |k: &str| {
            let s = root
                .get(k)
                .and_then(|n| n.as_scalar())
                .and_then(|s| s.span.clone());
            s.map(|r| src[r].to_string())
        };
        assert_eq!(sp("a").as_deref(), Some("plain"));
        assert_eq!(sp("b").as_deref(), Some("'single ''q'''"));
        assert_eq!(sp("c").as_deref(), Some("\"dbl\""));
        assert_eq!(sp("d").as_deref(), Some("anch"));
        assert_eq!(sp("e"), None);
        let f = root
            .get("f")
            .and_then(|n| n.as_seq())
            .map(|s| s.to_vec())
            .unwrap_or_default();
        assert!(root.get("f").map(|n| n.flow).unwrap_or(false));
        assert_eq!(
            f[1].as_scalar()
                .and_then(|s| s.span.clone())
                .map(|r| &src[r]),
            Some("'y'")
        );
    }

    #[test]
    fn nul_bytes_and_deep_nesting_are_errors_with_a_position() {
        let e = parse("a: 1\nb: x\0y\n").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("YAML syntax error at line 2, column 5: a NUL byte, which YAML text cannot hold (is it a binary file?); fix the file or exclude it from the bump")
        );
        // Block nesting has no limit in the parser; building the tree must not overflow.
        let deep = "- ".repeat(10_000) + "x\n";
        let e = parse(&deep).err().map(|e| e.info);
        let expected = format!("nested more than {MAX_DEPTH} levels deep");
        assert_eq!(e.as_deref(), Some(expected.as_str()));
        let ok = "- ".repeat(MAX_DEPTH) + "x\n";
        assert!(parse(&ok).is_ok());
        let flow = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse(&flow).is_err());
    }

    #[test]
    fn a_byte_order_mark_opens_the_stream_and_offsets_stay_the_texts() {
        for src in [
            "\u{feff}# c\nimages:\n- name: a\n",
            "\u{feff}images:\n- name: a\n",
        ] {
            let docs = parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
            let root = &docs.docs[0];
            assert!(root.get("images").is_some(), "{src:?}: {root:?}");
            let name = root.get("images").and_then(|n| n.as_seq()).unwrap()[0]
                .get("name")
                .and_then(|n| n.as_scalar())
                .and_then(|s| s.span.clone())
                .unwrap();
            assert_eq!(&src[name], "a");
        }
        // Only at the start: elsewhere it is content.
        assert!(parse("a: 1\n\u{feff}b: 2\n").is_ok_and(|d| d.docs[0].get("b").is_none()));
    }

    /// The scanner also ends a line at a bare `\r`; an error's line counts `\n` as
    /// [`line_col`] (NUL bytes, nesting) and `str::lines` do.
    #[test]
    fn error_lines_count_newlines_not_bare_carriage_returns() {
        let e = parse("a: 1\rb: [\rc").err().map(|e| (e.line, e.col));
        assert_eq!(e, Some((1, 11)));
        let e = parse("a: 1\r\nb: [\r\nc").err().map(|e| (e.line, e.col));
        assert_eq!(e, Some((3, 1)));
    }

    #[test]
    fn edit_lines_end_where_the_scanner_ends_them() {
        for br in ["\n", "\r\n", "\r"] {
            let src = format!("a: 1 # c{br}b: 2{br}");
            let b = src.find('b').unwrap();
            assert_eq!(line_end_incl(&src, 2), b, "{src:?}");
            assert_eq!(line_start(&src, b + 3), b, "{src:?}");
            assert_eq!(rest_of_line(&src, 4), " # c", "{src:?}");
            assert_eq!(line_end_incl(&src, b), src.len(), "{src:?}");
            assert!(ends_with_break(&src));
        }
    }

    #[test]
    fn plain_safety() {
        assert!(plain_safe("nginx:1.2@sha256:ab"));
        assert!(!plain_safe("1.25"));
        assert!(!plain_safe("true"));
        assert!(plain_safe("v1.25"));
        assert!(plain_safe("sha256:abc"));
    }
}
