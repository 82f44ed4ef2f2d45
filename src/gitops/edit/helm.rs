//! Helm values: image maps `{repository|name, [registry], tag, [digest]}` anywhere in the
//! values (`image`, `api.image`, `dex.image`…), plus user-given key paths.
//!
//! With a `digest` key the digest goes there (and the tag into `tag` when one is given);
//! without one, `tag` becomes `TAG@sha256:…`, which the usual
//! `{{ .repository }}:{{ .tag }}` template renders as a digest-pinned reference.

use super::image_ref::strip_digest;
use super::yaml_span::{Node, NodeKind, PathSeg, YamlPath};
use super::{helm_repo_of, path_of, walk_maps, Ctx};

fn image_like(path: &[PathSeg], map: &Node) -> bool {
    let under_image_key =
        matches!(path.last(), Some(PathSeg::Key(k)) if k.to_ascii_lowercase().contains("image"));
    let has_repo = map.get("repository").is_some_and(|n| n.as_str().is_some());
    let has_name = map.get("name").is_some_and(|n| n.as_str().is_some());
    let has_tag = map.get("tag").is_some_and(|n| n.as_str().is_some())
        || map.get("digest").is_some_and(|n| n.as_str().is_some());
    has_tag && (has_repo || (has_name && under_image_key))
}

/// Apply the Helm rules to one image map that matched.
pub fn edit_image_map(ctx: &mut Ctx<'_>, map: &Node, path: &YamlPath) {
    let key_path = |k: &str| {
        let mut p = path.clone();
        p.segs.push(PathSeg::Key(k.to_string()));
        p
    };
    let digest = ctx.target.digest.clone();
    if let Some(d) = map.get("digest") {
        ctx.replace(d, &digest, key_path("digest"), "helm");
        if let (Some(tag), Some(t)) = (ctx.target.tag.clone(), map.get("tag")) {
            ctx.replace(t, &tag, key_path("tag"), "helm");
        }
        return;
    }
    let Some(t) = map.get("tag") else { return };
    let current = t
        .as_str()
        .map(|s| strip_digest(s).to_string())
        .unwrap_or_default();
    let tag = ctx.target.tag.clone().unwrap_or(current);
    if tag.is_empty() {
        ctx.notes.push(format!(
            "{}:{}: tag is empty and no --tag given; pass --tag so the value can be TAG@DIGEST",
            ctx.rel_path,
            key_path("tag")
        ));
        return;
    }
    ctx.replace(t, &format!("{tag}@{digest}"), key_path("tag"), "helm");
}

fn resolve<'a>(root: &'a Node, key: &str) -> Option<(&'a Node, Vec<PathSeg>)> {
    let mut n = root;
    let mut segs = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        n = n.get(part)?;
        segs.push(PathSeg::Key(part.to_string()));
    }
    Some((n, segs))
}

pub fn edit(ctx: &mut Ctx<'_>) {
    let docs = ctx.docs;
    let mut maps = Vec::new();
    walk_maps(docs, &mut |di, path, map| {
        if image_like(path, map) {
            maps.push((di, path.to_vec(), map));
        }
    });
    for key in ctx.target.helm_keys.clone() {
        for (di, root) in docs.docs.iter().enumerate() {
            let Some((node, segs)) = resolve(root, &key) else {
                continue;
            };
            match &node.kind {
                NodeKind::Map(_) => maps.push((di, segs, node)),
                NodeKind::Scalar(s) if ctx.target.matches(&s.value) => {
                    if let Some(new) = ctx.target.new_reference(&s.value) {
                        ctx.replace(node, &new, path_of(di, &segs), "helm");
                    }
                }
                _ => {}
            }
        }
    }
    for (di, segs, map) in maps {
        let Some((repo, _)) = helm_repo_of(map) else {
            continue;
        };
        if super::ImageRef::parse(&repo).is_err() {
            ctx.notes.push(format!(
                "{}:{}: `{repo}` is not an image repository (a placeholder?); left alone",
                ctx.rel_path,
                path_of(di, &segs)
            ));
            continue;
        }
        ctx.found.push(repo.clone());
        if !ctx.target.matches(&repo) {
            continue;
        }
        edit_image_map(ctx, map, &path_of(di, &segs));
    }
}
