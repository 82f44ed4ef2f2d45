//! A YAML node tree that remembers where every node was written.
//!
//! Built from yaml-rust2's low-level event parser so every scalar, sequence and mapping
//! keeps its 1-based line and column. Design choices:
//!
//! - Anchors and aliases are resolved here: an alias becomes a copy of the anchored node,
//!   and the copy keeps the positions of the *anchored* node (where the text was written), so a
//!   problem inside a reused block points at the block itself. Copies are budgeted so an
//!   "alias bomb" is reported instead of eating memory.
//! - Every YAML reader in runner goes through this module and its one set of [`LIMITS`]
//!   (input size, nesting depth, what anchors and aliases may copy): buildspecs, project
//!   files, scan policies, pnpm lockfiles, Alpine secdb files here, and the GitOps editor
//!   through [`Guard`].
//! - Merge keys (`<<: *base`, `<<: [*a, *b]`) are expanded: keys written in the mapping win
//!   over merged ones, earlier merge sources win over later ones.
//! - Duplicate keys produce a warning; like CodeBuild's parser, the last value wins.
//! - Only the first document of a multi-document stream is used (a warning says so).
//! - Nesting deeper than [`MAX_DEPTH`] is reported as an error instead of risking the stack.
//! - A plain empty scalar, `~` and `null` (any case) are [`Node::Null`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diagnostic::Diagnostic;
use super::model::Pos;

/// The limits of every YAML reader in runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest text accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of sequences and mappings (aliased copies included).
    pub max_depth: usize,
    /// Most nodes that anchors and aliases may copy in one document.
    pub max_copied_nodes: usize,
    /// Most scalar bytes that anchors and aliases may copy in one document.
    pub max_copied_bytes: usize,
}

/// The one set of limits: no real buildspec, policy, project file, lockfile or manifest
/// comes close, and the tree of a text this large stays within a few hundred MiB.
pub const LIMITS: Limits = Limits {
    max_bytes: 64 << 20,
    max_depth: 200,
    max_copied_nodes: 100_000,
    max_copied_bytes: 16 << 20,
};

/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = LIMITS.max_depth;

/// A YAML text that exceeds [`LIMITS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the yaml text is {size} bytes, more than the {max} bytes runner reads; is this the right file?")]
    TooLarge { size: usize, max: usize },
    #[error("yaml nesting is deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("anchors and aliases expand to more than {nodes} nodes or {bytes} bytes (alias bomb?); write the repeated content out or use fewer aliases")]
    AliasBomb { nodes: usize, bytes: usize },
}

impl LimitError {
    fn alias_bomb() -> Self {
        LimitError::AliasBomb {
            nodes: LIMITS.max_copied_nodes,
            bytes: LIMITS.max_copied_bytes,
        }
    }
}

/// The size and depth limits for a reader that walks yaml-rust2's events itself (the
/// GitOps editor): [`Guard::start`] checks the text's size, [`Guard::check`] each event's
/// nesting. Aliases are not expanded by such readers, so they need no copy budget.
#[derive(Debug)]
pub struct Guard {
    depth: usize,
}

impl Guard {
    pub fn start(text: &str) -> Result<Guard, LimitError> {
        if text.len() > LIMITS.max_bytes {
            return Err(LimitError::TooLarge {
                size: text.len(),
                max: LIMITS.max_bytes,
            });
        }
        Ok(Guard { depth: 0 })
    }

    pub fn check(&mut self, ev: &Event) -> Result<(), LimitError> {
        match ev {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if self.depth >= LIMITS.max_depth {
                    return Err(LimitError::TooDeep {
                        max: LIMITS.max_depth,
                    });
                }
                self.depth += 1;
            }
            Event::SequenceEnd | Event::MappingEnd => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Ok(())
    }

    /// Current nesting depth.
    pub fn depth(&self) -> usize {
        self.depth
    }
}

/// What copying a node costs: nodes, scalar bytes, nesting depth.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    nodes: usize,
    bytes: usize,
    depth: usize,
}

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

    /// The value under the scalar key `key` of a mapping (the first, as written); `None`
    /// for anything else.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
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

    /// What a copy of this subtree costs (for the copy budget).
    fn cost(&self) -> Cost {
        let mut c = Cost {
            nodes: 1,
            bytes: 0,
            depth: 0,
        };
        let mut add = |n: &Node| {
            let sub = n.cost();
            c.nodes = c.nodes.saturating_add(sub.nodes);
            c.bytes = c.bytes.saturating_add(sub.bytes);
            c.depth = c.depth.max(sub.depth + 1);
        };
        match self {
            Node::Scalar { text, .. } => {
                return Cost {
                    nodes: 1,
                    bytes: text.len(),
                    depth: 0,
                }
            }
            Node::Null { .. } => {}
            Node::Seq { items, .. } => items.iter().for_each(&mut add),
            Node::Map { entries, .. } => entries.iter().for_each(|(k, v)| {
                add(k);
                add(v);
            }),
        }
        c
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

/// Turns yaml-rust2's markers into positions. The scanner ends a line at `\n`, `\r\n` and
/// also a bare `\r` (as YAML does); runner's lines are those [`str::lines`] yields (`\n`,
/// `\r\n`), as in its other readers, [`pos_of_byte`], `grep -n` and git: a line number
/// counted at every bare `\r` can point past the end of the file.
#[derive(Debug, Default)]
struct Lines {
    /// Char indexes of every `\n`, only for a text holding a bare `\r` (elsewhere the
    /// scanner's own line and column are these).
    newlines: Option<Vec<usize>>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let b = text.as_bytes();
        let bare_cr = text
            .match_indices('\r')
            .any(|(i, _)| b.get(i + 1) != Some(&b'\n'));
        let newlines = bare_cr.then(|| {
            text.chars()
                .enumerate()
                .filter(|&(_, c)| c == '\n')
                .map(|(i, _)| i)
                .collect()
        });
        Lines { newlines }
    }

    fn pos(&self, m: &Marker) -> Pos {
        let Some(newlines) = &self.newlines else {
            return pos_of(m);
        };
        // The marker's index counts chars.
        let at = m.index();
        let before = newlines.partition_point(|&n| n < at);
        let line_start = before
            .checked_sub(1)
            .and_then(|i| newlines.get(i))
            .map_or(0, |n| n + 1);
        Pos {
            line: u32::try_from(before + 1).unwrap_or(u32::MAX),
            col: u32::try_from(at.saturating_sub(line_start) + 1).unwrap_or(u32::MAX),
        }
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
        index: KeyIndex,
        key: Option<Node>,
        merges: Vec<Node>,
        pos: Pos,
        anchor: usize,
    },
}

/// A mapping's string keys → their index in `entries`, by a hash of the key (the keys
/// are not copied: a hit is confirmed against `entries`).
#[derive(Default)]
struct KeyIndex {
    by_hash: HashMap<u64, usize>,
}

impl KeyIndex {
    fn find(&self, hasher: &RandomState, entries: &[(Node, Node)], name: &str) -> Option<usize> {
        let &i = self.by_hash.get(&hasher.hash_one(name))?;
        if entries.get(i).and_then(|(k, _)| k.as_str()) == Some(name) {
            return Some(i);
        }
        // Two keys with one hash: look the long way.
        entries.iter().position(|(k, _)| k.as_str() == Some(name))
    }

    fn insert(&mut self, hasher: &RandomState, name: &str, i: usize) {
        self.by_hash.entry(hasher.hash_one(name)).or_insert(i);
    }
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
    /// What anchors and aliases copied so far in this document.
    copied: Cost,
    hasher: RandomState,
    /// Markers to positions.
    lines: Lines,
}

impl Builder {
    fn new() -> Self {
        Builder::default()
    }

    /// Charges a copy of `node` (placed at the current depth) to the budget; `false`
    /// (with an error) when it does not fit.
    fn charge(&mut self, node: &Node, pos: Pos) -> bool {
        let c = node.cost();
        self.copied.nodes = self.copied.nodes.saturating_add(c.nodes);
        self.copied.bytes = self.copied.bytes.saturating_add(c.bytes);
        let err = if self.copied.nodes > LIMITS.max_copied_nodes
            || self.copied.bytes > LIMITS.max_copied_bytes
        {
            LimitError::alias_bomb()
        } else if self.stack.len() + c.depth > LIMITS.max_depth {
            LimitError::TooDeep {
                max: LIMITS.max_depth,
            }
        } else {
            return true;
        };
        self.diagnostics
            .push(Diagnostic::error(pos, err.to_string()));
        self.fatal = true;
        false
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor == 0 || !self.charge(node, node.pos()) {
            return;
        }
        // A later anchor with the same name replaces the earlier one.
        self.anchors.insert(anchor, node.clone());
    }

    fn finish_node(&mut self, node: Node, anchor: usize) {
        self.remember(anchor, &node);
        if self.fatal {
            return;
        }
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
                    let found = index.find(&self.hasher, entries, name);
                    match found.and_then(|i| entries.get_mut(i)) {
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
                            index.insert(&self.hasher, name, entries.len());
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
        mut index: KeyIndex,
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
                                Some(name)
                                    if index.find(&self.hasher, &entries, name).is_some() => {}
                                Some(name) => {
                                    index.insert(&self.hasher, name, entries.len());
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
        entries.shrink_to_fit();
        self.finish_node(Node::Map { entries, pos }, anchor);
    }

    fn push_frame(&mut self, frame: Frame, pos: Pos) {
        if self.stack.len() >= LIMITS.max_depth {
            let err = LimitError::TooDeep {
                max: LIMITS.max_depth,
            };
            self.diagnostics
                .push(Diagnostic::error(pos, err.to_string()));
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
        let pos = self.lines.pos(&mark);
        match ev {
            Event::Scalar(mut text, style, anchor, _tag) => {
                let node = if style == TScalarStyle::Plain && is_null_plain(&text) {
                    Node::Null { pos }
                } else {
                    text.shrink_to_fit();
                    Node::Scalar {
                        text,
                        style: convert_style(style),
                        pos,
                    }
                };
                self.finish_node(node, anchor);
            }
            Event::Alias(id) => {
                // Charged before it is copied.
                let anchored = self.anchors.remove(&id);
                match anchored {
                    Some(node) => {
                        let fits = self.charge(&node, pos);
                        let copy = fits.then(|| node.clone());
                        self.anchors.insert(id, node);
                        if let Some(copy) = copy {
                            self.finish_node(copy, 0);
                        }
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
                    index: KeyIndex::default(),
                    key: None,
                    merges: Vec::new(),
                    pos,
                    anchor,
                },
                pos,
            ),
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    mut items,
                    pos,
                    anchor,
                }) = self.stack.pop()
                {
                    items.shrink_to_fit();
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
                // Anchors, and so the copy budget, are per document.
                self.anchors.clear();
                self.copied = Cost::default();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// The byte order mark [`load`] skips at the start of a text.
const BOM: char = '\u{feff}';
const BOM_BYTES: &[u8] = "\u{feff}".as_bytes();

/// The text of a YAML file's bytes; invalid UTF-8 is an error diagnostic at the first bad
/// byte (1-based line, column in characters), naming the byte, never quoting the text.
pub fn utf8_text(bytes: &[u8]) -> Result<&str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
        // Columns as an editor shows them: a leading byte order mark is not one.
        let bom = if good.starts_with(BOM_BYTES) {
            BOM_BYTES.len()
        } else {
            0
        };
        let line_start = good
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(bom, |i| i + 1);
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = String::from_utf8_lossy(good.get(line_start..).unwrap_or_default())
            .chars()
            .count()
            + 1;
        let byte = bytes.get(e.valid_up_to()).copied().unwrap_or(0);
        Diagnostic::error(
            Pos {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                col: u32::try_from(col).unwrap_or(u32::MAX),
            },
            format!("invalid UTF-8 (byte 0x{byte:02X}); yaml files must be UTF-8 text"),
        )
        .with_hint("re-save the file as UTF-8")
    })
}

/// Reads `text` into a [`Node`] tree. Never panics; syntax errors and texts beyond
/// [`LIMITS`] become diagnostics. A byte order mark at the start is skipped (not a
/// column either).
pub fn load(text: &str) -> Loaded {
    if let Err(e) = Guard::start(text) {
        return Loaded {
            root: None,
            diagnostics: vec![Diagnostic::error(Pos { line: 1, col: 1 }, e.to_string())
                .with_hint("runner reads yaml files up to 64 MiB")],
        };
    }
    // A byte order mark opens the stream (YAML 1.2, 5.2); yaml-rust2 would read it as the
    // first character of the first key (`\u{feff}version`). Editors do not show it, so
    // line 1's columns are counted without it.
    let text = text.strip_prefix(BOM).unwrap_or(text);
    // yaml-rust2's scanner takes a NUL for the end of the input: everything after it would
    // be silently dropped (a buildspec losing its later commands still validates).
    if let Some(at) = text.find('\0') {
        return Loaded {
            root: None,
            diagnostics: vec![Diagnostic::error(
                pos_of_byte(text, at),
                "a NUL byte (0x00), which yaml text cannot hold; is this a binary file?",
            )
            .with_hint("remove the NUL byte: yaml would read the file only up to it")],
        };
    }
    let mut builder = Builder::new();
    builder.lines = Lines::new(text);
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

/// 1-based line and column (in characters) of byte offset `at` of `text`.
fn pos_of_byte(text: &str, at: usize) -> Pos {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
    }
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
                let mut d = Diagnostic::error(
                    builder.lines.pos(e.marker()),
                    format!("invalid yaml: {info}"),
                );
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
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

    /// Lines end at `\n` and `\r\n`, not at a bare `\r` (which the scanner takes for a
    /// line break): node and error positions agree with [`pos_of_byte`] and `str::lines`.
    #[test]
    fn positions_count_newlines_whatever_the_line_breaks() {
        for br in ["\n", "\r\n", "\r"] {
            let text = format!("a: 1{br}b:{br}  - x{br}  - 'y'{br}c: z\n");
            let n = root(&text);
            let want = |needle: &str| text.find(needle).map(|i| pos_of_byte(&text, i));
            assert_eq!(Some(get(&n, "c").pos()), want("z"), "{text:?}");
            if let Node::Seq { items, .. } = get(&n, "b") {
                assert_eq!(Some(items[1].pos()), want("'y'"), "{text:?}");
            } else {
                panic!("not a seq");
            }
            let last = get(&n, "c").pos().line as usize;
            let held = text.lines().nth(last - 1).unwrap_or("");
            assert!(held.ends_with("c: z"), "{text:?}");
            // A syntax error after the breaks.
            let bad = format!("a: 1{br}b: 2{br}c: [\n");
            let l = load(&bad);
            let d = l.diagnostics.first().unwrap();
            assert!(
                (d.line as usize) <= bad.lines().count() + 1,
                "{bad:?}: {d:?}"
            );
        }
        assert_eq!(root("a: 1\rb: 2\n").pos(), at(1, 1));
        assert_eq!(get(&root("a: 1\rb: 2\n"), "b").pos(), at(1, 9));
        assert_eq!(get(&root("a: 1\r\rb:\n  2\n"), "b").pos(), at(2, 3));
        // The scanner's error is at the `c` (its line 3, column 1): line 1, column 11 here.
        let l = load("a: 1\rb: [\rc");
        assert_eq!(
            l.diagnostics.first().map(|d| (d.line, d.col)),
            Some((1, 11)),
            "{:?}",
            l.diagnostics
        );
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

    /// A byte order mark opens the stream (YAML 1.2, 5.2): it is not part of the first
    /// key (a buildspec or pnpm-lock.yaml saved with one read `\u{feff}version`), and
    /// line 1's columns are those an editor shows (the mark is not one of them). A second
    /// mark is content.
    #[test]
    fn a_byte_order_mark_opens_the_stream_and_is_not_a_column() {
        let n = root("\u{feff}version: 0.2\nphases:\n  build: x\n");
        assert_eq!(get(&n, "version").as_str(), Some("0.2"));
        assert_eq!(n.pos(), at(1, 1));
        assert_eq!(get(&n, "version").pos(), at(1, 10));
        assert_eq!(get(&n, "phases").pos(), at(3, 3));
        let n = root("\u{feff}lockfileVersion: '9.0'\n");
        assert_eq!(get(&n, "lockfileVersion").as_str(), Some("9.0"));
        // Errors and the NUL check count line 1 without the mark too.
        let l = load("\u{feff}a: [\n");
        assert!(l.root.is_none());
        let l = load("\u{feff}ab\0");
        assert_eq!(
            l.diagnostics.first().map(|d| (d.line, d.col)),
            Some((1, 3)),
            "{:?}",
            l.diagnostics
        );
        let d = utf8_text(b"\xef\xbb\xbfab\xff").unwrap_err();
        assert_eq!((d.line, d.col), (1, 3));
        // Only the stream's first mark.
        let l = load("\u{feff}\u{feff}version: 0.2\n");
        let r = l.root.unwrap();
        assert!(r.get("version").is_none(), "{r:?}");
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

    /// One long scalar aliased many times: few nodes, many bytes.
    #[test]
    fn alias_bomb_of_bytes_is_an_error() {
        let long = "x".repeat(1 << 20);
        let text = format!("a: &a \"{long}\"\nb: [{}]\n", vec!["*a"; 20].join(", "));
        let l = load(&text);
        assert!(l.root.is_none());
        let e = l.diagnostics.iter().find(|d| d.is_error()).unwrap();
        assert!(e.message.contains("alias bomb"), "{e:?}");
        assert_eq!(e.line, 2);
    }

    /// Aliases of deep nodes placed deep: the copy counts towards the nesting limit.
    #[test]
    fn aliases_cannot_nest_past_the_depth_limit() {
        let deep = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        let text = format!("a: &a {}\nb: {}\n", deep(150, "x"), deep(150, "*a"));
        let l = load(&text);
        assert!(l.root.is_none());
        assert!(l
            .diagnostics
            .iter()
            .any(|d| d.is_error() && d.message.contains("deeper than 200")));
    }

    #[test]
    fn texts_beyond_the_size_limit_are_refused_unread() {
        let text = "#".repeat(LIMITS.max_bytes + 1);
        let l = load(&text);
        assert!(l.root.is_none());
        assert_eq!(l.diagnostics.len(), 1);
        assert!(
            l.diagnostics[0].message.contains("bytes"),
            "{:?}",
            l.diagnostics
        );
        assert!(Guard::start(&text).is_err());
    }

    #[test]
    fn the_event_guard_limits_depth() {
        let text = "- ".repeat(300) + "x\n";
        let mut g = Guard::start(&text).unwrap();
        let mut p = Parser::new_from_str(&text);
        let mut refused = None;
        while let Ok((ev, _)) = p.next_token() {
            if let Err(e) = g.check(&ev) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(LimitError::TooDeep { max: 200 }));
        assert_eq!(g.depth(), 200);
    }

    #[test]
    fn large_maps_find_duplicates_and_merge_without_copying_keys() {
        let mut text = String::from("base: &b {k1: merged, extra: e}\nm:\n  <<: *b\n");
        for i in 0..2000 {
            text.push_str(&format!("  k{i}: v{i}\n"));
        }
        text.push_str("  k7: last\n");
        let l = load(&text);
        assert_eq!(l.diagnostics.len(), 1, "{:?}", l.diagnostics);
        let n = l.root.unwrap();
        let m = get(&n, "m");
        assert_eq!(get(m, "k7").as_str(), Some("last"));
        assert_eq!(get(m, "k1").as_str(), Some("v1"));
        assert_eq!(get(m, "extra").as_str(), Some("e"));
        if let Node::Map { entries, .. } = m {
            assert_eq!(entries.len(), 2001);
        }
    }

    #[test]
    fn invalid_utf8_has_a_position() {
        assert_eq!(utf8_text(b"a: 1\n").ok(), Some("a: 1\n"));
        let d = utf8_text(b"a: 1\nb: \xc3\xa9\xff\xfe\n").unwrap_err();
        assert!(d.is_error());
        assert_eq!((d.line, d.col), (2, 5));
        assert!(d.message.contains("0xFF"), "{}", d.message);
    }

    /// fixtures/fuzz-crashes/buildspec/nul-truncates.yml: the scanner stopped at the NUL,
    /// so the buildspec loaded without `echo two` and `post_build` and without a word.
    #[test]
    fn a_nul_byte_is_an_error_with_a_position_not_the_end_of_the_text() {
        let text = include_str!("../../fixtures/fuzz-crashes/buildspec/nul-truncates.yml");
        let l = load(text);
        assert!(l.root.is_none(), "a truncated tree was returned");
        assert_eq!(l.diagnostics.len(), 1, "{:?}", l.diagnostics);
        let d = &l.diagnostics[0];
        assert!(d.is_error());
        assert_eq!((d.line, d.col), (5, 17));
        assert!(d.message.contains("NUL byte"), "{}", d.message);
        // Also in a key, on the first line, and behind multi-byte characters.
        let d = &load("\0a: 1\n").diagnostics[0];
        assert_eq!((d.line, d.col), (1, 1));
        let d = &load("é: 'ü\0'\n").diagnostics[0];
        assert_eq!((d.line, d.col), (1, 6));
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
