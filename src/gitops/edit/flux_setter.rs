//! Flux image-automation setter comments: `# {"$imagepolicy": "NS:POLICY[:name|:tag|:digest]"}`
//! after a scalar marks it for replacement.
//!
//! A policy is ours when one of its full-reference or `:name` values is our repository
//! (or, for a policy with only `:tag`/`:digest` markers, when the mapping holding the
//! marker names our repository in `name`/`newName`/`repository`/`image`). Then full
//! markers get `repo:tag@digest`, `:tag` markers the new tag (when one is given),
//! `:digest` markers the digest; `:name` markers are left as they are. A `:tag`/`:digest`
//! marker on the naming value itself (`name: app # {... :tag}`) does not make its policy
//! ours, and is not written when another marker does: writing it would rename the image.
//! Every other marked value of our policy then belongs to Flux: the other editors leave it
//! alone even when this editor had nothing to change (so a `:digest` marker on `newTag`
//! keeps the digest).

use std::collections::BTreeMap;

use super::yaml_span::{rest_of_line, walk, Node, NodeKind, PathSeg};
use super::{path_of, Ctx};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Full,
    Name,
    Tag,
    Digest,
}

/// Parse a setter comment following a scalar: returns (`ns:policy`, field).
fn parse_marker(after: &str) -> Option<(String, Field)> {
    let c = after.trim_start();
    let json = c.strip_prefix('#')?.trim();
    if !json.contains("$imagepolicy") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let s = v.get("$imagepolicy")?.as_str()?;
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [ns, p] => Some((format!("{ns}:{p}"), Field::Full)),
        [ns, p, f] => {
            let field = match *f {
                "name" => Field::Name,
                "tag" => Field::Tag,
                "digest" => Field::Digest,
                _ => return None,
            };
            Some((format!("{ns}:{p}"), field))
        }
        _ => None,
    }
}

struct Marked<'a> {
    doc: usize,
    segs: Vec<PathSeg>,
    node: &'a Node,
    parent: Option<&'a Node>,
    field: Field,
}

pub fn edit(ctx: &mut Ctx<'_>) {
    let docs = ctx.docs;
    let src = ctx.src;
    let mut policies: BTreeMap<String, Vec<Marked<'_>>> = BTreeMap::new();
    for (di, d) in docs.docs.iter().enumerate() {
        let mut path = Vec::new();
        let mut parents: Vec<(&Node, Vec<PathSeg>)> = Vec::new();
        walk(d, &mut path, &mut |p, n| {
            if matches!(n.kind, NodeKind::Map(_)) {
                parents.push((n, p.to_vec()));
            }
            let NodeKind::Scalar(s) = &n.kind else { return };
            let Some(span) = &s.span else { return };
            let Some((policy, field)) = parse_marker(rest_of_line(src, span.end)) else {
                return;
            };
            // Parent mapping: the innermost map whose path is this path minus one key.
            let parent = p.split_last().and_then(|(_, head)| {
                parents
                    .iter()
                    .rev()
                    .find(|(_, pp)| pp.as_slice() == head)
                    .map(|(m, _)| *m)
            });
            policies.entry(policy).or_default().push(Marked {
                doc: di,
                segs: p.to_vec(),
                node: n,
                parent,
                field,
            });
        });
    }
    for (_, marks) in policies {
        let mut ours = false;
        for m in &marks {
            let v = m.node.as_str().unwrap_or("");
            if matches!(m.field, Field::Full | Field::Name) {
                ctx.found.push(
                    super::ImageRef::parse(v)
                        .map(|r| r.name)
                        .unwrap_or_else(|_| v.to_string()),
                );
                ours |= ctx.target.matches(v);
            }
        }
        if !marks
            .iter()
            .any(|m| matches!(m.field, Field::Full | Field::Name))
        {
            for m in &marks {
                if let Some(p) = m.parent {
                    for k in ["newName", "name", "repository", "image"] {
                        let Some(named) = p.get(k) else { continue };
                        if let Some(v) = named.as_str() {
                            if k == "name" && p.get("newName").is_some() {
                                continue;
                            }
                            // A marker on the value that names the image: the setter would
                            // write the tag or digest over the very name that made the policy
                            // ours, and the next bump would not know the entry (nor stop).
                            if std::ptr::eq(named, m.node) {
                                break;
                            }
                            ctx.found.push(v.to_string());
                            ours |= ctx.target.matches(v);
                            break;
                        }
                    }
                }
            }
        }
        if !ours {
            continue;
        }
        for m in marks {
            // A `:tag`/`:digest` marker on a value that names the image is never written,
            // whichever marker made the policy ours: the tag or digest would rename the
            // image, and the other editors (which matched the entry by that name) and the
            // next bump would not know the entry any more.
            if matches!(m.field, Field::Tag | Field::Digest) && names_the_image(&m) {
                continue;
            }
            let v = m.node.as_str().unwrap_or("").to_string();
            let path = path_of(m.doc, &m.segs);
            match m.field {
                Field::Full => {
                    if let Some(new) = ctx.target.new_reference(&v) {
                        ctx.replace(m.node, &new, path, "flux-setter");
                    }
                }
                Field::Tag => {
                    if let Some(t) = ctx.target.tag.clone() {
                        ctx.replace(m.node, &t, path, "flux-setter");
                    }
                }
                Field::Digest => {
                    let d = ctx.target.digest.clone();
                    ctx.replace(m.node, &d, path, "flux-setter");
                }
                Field::Name => {}
            }
            // The marker is the user's word for this value: no other editor may set it
            // (not even when it already holds what Flux would write, or the next bump
            // would overwrite it and the one after that put it back).
            if let Some(span) = m.node.as_scalar().and_then(|s| s.span.clone()) {
                ctx.claimed.push(span);
            }
        }
    }
}

/// Whether the marked value is the one its mapping names the image with
/// (`newName`/`name`/`repository`/`image`, any of them: writing a tag or digest over a
/// kustomize entry's `name` renames it even when `newName` holds the replacement).
fn names_the_image(m: &Marked<'_>) -> bool {
    m.parent.is_some_and(|p| {
        ["newName", "name", "repository", "image"]
            .iter()
            .any(|k| p.get(k).is_some_and(|named| std::ptr::eq(named, m.node)))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::{edit_content, Target};

    const D: &str = "sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be";

    /// fixtures/fuzz-crashes/gitops_edit/flux-marker-digest-on-second-run.bin: a `:digest`
    /// marker on `newTag`. The setter wrote the digest there and claimed the value only
    /// when it changed it, so the next bump let the kustomize editor write the tag over it,
    /// and the one after that the digest again: bumps never converged.
    #[test]
    fn a_marked_value_that_is_already_right_is_not_taken_by_another_editor() {
        let bytes = include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/flux-marker-digest-on-second-run.bin"
        );
        let src = std::str::from_utf8(&bytes[2..]).unwrap();
        let min = "images:\n  - name: container\n    newName: replaced # {\"$imagepolicy\": \"ns:p:name\"}\n    newTag: v1 # {\"$imagepolicy\": \"ns:pd:digest\"}\n";
        let t = Target::new("replaced", Some("v2.0.0"), D).unwrap();
        for (path, src) in [
            ("manifests/deployment.yaml", src),
            ("kustomization.yaml", min),
        ] {
            let first = edit_content(path, src, &t).unwrap().new_content;
            assert!(
                first.contains(&format!(
                    "    newTag: {D} # {{\"$imagepolicy\": \"{}:digest\"}}\n    digest: {D}\n",
                    if src == min {
                        "ns:pd"
                    } else {
                        "automatn-ns:policy-with-digest"
                    }
                )),
                "{first}"
            );
            let second = edit_content(path, &first, &t).unwrap();
            assert!(
                !second.changed(),
                "a second bump changed it again:\n{}",
                second.new_content
            );
        }
    }
    /// fixtures/fuzz-crashes/gitops_edit/flux-tag-marker-on-name.bin: a `:tag` marker on
    /// the `name` of a kustomize entry, the only marker of its policy. The entry's name
    /// made the policy ours, so the setter wrote the tag over the name, while the
    /// kustomize editor set `newTag`/`digest` on the entry it had matched by that name: the
    /// next bump knew no entry for the image and appended one, every time.
    #[test]
    fn a_tag_marker_on_the_images_name_does_not_rename_the_image() {
        let bytes = include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/flux-tag-marker-on-name.bin"
        );
        let src = std::str::from_utf8(&bytes[2..]).unwrap();
        let min = "images:\n  - name: app # {\"$imagepolicy\": \"ns:p:tag\"}\n";
        for (path, src, image) in [
            ("manifests/deployment.yaml", src, "contans"),
            ("kustomization.yaml", min, "app"),
        ] {
            let mut t = Target::new(image, Some("v2.0.0"), D).unwrap();
            t.add_missing = true;
            let first = edit_content(path, src, &t).unwrap().new_content;
            assert!(
                first.contains(&format!("  - name: {image} # {{\"$imagepolicy\"")),
                "the name was overwritten:\n{first}"
            );
            let second = edit_content(path, &first, &t).unwrap();
            assert!(
                !second.changed(),
                "a second bump changed it again:\n{}",
                second.new_content
            );
        }
    }
    /// fixtures/fuzz-crashes/gitops_edit/tag-marker-on-name-policy-ours-elsewhere.bin: a `:tag`
    /// marker on an entry's `name` again, but the policy has another `:tag` marker (on
    /// `newTag`) whose entry names our image, so the policy was ours all the same. The
    /// setter then wrote the tag over every marked value of the policy, the `name`
    /// included, while the kustomize editor set `digest` on the entry it had matched by
    /// that name: the next bump knew no entry for the image and appended one, every time.
    #[test]
    fn a_tag_marker_on_the_images_name_is_not_written_when_another_marker_makes_it_ours() {
        let bytes = include_bytes!(
            "../../../fixtures/fuzz-crashes/gitops_edit/tag-marker-on-name-policy-ours-elsewhere.bin"
        );
        let src = std::str::from_utf8(&bytes[2..]).unwrap();
        let min = "images:\n  - name: app # {\"$imagepolicy\": \"ns:p:tag\"}\n    newTag: v1 # {\"$imagepolicy\": \"ns:p:tag\"}\n";
        for (src, image) in [(src, "contans"), (min, "app")] {
            let mut t = Target::new(image, Some("v2.0.0"), D).unwrap();
            t.add_missing = true;
            t.helm_keys = vec!["api.image".into(), "worker".into()];
            let first = edit_content("kustomization.yaml", src, &t)
                .unwrap()
                .new_content;
            assert!(
                first.contains(&format!("  - name: {image} # {{\"$imagepolicy\"")),
                "the name was overwritten:\n{first}"
            );
            let second = edit_content("kustomization.yaml", &first, &t).unwrap();
            assert!(
                !second.changed(),
                "a second bump changed it again:\n{}",
                second.new_content
            );
        }
        // The other marker of the policy is still the setter's.
        let t = Target::new("app", Some("v2.0.0"), D).unwrap();
        let out = edit_content("kustomization.yaml", min, &t)
            .unwrap()
            .new_content;
        assert!(
            out.contains("    newTag: v2.0.0 # {\"$imagepolicy\": \"ns:p:tag\"}\n"),
            "{out}"
        );
    }
}
