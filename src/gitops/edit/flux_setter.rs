//! Flux image-automation setter comments: `# {"$imagepolicy": "NS:POLICY[:name|:tag|:digest]"}`
//! after a scalar marks it for replacement.
//!
//! A policy is ours when one of its full-reference or `:name` values is our repository
//! (or, for a policy with only `:tag`/`:digest` markers, when the mapping holding the
//! marker names our repository in `name`/`newName`/`repository`/`image`). Then full
//! markers get `repo:tag@digest`, `:tag` markers the new tag (when one is given),
//! `:digest` markers the digest; `:name` markers are left as they are.

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
                        if let Some(v) = p.get(k).and_then(|n| n.as_str()) {
                            if k == "name" && p.get("newName").is_some() {
                                continue;
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
        }
    }
}
