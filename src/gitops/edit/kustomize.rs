//! Kustomize `images:` entries, with the semantics of `kustomize edit set image`.
//!
//! An entry matches when the image it produces is our repository: its `newName` when set,
//! else its `name`. The match sets `newTag` (when a tag is known; added if missing) and
//! `digest` (added if missing). kustomize renders `newTag` + `digest` as
//! `name:tag@digest` (checked against `kubectl kustomize` in the tests). Also handles a Flux
//! `Kustomization`'s `spec.images`, which has the same entry format.

use yaml_rust2::scanner::TScalarStyle;

use super::yaml_span::{
    ends_with_break, line_end_incl, line_start, render_scalar, Edit, Node, NodeKind, PathSeg,
};
use super::{base_name, path_of, Ctx};

fn is_kustomization(root: &Node, rel_path: &str) -> bool {
    let name = base_name(rel_path);
    let kind = root.get("kind").and_then(|n| n.as_str());
    let api = root
        .get("apiVersion")
        .and_then(|n| n.as_str())
        .unwrap_or("");
    matches!(
        name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    ) || (kind == Some("Kustomization") && api.starts_with("kustomize.config.k8s.io"))
        || (kind.is_none() && root.get("resources").is_some() && root.get("images").is_some())
}

pub fn edit(ctx: &mut Ctx<'_>) {
    let docs = ctx.docs;
    for (di, root) in docs.docs.iter().enumerate() {
        let (images, base): (Option<&Node>, Vec<PathSeg>) = if is_kustomization(root, ctx.rel_path)
        {
            (root.get("images"), vec![PathSeg::Key("images".into())])
        } else if root
            .get("apiVersion")
            .and_then(|n| n.as_str())
            .is_some_and(|a| a.starts_with("kustomize.toolkit.fluxcd.io"))
        {
            (
                root.get("spec").and_then(|s| s.get("images")),
                vec![PathSeg::Key("spec".into()), PathSeg::Key("images".into())],
            )
        } else {
            (None, Vec::new())
        };
        let is_kust = !base.is_empty() && base.len() == 1;
        let Some(items) = images.and_then(|n| n.as_seq()) else {
            if is_kust && images.is_none() && ctx.target.add_missing {
                add_entry(ctx, di, root, None);
            }
            continue;
        };
        let mut matched = false;
        for (i, entry) in items.iter().enumerate() {
            if entry.as_map().is_none() {
                continue;
            }
            let name = entry.get("name").and_then(|n| n.as_str());
            let new_name = entry.get("newName").and_then(|n| n.as_str());
            let Some(effective) = new_name.or(name) else {
                continue;
            };
            ctx.found.push(effective.to_string());
            if !ctx.target.matches(effective) {
                continue;
            }
            matched = true;
            let mut segs = base.clone();
            segs.push(PathSeg::Index(i));
            let entry_path = path_of(di, &segs);
            let key_path = |k: &str| {
                let mut p = entry_path.clone();
                p.segs.push(PathSeg::Key(k.to_string()));
                p
            };
            let mut add: Vec<(&str, String)> = Vec::new();
            if let Some(tag) = ctx.target.tag.clone() {
                match entry.get("newTag") {
                    Some(n) => ctx.replace(n, &tag, key_path("newTag"), "kustomize"),
                    None => add.push(("newTag", tag)),
                }
            }
            let digest = ctx.target.digest.clone();
            match entry.get("digest") {
                Some(n) => ctx.replace(n, &digest, key_path("digest"), "kustomize"),
                None => add.push(("digest", digest)),
            }
            let kv: Vec<(&str, &str)> = add.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ctx.insert_keys(entry, &entry_path, &kv, "kustomize");
        }
        if is_kust && !matched && ctx.target.add_missing {
            add_entry(ctx, di, root, images);
        }
    }
}

/// Append `- name: IMAGE / newTag / digest` to `images:` (creating the key at the end of
/// a single-document file when missing), as `kustomize edit set image` does.
fn add_entry(ctx: &mut Ctx<'_>, di: usize, root: &Node, images: Option<&Node>) {
    let t = ctx.target;
    let eol = ctx.eol();
    let mut lines = vec![format!(
        "- name: {}",
        render_scalar(&t.name, TScalarStyle::Plain)
    )];
    if let Some(tag) = &t.tag {
        lines.push(format!(
            "  newTag: {}",
            render_scalar(tag, TScalarStyle::Plain)
        ));
    }
    lines.push(format!("  digest: {}", t.digest));
    let index = images.and_then(|n| n.as_seq()).map_or(0, <[Node]>::len);
    let path = path_of(di, &[PathSeg::Key("images".into()), PathSeg::Index(index)]);
    let src = ctx.src;
    let (at, text) = match images {
        Some(seq) if !seq.flow => {
            let Some(last) = seq.as_seq().and_then(|s| s.last()) else {
                return;
            };
            let Some(end) = last_scalar_end(last) else {
                ctx.notes.push(format!(
                    "{}: cannot append to images: here; add {} by hand",
                    ctx.rel_path, t.name
                ));
                return;
            };
            // Indentation of the items' dashes (the first item itself may start on the
            // line after its dash: `-\n  x`).
            let Some(indent) = dash_column(src, seq) else {
                ctx.notes.push(format!(
                    "{}: cannot tell the indentation of images:; add {} by hand",
                    ctx.rel_path, t.name
                ));
                return;
            };
            let indent = " ".repeat(indent);
            let body: Vec<String> = lines.iter().map(|l| format!("{indent}{l}")).collect();
            let at = line_end_incl(src, end);
            let text = if at == src.len() && !ends_with_break(src) {
                format!("{eol}{}", body.join(eol))
            } else {
                format!("{}{eol}", body.join(eol))
            };
            (at, text)
        }
        Some(_) => {
            ctx.notes.push(format!(
                "{}: images: is a flow list; add {} by hand",
                ctx.rel_path, t.name
            ));
            return;
        }
        None => {
            if ctx.docs.docs.len() != 1 || root.as_map().is_none() || root.flow {
                ctx.notes.push(format!(
                    "{}: no images: section to add {} to; add it by hand",
                    ctx.rel_path, t.name
                ));
                return;
            }
            // At the root mapping's own indentation: a mapping indented as a whole is
            // YAML, a key at column 0 after it is not.
            let Some(indent) = root
                .as_map()
                .and_then(|m| m.first())
                .filter(|(k, _)| !after_explicit_key_indicator(src, k.start))
                .and_then(|(k, _)| indent_of(src, k.start))
            else {
                ctx.notes.push(format!(
                    "{}: cannot tell the indentation of the top-level keys; add images: with {} by hand",
                    ctx.rel_path, t.name
                ));
                return;
            };
            let indent = " ".repeat(indent);
            let sep = if src.is_empty() || ends_with_break(src) {
                ""
            } else {
                eol
            };
            let body: Vec<String> = std::iter::once("images:".to_string())
                .chain(lines)
                .map(|l| format!("{indent}{l}"))
                .collect();
            (src.len(), format!("{sep}{}{eol}", body.join(eol)))
        }
    };
    ctx.edits.push(Edit {
        range: at..at,
        text,
        paths: vec![path],
        inserted: true,
        editor: "kustomize",
    });
}

/// The column of `at` when only spaces precede it on its line (a block node's indentation).
fn indent_of(src: &str, at: usize) -> Option<usize> {
    let ls = line_start(src, at);
    let before = src.get(ls..at)?;
    before.bytes().all(|b| b == b' ').then_some(before.len())
}

/// Is the key at `at` the first thing after an explicit-key indicator `?` that ends an
/// earlier line (`?\n  key`)? Its own column is then not the mapping's indentation.
fn after_explicit_key_indicator(src: &str, at: usize) -> bool {
    let before = src.get(..line_start(src, at)).unwrap_or("");
    for line in before.rsplit(['\n', '\r']) {
        let content = strip_comment(line).trim();
        if content.is_empty() {
            continue;
        }
        return content == "?" || content.ends_with(" ?") || content.ends_with("\t?");
    }
    false
}

/// `line` without a `#` comment (one that starts the line or follows a blank).
fn strip_comment(line: &str) -> &str {
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        if c == '#' && (prev == ' ' || prev == '\t') {
            return &line[..i];
        }
        prev = c;
    }
    line
}

/// The column of a block sequence's dashes: where the parser saw the sequence start, else
/// the dash in front of its first item.
fn dash_column(src: &str, seq: &Node) -> Option<usize> {
    let before_first = seq
        .as_seq()
        .and_then(|s| s.first())
        .and_then(|first| src.get(..text_start(first)))
        .and_then(|before| before.trim_end().len().checked_sub(1));
    [Some(seq.start), before_first]
        .into_iter()
        .flatten()
        .filter(|&at| src.as_bytes().get(at) == Some(&b'-'))
        .find_map(|at| indent_of(src, at))
}

/// Where a node's text starts: the parser places a block mapping at its first key's `:`.
fn text_start(n: &Node) -> usize {
    match n.as_map().and_then(|m| m.first()) {
        Some((k, _)) if !n.flow => text_start(k),
        _ => n.start,
    }
}

fn last_scalar_end(n: &Node) -> Option<usize> {
    match &n.kind {
        NodeKind::Scalar(s) => s.span.as_ref().map(|r| r.end),
        NodeKind::Map(m) => m.last().and_then(|(_, v)| last_scalar_end(v)),
        NodeKind::Seq(s) if !n.flow => s.last().and_then(last_scalar_end),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::{edit_content, yaml_span, Target};

    const D: &str = "sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be";

    /// `kustomize edit set image image@D` on `src`: the new text, which must be YAML and
    /// which a second run leaves as it is.
    fn set_image(src: &str) -> String {
        let mut t = Target::new("image", None, D).unwrap();
        t.add_missing = true;
        let once = edit_content("kustomization.yaml", src, &t).unwrap();
        assert!(once.changed(), "nothing added to {src:?}: {:?}", once.notes);
        let out = once.new_content;
        if let Err(e) = yaml_span::parse(&out) {
            panic!("the edit of a valid file is not YAML any more: {e}\n{out}");
        }
        let twice = edit_content("kustomization.yaml", &out, &t).unwrap();
        assert_eq!(twice.new_content, out, "a second run changed the file");
        out
    }

    /// A fuzz input: byte 0 (file name) and byte 1 (options) precede the file.
    fn fuzz_file(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes.get(2..).unwrap()).unwrap()
    }

    /// fixtures/fuzz-crashes/gitops_edit/nul-in-kustomization.bin: the parser saw only the
    /// text before the NUL, so every run appended another `images:`. Now refused.
    #[test]
    fn a_kustomization_holding_a_nul_byte_is_refused_not_cut_short() {
        let src = fuzz_file(include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/nul-in-kustomization.bin"
        ));
        assert_eq!(src, ":\0");
        let mut t = Target::new("image", None, D).unwrap();
        t.add_missing = true;
        let e = edit_content("kustomization.yaml", src, &t).err();
        assert_eq!(e.map(|e| (e.line, e.col)), Some((1, 2)));
    }

    /// fixtures/fuzz-crashes/gitops_edit/indented-root-add-missing*.bin: `images:` was
    /// appended at column 0 after a top-level mapping written indented.
    #[test]
    fn a_missing_images_key_goes_at_the_root_mappings_indentation() {
        let src = fuzz_file(include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/indented-root-add-missing.bin"
        ));
        assert_eq!(
            set_image(src),
            format!("{src}  images:\n  - name: image\n    digest: {D}\n")
        );
        let src = fuzz_file(include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/indented-root-add-missing-min.bin"
        ));
        assert_eq!(src, " :");
        assert_eq!(
            set_image(src),
            format!(" :\n images:\n - name: image\n   digest: {D}\n")
        );
        // Unindented stays at column 0.
        assert_eq!(
            set_image("resources: []\n"),
            format!("resources: []\nimages:\n- name: image\n  digest: {D}\n")
        );
    }

    /// fixtures/fuzz-crashes/gitops_edit/add-missing-after-empty-item.bin: the first item
    /// starts on the line after its dash, so the dash column was read from the wrong line
    /// (0) and the new entry ended the sequence at column 0.
    #[test]
    fn an_entry_is_appended_at_the_dash_column_when_an_item_starts_on_the_next_line() {
        let src = fuzz_file(include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/add-missing-after-empty-item.bin"
        ));
        assert_eq!(src, "images:\n -\n  n");
        assert_eq!(
            set_image(src),
            format!("{src}\n - name: image\n   digest: {D}")
        );
        // Dashes at the key's column, and a first item after a comment line.
        assert_eq!(
            set_image("images:\n- name: a\n"),
            format!("images:\n- name: a\n- name: image\n  digest: {D}\n")
        );
        assert_eq!(
            set_image("images:\n- -x\n"),
            format!("images:\n- -x\n- name: image\n  digest: {D}\n")
        );
        assert_eq!(
            set_image("images:\n   - # c\n     name: a\n"),
            format!("images:\n   - # c\n     name: a\n   - name: image\n     digest: {D}\n")
        );
    }

    /// fixtures/fuzz-crashes/gitops_edit/cr-line-breaks-edit-not-yaml.bin (written while
    /// fixing the pnpm bare-`\r` finding, then replayed): lines ended by a bare `\r`, a
    /// line break to YAML. The editors' line helpers knew only `\n`, so `digest:` went to
    /// the end of the file, indented from the wrong line, and entries were not added.
    #[test]
    fn bare_carriage_returns_end_lines_for_the_edits_too() {
        let src = fuzz_file(include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/cr-line-breaks-edit-not-yaml.bin"
        ));
        assert_eq!(src, "images:\r- name: image\r  newTag: v1\rresources: []\r");
        let t = Target::new("image", Some("v2.0.0"), D).unwrap();
        let once = edit_content("kustomization.yaml", src, &t).unwrap();
        assert_eq!(
            once.new_content,
            format!("images:\r- name: image\r  newTag: v2.0.0\r  digest: {D}\rresources: []\r")
        );
        if let Err(e) = yaml_span::parse(&once.new_content) {
            panic!("the edit is not YAML any more: {e}");
        }
        let twice = edit_content("kustomization.yaml", &once.new_content, &t).unwrap();
        assert!(!twice.changed(), "{}", twice.new_content);
        // An entry appended, and `images:` added, after lines ended by a bare `\r`.
        assert_eq!(
            set_image("images:\r- name: a\rx: 1\r"),
            format!("images:\r- name: a\r- name: image\r  digest: {D}\rx: 1\r")
        );
        assert_eq!(
            set_image("a: 1\r  # c\rb: []"),
            format!("a: 1\r  # c\rb: []\rimages:\r- name: image\r  digest: {D}\r")
        );
        assert_eq!(
            set_image("a: 1\rb: []\r"),
            format!("a: 1\rb: []\rimages:\r- name: image\r  digest: {D}\r")
        );
    }

    /// fixtures/fuzz-crashes/gitops_edit/explicit-key-add-missing.bin: the root mapping's
    /// first key is an explicit one, `?` on its own line and the key indented on the next:
    /// `images:` went at the key's column, not the `?`'s, and the file was not YAML. Now
    /// such a file gets a note (add it by hand) and stays as it is.
    #[test]
    fn no_images_key_is_guessed_after_an_explicit_key_indicator() {
        let src = fuzz_file(include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/explicit-key-add-missing.bin"
        ));
        assert!(src.contains("\n?    #"), "{src:?}");
        for src in [src, "?\n a\n", "? # c\n\n  a\n: 1\n"] {
            let mut t = Target::new("image", None, D).unwrap();
            t.add_missing = true;
            let fe = edit_content("kustomization.yaml", src, &t).unwrap();
            assert_eq!(fe.new_content, src);
            assert!(
                fe.notes
                    .iter()
                    .any(|n| n.contains("add images: with image by hand")),
                "{:?}",
                fe.notes
            );
        }
        // A `?` inside a comment is no indicator.
        assert_eq!(
            set_image("# why?\na: 1\n"),
            format!("# why?\na: 1\nimages:\n- name: image\n  digest: {D}\n")
        );
    }

    /// fixtures/fuzz-crashes/gitops_edit/two-boms.bin: two byte order marks. The edit took
    /// off one and its parser the other, so the file was edited; read back, the second mark
    /// is content (only the first opens the stream) and the text was not YAML. Refused now,
    /// as `yaml_span::parse` refuses it.
    #[test]
    fn a_second_byte_order_mark_is_content_for_the_edit_too() {
        let src = fuzz_file(include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/two-boms.bin"
        ));
        assert!(src.starts_with("\u{feff}\u{feff}# "), "{src:?}");
        assert!(yaml_span::parse(src).is_err());
        let t = Target::new("replaced", Some("v2.0.0"), D).unwrap();
        assert!(edit_content("kustomization.yaml", src, &t).is_err());
        let t = Target::new("image", None, D).unwrap();
        assert!(edit_content("kustomization.yaml", "\u{feff}\u{feff}# c\na: 1\n", &t).is_err());
    }

    /// fixtures/fuzz-crashes/gitops_edit/bom-edit-not-yaml.bin: a kustomization opening
    /// with a byte order mark and a comment. The edit keeps the mark and is right, but the
    /// editors' own parser took the mark for the start of a plain scalar (`\u{feff}# ...`),
    /// so the written file did not read back as YAML ("mapping values are not allowed").
    #[test]
    fn a_file_opening_with_a_byte_order_mark_reads_back_as_yaml_after_the_edit() {
        let src = fuzz_file(include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/bom-edit-not-yaml.bin"
        ));
        assert!(src.starts_with("\u{feff}# "), "{src:?}");
        let t = Target::new("sampl-app", None, D).unwrap();
        let once = edit_content("kustomization.yaml", src, &t).unwrap();
        assert_eq!(once.new_content, format!("{src}    digest: {D}\n"));
        let docs = yaml_span::parse(&once.new_content)
            .unwrap_or_else(|e| panic!("the edit is not YAML any more: {e}"));
        let root = &docs.docs[0];
        let entry = &root.get("images").and_then(|n| n.as_seq()).unwrap()[0];
        assert_eq!(entry.get("digest").and_then(|n| n.as_str()), Some(D));
        let twice = edit_content("kustomization.yaml", &once.new_content, &t).unwrap();
        assert!(!twice.changed(), "{}", twice.new_content);
        // The mark straight before the root's first key: the key added goes at column 0.
        assert_eq!(
            set_image("\u{feff}resources: []\n"),
            format!("\u{feff}resources: []\nimages:\n- name: image\n  digest: {D}\n")
        );
    }
}
