//! Kustomize `images:` entries, with the semantics of `kustomize edit set image`.
//!
//! An entry matches when the image it produces is our repository: its `newName` when set,
//! else its `name`. The match sets `newTag` (when a tag is known; added if missing) and
//! `digest` (added if missing). kustomize renders `newTag` + `digest` as
//! `name:tag@digest` (checked against `kubectl kustomize` in the tests). Also handles a Flux
//! `Kustomization`'s `spec.images`, which has the same entry format.

use yaml_rust2::scanner::TScalarStyle;

use super::yaml_span::{line_end_incl, line_start, render_scalar, Edit, Node, NodeKind, PathSeg};
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
            // Indentation of the items' dashes.
            let first_start = seq
                .as_seq()
                .and_then(|s| s.first())
                .map_or(seq.start, |n| n.start);
            let ls = line_start(src, first_start);
            let line = &src[ls..first_start];
            let dash = line.find('-').unwrap_or(0);
            let indent = " ".repeat(dash);
            let body: Vec<String> = lines.iter().map(|l| format!("{indent}{l}")).collect();
            let at = line_end_incl(src, end);
            let text = if at == src.len() && !src.ends_with('\n') {
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
            let sep = if src.is_empty() || src.ends_with('\n') {
                ""
            } else {
                eol
            };
            (
                src.len(),
                format!("{sep}images:{eol}{}{eol}", lines.join(eol)),
            )
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

fn last_scalar_end(n: &Node) -> Option<usize> {
    match &n.kind {
        NodeKind::Scalar(s) => s.span.as_ref().map(|r| r.end),
        NodeKind::Map(m) => m.last().and_then(|(_, v)| last_scalar_end(v)),
        NodeKind::Seq(s) if !n.flow => s.last().and_then(last_scalar_end),
        _ => None,
    }
}
