//! Argo CD Image Updater's write-back file `.argocd-source-<app>.yaml` (and the generic
//! `.argocd-source.yaml`): `helm.parameters` (`{name, value, forcestring}` items such as
//! `image.name`/`image.repository` + `image.tag`) and `kustomize.images` (strings
//! `[NAME=]NEWNAME[:TAG][@DIGEST]`).

use super::image_ref::strip_digest;
use super::yaml_span::{Node, PathSeg};
use super::{base_name, path_of, Ctx};

fn is_argocd_source(rel_path: &str) -> bool {
    let n = base_name(rel_path);
    n.starts_with(".argocd-source") && super::is_yaml_name(n)
}

pub fn edit(ctx: &mut Ctx<'_>) {
    if !is_argocd_source(ctx.rel_path) {
        return;
    }
    let docs = ctx.docs;
    for (di, root) in docs.docs.iter().enumerate() {
        if let Some(params) = root
            .get("helm")
            .and_then(|h| h.get("parameters"))
            .and_then(|p| p.as_seq())
        {
            helm_params(ctx, di, params);
        }
        if let Some(images) = root
            .get("kustomize")
            .and_then(|h| h.get("images"))
            .and_then(|p| p.as_seq())
        {
            for (i, item) in images.iter().enumerate() {
                let Some(v) = item.as_str() else { continue };
                let (prefix, r) = match v.split_once('=') {
                    Some((n, r)) => (format!("{n}="), r),
                    None => (String::new(), v),
                };
                if super::ImageRef::parse(r).is_err() {
                    continue;
                }
                ctx.found.push(
                    super::ImageRef::parse(r)
                        .map(|x| x.name)
                        .unwrap_or_default(),
                );
                if !ctx.target.matches(r) {
                    continue;
                }
                if let Some(new) = ctx.target.new_reference(r) {
                    let path = path_of(
                        di,
                        &[
                            PathSeg::Key("kustomize".into()),
                            PathSeg::Key("images".into()),
                            PathSeg::Index(i),
                        ],
                    );
                    ctx.replace(item, &format!("{prefix}{new}"), path, "argocd-source");
                }
            }
        }
    }
}

fn helm_params(ctx: &mut Ctx<'_>, di: usize, params: &[Node]) {
    let find = |name: &str| {
        params.iter().enumerate().find_map(|(i, p)| {
            (p.get("name").and_then(|n| n.as_str()) == Some(name)).then(|| (i, p.get("value")))
        })
    };
    let vpath = |i: usize| {
        path_of(
            di,
            &[
                PathSeg::Key("helm".into()),
                PathSeg::Key("parameters".into()),
                PathSeg::Index(i),
                PathSeg::Key("value".into()),
            ],
        )
    };
    for p in params {
        let Some(name) = p.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let Some(value) = p.get("value").and_then(|n| n.as_str()) else {
            continue;
        };
        let (prefix, last) = name.rsplit_once('.').unwrap_or(("", name));
        if !matches!(last, "name" | "repository" | "image")
            || super::ImageRef::parse(value).is_err()
        {
            continue;
        }
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        // Registry parameter, when the chart splits it out.
        let full = match find(&join("registry"))
            .and_then(|(_, v)| v)
            .and_then(|v| v.as_str())
        {
            Some(reg) if last != "image" && !reg.is_empty() => {
                format!("{}/{value}", reg.trim_end_matches('/'))
            }
            _ => value.to_string(),
        };
        ctx.found.push(
            super::ImageRef::parse(&full)
                .map(|r| r.name)
                .unwrap_or_default(),
        );
        if !ctx.target.matches(&full) {
            continue;
        }
        let has_tag_param = find(&join("tag")).is_some();
        let has_digest_param = find(&join("digest")).is_some();
        let written_has_tag = super::ImageRef::parse(value)
            .map(|r| r.tag.is_some() || r.digest.is_some())
            .unwrap_or(false);
        if last == "image" || (written_has_tag && !has_tag_param && !has_digest_param) {
            if let (Some(new), Some(node)) = (ctx.target.new_reference(value), p.get("value")) {
                let i = params.iter().position(|q| std::ptr::eq(q, p)).unwrap_or(0);
                ctx.replace(node, &new, vpath(i), "argocd-source");
            }
            continue;
        }
        let digest = ctx.target.digest.clone();
        if let Some((i, Some(node))) = find(&join("digest")) {
            ctx.replace(node, &digest, vpath(i), "argocd-source");
            if let (Some(tag), Some((ti, Some(tn)))) = (ctx.target.tag.clone(), find(&join("tag")))
            {
                ctx.replace(tn, &tag, vpath(ti), "argocd-source");
            }
        } else if let Some((ti, Some(tn))) = find(&join("tag")) {
            let current = strip_digest(tn.as_str().unwrap_or("")).to_string();
            let tag = ctx.target.tag.clone().unwrap_or(current);
            if tag.is_empty() {
                ctx.notes.push(format!(
                    "{}:{}: tag parameter is empty and no --tag given; pass --tag",
                    ctx.rel_path,
                    vpath(ti)
                ));
            } else {
                ctx.replace(tn, &format!("{tag}@{digest}"), vpath(ti), "argocd-source");
            }
        } else {
            ctx.notes.push(format!(
                "{}: helm parameter {name} matches but there is no {} parameter to pin; add one",
                ctx.rel_path,
                join("tag")
            ));
        }
    }
}
