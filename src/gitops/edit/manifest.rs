//! `image:` fields holding a full reference: containers, initContainers and
//! ephemeralContainers of Deployments, StatefulSets, DaemonSets, Jobs, CronJobs
//! (`jobTemplate.spec.template`), Pods, in any document of a multi-document file — and any
//! other mapping whose `image` key holds a reference to our repository (Helm values that
//! use a single `image: repo:tag` string, CRDs).

use super::yaml_span::NodeKind;
use super::{path_of, walk_maps, Ctx};
use crate::gitops::edit::yaml_span::PathSeg;

pub fn edit(ctx: &mut Ctx<'_>) {
    let docs = ctx.docs;
    let mut hits = Vec::new();
    walk_maps(docs, &mut |di, path, map| {
        if let Some(v) = map.get("image") {
            if let NodeKind::Scalar(s) = &v.kind {
                hits.push((di, path.to_vec(), v, s.value.clone()));
            }
        }
    });
    for (di, mut segs, node, value) in hits {
        if super::ImageRef::parse(&value).is_err() {
            segs.push(PathSeg::Key("image".into()));
            ctx.notes.push(format!(
                "{}:{}: `{value}` is not an image reference (a placeholder?); left alone",
                ctx.rel_path,
                path_of(di, &segs)
            ));
            continue;
        }
        ctx.found.push(
            super::image_ref::ImageRef::parse(&value)
                .map(|r| r.name)
                .unwrap_or_default(),
        );
        if !ctx.target.matches(&value) {
            continue;
        }
        let Some(new) = ctx.target.new_reference(&value) else {
            continue;
        };
        segs.push(PathSeg::Key("image".into()));
        ctx.replace(node, &new, path_of(di, &segs), "manifest");
    }
}
