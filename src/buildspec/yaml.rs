//! A YAML node tree that remembers where every node was written.
//!
//! Built from yaml-rust2's low-level event parser so every scalar, sequence and mapping
//! keeps its 1-based line and column. Design choices:
//!
//! - Anchors and aliases are resolved here: an alias becomes a copy of the anchored node,
//!   and the copy keeps the positions of the *anchored* node (where the text was written), so a
//!   problem inside a reused block points at the block itself. Copies are budgeted so an
//!   "alias bomb" is reported instead of eating memory.
//! - Merge keys (`<<: *base`, `<<: [*a, *b]`) are expanded: keys written in the mapping win
//!   over merged ones, earlier merge sources win over later ones.
//! - Duplicate keys produce a warning; like CodeBuild's parser, the last value wins.
//! - Only the first document of a multi-document stream is used (a warning says so).
//! - Nesting deeper than [`MAX_DEPTH`] is reported as an error instead of risking the stack.
//! - A plain empty scalar, `~` and `null` (any case) are [`Node::Null`].

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diagnostic::Diagnostic;
use super::model::Pos;

/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 200;
/// Most nodes that alias expansion may copy in one document.
const ALIAS_BUDGET: usize = 100_000;

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Any non-null scalar. `text` is the value as YAML reads it (quotes removed, escapes
    /// resolved); plain numbers and booleans stay as written (`1.10` stays `1.10`).
    Scalar {
        text: String,
        style: ScalarStyle,
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    Map {
        entries: Vec<(Node, Node)>,
        pos: Pos,
    },
    /// An empty value, `~` or `null`. `pos` is where the parser saw it (for an empty value
    /// that is usually the next token, so callers prefer the key's position).
    Null {
        pos: Pos,
    },
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. }
            | Node::Seq { pos, .. }
            | Node::Map { pos, .. }
            | Node::Null { pos } => *pos,
        }
    }

    /// The text of a scalar, `None` for anything else (including null).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null { .. })
    }

    /// "a mapping", "a list", "a string", "an empty value": for `found ...` messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a string",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
            Node::Null { .. } => "an empty value",
        }
    }

    /// Number of nodes in this subtree (for the alias budget).
    fn size(&self) -> usize {
        match self {
            Node::Scalar { .. } | Node::Null { .. } => 1,
            Node::Seq { items, .. } => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Map { entries, .. } => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }
}

/// The result of reading a YAML text: the first document's root (`None` when the text has
/// no document or could not be read) and the problems found on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub root: Option<Node>,
    pub diagnostics: Vec<Diagnostic>,
}

fn pos_of(m: &Marker) -> Pos {
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX).max(1),
        col: u32::try_from(m.col())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1),
    }
}

fn is_null_plain(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn convert_style(s: TScalarStyle) -> ScalarStyle {
    match s {
        TScalarStyle::Plain => ScalarStyle::Plain,
        TScalarStyle::SingleQuoted => ScalarStyle::SingleQuoted,
        TScalarStyle::DoubleQuoted => ScalarStyle::DoubleQuoted,
        TScalarStyle::Literal => ScalarStyle::Literal,
        TScalarStyle::Folded => ScalarStyle::Folded,
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        /// String key → index in `entries`.
        index: HashMap<String, usize>,
        key: Option<Node>,
        merges: Vec<Node>,
        pos: Pos,
        anchor: usize,
    },
}

/// Turns parser events into [`Node`]s without recursion.
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    extra_document_pos: Option<Pos>,
    diagnostics: Vec<Diagnostic>,
    /// Set when building must stop (too deep, alias bomb).
    fatal: bool,
    alias_budget: usize,
}

impl Builder {
    fn new() -> Self {
        Builder {
            alias_budget: ALIAS_BUDGET,
            ..Builder::default()
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor == 0 {
            return;
        }
        // A later anchor with the same name replaces the earlier one.
        self.anchors.insert(anchor, node.clone());
    }

    fn finish_node(&mut self, node: Node, anchor: usize) {
        self.remember(anchor, &node);
        match self.stack.last_mut() {
            None => {
                self.documents += 1;
                if self.documents == 1 {
                    self.root = Some(node);
                } else if !node.is_null() && self.extra_document_pos.is_none() {
                    self.extra_document_pos = Some(node.pos());
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                index,
                key,
                merges,
                pos,
                ..
            }) => match key.take() {
                None => {
                    // yaml-rust2 marks a block mapping's start one token late; the first
                    // key is where the mapping really starts.
                    let kp = node.pos();
                    if entries.is_empty()
                        && merges.is_empty()
                        && (kp.line, kp.col) < (pos.line, pos.col)
                    {
                        *pos = kp;
                    }
                    *key = Some(node);
                }
                Some(k) => {
                    if matches!(&k, Node::Scalar { text, style: ScalarStyle::Plain, .. } if text == "<<")
                    {
                        merges.push(node);
                        return;
                    }
                    let Some(name) = k.as_str() else {
                        entries.push((k, node));
                        return;
                    };
                    match index.get(name).and_then(|&i| entries.get_mut(i)) {
                        Some(slot) => {
                            // Like a Java LinkedHashMap: the entry keeps its place, the
                            // later key and value win.
                            let first = slot.0.pos();
                            self.diagnostics.push(
                                Diagnostic::warning(
                                    k.pos(),
                                    format!(
                                        "duplicate key \"{name}\" (CodeBuild uses the last one)"
                                    ),
                                )
                                .with_hint(format!(
                                    "the earlier \"{name}\" at line {} is ignored; remove one of them",
                                    first.line
                                )),
                            );
                            *slot = (k, node);
                        }
                        None => {
                            index.insert(name.to_string(), entries.len());
                            entries.push((k, node));
                        }
                    }
                }
            },
        }
    }

    fn end_map(
        &mut self,
        mut entries: Vec<(Node, Node)>,
        mut index: HashMap<String, usize>,
        merges: Vec<Node>,
        pos: Pos,
        anchor: usize,
    ) {
        for source in merges {
            let maps: Vec<Node> = match source {
                Node::Seq { items, .. } => items,
                other => vec![other],
            };
            for m in maps {
                match m {
                    Node::Map {
                        entries: merged, ..
                    } => {
                        for (k, v) in merged {
                            match k.as_str() {
                                Some(name) if index.contains_key(name) => {}
                                Some(name) => {
                                    index.insert(name.to_string(), entries.len());
                                    entries.push((k, v));
                                }
                                None => entries.push((k, v)),
                            }
                        }
                    }
                    other => self.diagnostics.push(Diagnostic::error(
                        other.pos(),
                        format!("a merge key (<<) needs a mapping, found {}", other.kind()),
                    )),
                }
            }
        }
        self.finish_node(Node::Map { entries, pos }, anchor);
    }

    fn push_frame(&mut self, frame: Frame, pos: Pos) {
        if self.stack.len() >= MAX_DEPTH {
            self.diagnostics.push(Diagnostic::error(
                pos,
                format!("yaml nesting is deeper than {MAX_DEPTH} levels"),
            ));
            self.fatal = true;
            return;
        }
        self.stack.push(frame);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.fatal {
            return;
        }
        let pos = pos_of(&mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let node = if style == TScalarStyle::Plain && is_null_plain(&text) {
                    Node::Null { pos }
                } else {
                    Node::Scalar {
                        text,
                        style: convert_style(style),
                        pos,
                    }
                };
                self.finish_node(node, anchor);
            }
            Event::Alias(id) => {
                let found = self.anchors.get(&id).cloned();
                match found {
                    Some(node) => {
                        let size = node.size();
                        if size > self.alias_budget {
                            self.diagnostics.push(Diagnostic::error(
                                pos,
                                "aliases expand to too many nodes (alias bomb?)",
                            ));
                            self.fatal = true;
                            return;
                        }
                        self.alias_budget -= size;
                        self.finish_node(node, 0);
                    }
                    None => {
                        // yaml-rust2 rejects unknown aliases itself; be safe anyway.
                        self.diagnostics
                            .push(Diagnostic::error(pos, "alias to an unknown anchor"));
                        self.finish_node(Node::Null { pos }, 0);
                    }
                }
            }
            Event::SequenceStart(anchor, _) => self.push_frame(
                Frame::Seq {
                    items: Vec::new(),
                    pos,
                    anchor,
                },
                pos,
            ),
            Event::MappingStart(anchor, _) => self.push_frame(
                Frame::Map {
                    entries: Vec::new(),
                    index: HashMap::new(),
                    key: None,
                    merges: Vec::new(),
                    pos,
                    anchor,
                },
                pos,
            ),
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, pos, anchor }) = self.stack.pop() {
                    self.finish_node(Node::Seq { items, pos }, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    entries,
                    index,
                    merges,
                    pos,
                    anchor,
                    ..
                }) = self.stack.pop()
                {
                    self.end_map(entries, index, merges, pos, anchor);
                }
            }
            Event::DocumentStart => {
                // Anchors are per document.
                self.anchors.clear();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Reads `text` into a [`Node`] tree. Never panics; syntax errors become diagnostics.
pub fn load(text: &str) -> Loaded {
    let mut builder = Builder::new();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(text, &mut builder)));
    let mut diagnostics = std::mem::take(&mut builder.diagnostics);
    let mut root = builder.root.take();
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            root = None;
            diagnostics.push(e);
        }
        Err(_) => {
            root = None;
            diagnostics.push(Diagnostic::error(
                Pos { line: 1, col: 1 },
                "the yaml parser failed on this file",
            ));
        }
    }
    if builder.fatal {
        root = None;
    }
    if let Some(p) = builder.extra_document_pos {
        diagnostics.push(
            Diagnostic::warning(p, "only the first yaml document is used")
                .with_hint("a buildspec is one document; remove the extra `---` and what follows"),
        );
    }
    Loaded { root, diagnostics }
}

fn drive(text: &str, builder: &mut Builder) -> Result<(), Diagnostic> {
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((ev, mark)) => {
                let end = ev == Event::StreamEnd;
                builder.on_event(ev, mark);
                if end || builder.fatal {
                    return Ok(());
                }
            }
            Err(e) => {
                let info = e.info();
                let mut d = Diagnostic::error(pos_of(e.marker()), format!("invalid yaml: {info}"));
                if text.contains('\t') && info.contains("tab") {
                    d = d.with_hint("yaml does not allow tabs for indentation; use spaces");
                }
                return Err(d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        let l = load(text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        match l.root {
            Some(n) => n,
            None => panic!("no root for {text:?}"),
        }
    }

    fn at(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
        match n {
            Node::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no key {key}")),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let n = root("a: 1\nb:\n  - x\n  - 'y'\n");
        assert_eq!(n.pos(), at(1, 1));
        let a = get(&n, "a");
        assert_eq!(a.pos(), at(1, 4));
        let b = get(&n, "b");
        assert_eq!(b.pos(), at(3, 3));
        if let Node::Seq { items, .. } = b {
            assert_eq!(items[1].pos(), at(4, 5));
            assert_eq!(
                items[1],
                Node::Scalar {
                    text: "y".into(),
                    style: ScalarStyle::SingleQuoted,
                    pos: at(4, 5)
                }
            );
        } else {
            panic!("not a seq");
        }
    }

    #[test]
    fn plain_numbers_stay_as_written() {
        let n = root("v: 1.10\nb: yes\n");
        assert_eq!(get(&n, "v").as_str(), Some("1.10"));
        assert_eq!(get(&n, "b").as_str(), Some("yes"));
    }

    #[test]
    fn nulls() {
        let n = root("a:\nb: ~\nc: null\nd: 'null'\n");
        assert!(get(&n, "a").is_null());
        assert!(get(&n, "b").is_null());
        assert!(get(&n, "c").is_null());
        assert_eq!(get(&n, "d").as_str(), Some("null"));
    }

    #[test]
    fn block_scalar_styles() {
        let n = root("a: |\n  x\n  y\nb: >\n  x\n  y\n");
        assert!(matches!(
            get(&n, "a"),
            Node::Scalar { text, style: ScalarStyle::Literal, .. } if text == "x\ny\n"
        ));
        assert!(matches!(
            get(&n, "b"),
            Node::Scalar { text, style: ScalarStyle::Folded, .. } if text == "x y\n"
        ));
    }

    #[test]
    fn aliases_copy_the_anchored_node_with_its_positions() {
        let n = root("a: &x\n  k: v\nb: *x\n");
        assert_eq!(get(&n, "a"), get(&n, "b"));
        assert_eq!(get(&n, "b").pos(), at(2, 3));
    }

    #[test]
    fn merge_keys() {
        let n = root("base: &b\n  x: 1\n  y: 2\nc:\n  <<: *b\n  y: 3\n");
        let c = get(&n, "c");
        assert_eq!(get(c, "x").as_str(), Some("1"));
        assert_eq!(get(c, "y").as_str(), Some("3"));
        let n = root("a: &a {p: 1}\nb: &b {p: 2, q: 2}\nc:\n  <<: [*a, *b]\n");
        let c = get(&n, "c");
        assert_eq!(get(c, "p").as_str(), Some("1"));
        assert_eq!(get(c, "q").as_str(), Some("2"));
    }

    #[test]
    fn duplicate_keys_warn_and_last_wins() {
        let l = load("a: 1\nb: 2\na: 3\n");
        assert_eq!(l.diagnostics.len(), 1);
        assert_eq!((l.diagnostics[0].line, l.diagnostics[0].col), (3, 1));
        assert!(!l.diagnostics[0].is_error());
        let n = l.root.unwrap_or(Node::Null { pos: at(1, 1) });
        assert_eq!(get(&n, "a").as_str(), Some("3"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let l = load("a: b\n  c: d\n");
        assert!(l.root.is_none());
        assert_eq!(l.diagnostics.len(), 1);
        assert!(l.diagnostics[0].is_error());
        assert_eq!(l.diagnostics[0].line, 2);
        let l = load("a: [1, 2\n");
        assert!(l.root.is_none());
        assert!(l.diagnostics[0].is_error());
    }

    #[test]
    fn weird_inputs_do_not_panic() {
        let deep_flow = "[".repeat(10_000);
        let deep_block = "- ".repeat(10_000) + "x\n";
        let deep_map: String = (0..5000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        for text in [
            "",
            "---",
            "---\n...\n",
            "x",
            "- a\n- b\n",
            "\t- a",
            "a:\n\t- b\n",
            ":",
            "? a\n: b\n",
            "*unknown",
            "&a a: *a",
            "{a: 1, a: 2}",
            "\u{feff}a: 1",
            "a: \"unterminated",
            "%YAML 1.2\n---\na: 1",
            "!!binary x",
            "a: 1\n---\nb: 2\n",
            deep_flow.as_str(),
            deep_block.as_str(),
            deep_map.as_str(),
            bomb,
        ] {
            let l = load(text);
            let _ = l.root;
        }
    }

    #[test]
    fn too_deep_is_an_error() {
        let l = load(&("- ".repeat(500) + "x\n"));
        assert!(l.root.is_none());
        assert!(l.diagnostics.iter().any(Diagnostic::is_error));
    }

    #[test]
    fn alias_bomb_is_an_error() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            text.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 10].join(", ")
            ));
        }
        let l = load(&text);
        assert!(l.root.is_none());
        assert!(l.diagnostics.iter().any(Diagnostic::is_error));
    }

    #[test]
    fn extra_documents_warn() {
        let l = load("a: 1\n---\nb: 2\n");
        assert_eq!(l.diagnostics.len(), 1);
        assert!(!l.diagnostics[0].is_error());
        assert!(l.root.is_some());
        let l = load("---\na: 1\n");
        assert!(l.diagnostics.is_empty());
    }
}
