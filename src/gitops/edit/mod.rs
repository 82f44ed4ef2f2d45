//! Format-preserving edits of the files an image updater touches.
//!
//! Every editor looks at the span-carrying tree from [`yaml_span::parse`] and proposes
//! byte-range [`yaml_span::Edit`]s; [`edit_content`] applies them. Editors run in a fixed
//! order (Flux setters first, since a marker is the user's explicit word) and an edit on a
//! range already claimed is dropped.

pub mod argocd_source;
pub mod flux_setter;
pub mod helm;
pub mod image_ref;
pub mod kustomize;
pub mod manifest;
pub mod yaml_span;

use std::collections::BTreeSet;
use std::ops::Range;

use yaml_span::{Edit, Node, NodeKind, PathSeg, YamlDocs, YamlPath};

pub use image_ref::{normalize_repository, ImageRef, ImageRefError};
pub use yaml_span::YamlError;

/// What to move where: the image repository to match and the new tag/digest.
#[derive(Debug, Clone)]
pub struct Target {
    /// Normalised repository (`docker.io/library/nginx`), see [`normalize_repository`].
    pub repository: String,
    /// New tag; `None` keeps the tag already written.
    pub tag: Option<String>,
    /// `sha256:…`
    pub digest: String,
    /// Extra Helm value paths (`api.image`) naming an image map or a full reference.
    pub helm_keys: Vec<String>,
    /// The repository as the user wrote it (used when an entry has to be added).
    pub name: String,
    /// Like `kustomize edit set image`: add an `images:` entry to a kustomization that has
    /// none for this image. Set for files named explicitly (`--file`), not when walking.
    pub add_missing: bool,
}

impl Target {
    pub fn new(image: &str, tag: Option<&str>, digest: &str) -> Result<Target, ImageRefError> {
        let r = ImageRef::parse(image)?;
        let digest = image_ref::parse_digest(digest)?;
        let tag = match tag {
            Some(t) => Some(t.to_string()),
            None => r.tag.clone(),
        };
        if let Some(t) = &tag {
            // Reuse the reference parser to validate the tag.
            ImageRef::parse(&format!("x:{t}"))?;
        }
        Ok(Target {
            repository: r.normalized_name(),
            tag,
            digest,
            helm_keys: Vec::new(),
            name: r.name,
            add_missing: false,
        })
    }

    /// Does this written repository or reference name our repository?
    pub fn matches(&self, written: &str) -> bool {
        image_ref::same_repository(written, &self.repository)
    }

    /// The full reference to write in place of `written` (which matched): the repository
    /// as written, the new (or kept) tag, the new digest.
    pub fn new_reference(&self, written: &str) -> Option<String> {
        let r = ImageRef::parse(written).ok()?;
        let out = ImageRef {
            name: r.name,
            tag: self.tag.clone().or(r.tag),
            digest: Some(self.digest.clone()),
        };
        Some(out.to_reference())
    }
}

/// Shared state handed to every editor.
pub struct Ctx<'a> {
    pub src: &'a str,
    pub docs: &'a YamlDocs,
    /// Path relative to the repository root, `/`-separated.
    pub rel_path: &'a str,
    pub target: &'a Target,
    pub edits: Vec<Edit>,
    /// Repositories seen (matching or not), as written.
    pub found: Vec<String>,
    /// Why a matching value was left alone.
    pub notes: Vec<String>,
    /// Scalars an editor owns without changing them (a Flux setter marker's value that is
    /// already right): later editors leave them alone, so one bump converges.
    pub claimed: Vec<Range<usize>>,
}

impl Ctx<'_> {
    /// Propose replacing scalar `node` with `new` (in the scalar's own quoting style).
    pub fn replace(&mut self, node: &Node, new: &str, path: YamlPath, editor: &'static str) {
        let NodeKind::Scalar(s) = &node.kind else {
            return;
        };
        if s.value == new {
            return;
        }
        let Some(span) = s.span.clone() else {
            self.notes.push(format!(
                "{}:{path}: value is a block or multi-line scalar; edit it by hand",
                self.rel_path
            ));
            return;
        };
        if self.edits.iter().any(|e| e.range == span) || self.claimed.contains(&span) {
            return;
        }
        self.edits.push(Edit {
            range: span,
            text: yaml_span::render_scalar(new, s.style),
            paths: vec![path],
            inserted: false,
            editor,
        });
    }

    /// Line ending used by the file (`\r` when it has no other).
    pub fn eol(&self) -> &'static str {
        if self.src.contains("\r\n") {
            "\r\n"
        } else if self.src.contains('\n') || !self.src.contains('\r') {
            "\n"
        } else {
            "\r"
        }
    }

    /// Add `key: value` lines to block/flow mapping `map` (which must have at least one entry).
    pub fn insert_keys(
        &mut self,
        map: &Node,
        base: &YamlPath,
        kv: &[(&str, &str)],
        editor: &'static str,
    ) {
        let Some(entries) = map.as_map() else { return };
        if kv.is_empty() {
            return;
        }
        let Some((first_key, _)) = entries.first() else {
            return;
        };
        let Some((_, last_val)) = entries.last() else {
            return;
        };
        let Some(last_end) = last_val
            .as_scalar()
            .and_then(|s| s.span.clone())
            .map(|r| r.end)
        else {
            self.notes.push(format!(
                "{}:{base}: cannot add {} after a non-scalar value; add it by hand",
                self.rel_path,
                kv.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ));
            return;
        };
        let paths: Vec<YamlPath> = kv
            .iter()
            .map(|(k, _)| {
                let mut p = base.clone();
                p.segs.push(PathSeg::Key((*k).to_string()));
                p
            })
            .collect();
        let text = if map.flow {
            kv.iter()
                .map(|(k, v)| {
                    format!(
                        ", {k}: {}",
                        yaml_span::render_scalar(v, yaml_rust2::scanner::TScalarStyle::Plain)
                    )
                })
                .collect::<String>()
        } else {
            let col = first_key.start - yaml_span::line_start(self.src, first_key.start);
            let indent = " ".repeat(col);
            let eol = self.eol();
            let body: Vec<String> = kv
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{indent}{k}: {}",
                        yaml_span::render_scalar(v, yaml_rust2::scanner::TScalarStyle::Plain)
                    )
                })
                .collect();
            let at = yaml_span::line_end_incl(self.src, last_end);
            if at == self.src.len() && !yaml_span::ends_with_break(self.src) {
                format!("{eol}{}", body.join(eol))
            } else {
                format!("{}{eol}", body.join(eol))
            }
        };
        let at = if map.flow {
            last_end
        } else {
            yaml_span::line_end_incl(self.src, last_end)
        };
        self.edits.push(Edit {
            range: at..at,
            text,
            paths,
            inserted: true,
            editor,
        });
    }
}

/// Result of editing one file.
#[derive(Debug, Clone)]
pub struct FileEdit {
    pub new_content: String,
    pub edits: Vec<Edit>,
    pub found: Vec<String>,
    pub notes: Vec<String>,
}

impl FileEdit {
    pub fn changed(&self) -> bool {
        !self.edits.is_empty()
    }
}

/// Edit one file's content for `target`. `rel_path` decides file-name based targets
/// (`.argocd-source-*.yaml`, `kustomization.yaml`). A byte order mark at the start is kept
/// and not edited; the editors see the text after it (so columns on the first line are
/// those of the text, not shifted by the mark), and the ranges are the file's own.
pub fn edit_content(rel_path: &str, src: &str, target: &Target) -> Result<FileEdit, YamlError> {
    const BOM: char = yaml_span::BOM;
    let Some(body) = src.strip_prefix(BOM) else {
        return edit_body(rel_path, src, &yaml_span::parse(src)?, target);
    };
    // One mark: a second one is content, as `yaml_span::parse` reads it.
    let mut fe = edit_body(rel_path, body, &yaml_span::parse_after_bom(body)?, target)?;
    fe.new_content.insert(0, BOM);
    let shift = BOM.len_utf8();
    for e in &mut fe.edits {
        e.range = e.range.start + shift..e.range.end + shift;
    }
    Ok(fe)
}

fn edit_body(
    rel_path: &str,
    src: &str,
    docs: &YamlDocs,
    target: &Target,
) -> Result<FileEdit, YamlError> {
    let mut ctx = Ctx {
        src,
        docs,
        rel_path,
        target,
        edits: Vec::new(),
        found: Vec::new(),
        notes: Vec::new(),
        claimed: Vec::new(),
    };
    flux_setter::edit(&mut ctx);
    argocd_source::edit(&mut ctx);
    kustomize::edit(&mut ctx);
    helm::edit(&mut ctx);
    manifest::edit(&mut ctx);
    let new_content = yaml_span::apply_edits(src, &ctx.edits);
    let mut seen = BTreeSet::new();
    let found = ctx
        .found
        .into_iter()
        .filter(|f| seen.insert(f.clone()))
        .collect();
    Ok(FileEdit {
        new_content,
        edits: ctx.edits,
        found,
        notes: ctx.notes,
    })
}

/// Image repositories (as written) that a bump of this file could change, in file order.
pub fn discover_images(rel_path: &str, src: &str) -> Result<Vec<String>, YamlError> {
    let none = Target {
        repository: "invalid.invalid/none".to_string(),
        tag: None,
        digest: format!("sha256:{}", "0".repeat(64)),
        helm_keys: Vec::new(),
        name: "invalid.invalid/none".to_string(),
        add_missing: false,
    };
    Ok(edit_content(rel_path, src, &none)?.found)
}

/// Is this a YAML file name?
pub fn is_yaml_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Basename of a `/`-separated path.
pub fn base_name(rel_path: &str) -> &str {
    rel_path.rsplit(['/', '\\']).next().unwrap_or(rel_path)
}

/// Path helper.
pub fn path_of(doc: usize, segs: &[PathSeg]) -> YamlPath {
    YamlPath {
        doc,
        segs: segs.to_vec(),
    }
}

/// Walk every node of every document with parent mapping access.
pub fn walk_maps<'a>(docs: &'a YamlDocs, f: &mut dyn FnMut(usize, &[PathSeg], &'a Node)) {
    for (i, d) in docs.docs.iter().enumerate() {
        let mut p = Vec::new();
        yaml_span::walk(d, &mut p, &mut |path, n| {
            if matches!(n.kind, NodeKind::Map(_)) {
                f(i, path, n)
            }
        });
    }
}

/// Repository of a Helm-style image map: `registry` + `repository`, or `name`/`repository`.
pub fn helm_repo_of(map: &Node) -> Option<(String, &'static str)> {
    let registry = map
        .get("registry")
        .and_then(|n| n.as_str())
        .filter(|s| !s.is_empty());
    let (key, repo) = if let Some(r) = map.get("repository").and_then(|n| n.as_str()) {
        ("repository", r)
    } else {
        ("name", map.get("name").and_then(|n| n.as_str())?)
    };
    let full = match registry {
        Some(reg) => format!("{}/{}", reg.trim_end_matches('/'), repo),
        None => repo.to_string(),
    };
    Some((full, key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const D: &str = "sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be";

    fn bump(path: &str, src: &str, image: &str, tag: Option<&str>) -> String {
        let t = Target::new(image, tag, D).unwrap();
        edit_content(path, src, &t).unwrap().new_content
    }

    #[test]
    fn a_byte_order_mark_is_kept_and_the_file_still_edited() {
        let src = "\u{feff}images:\n- name: ghcr.io/a/b\n  newTag: '1'\n";
        let t = Target::new("ghcr.io/a/b", Some("2"), D).unwrap();
        let fe = edit_content("kustomization.yaml", src, &t).unwrap();
        assert_eq!(
            fe.new_content,
            format!("\u{feff}images:\n- name: ghcr.io/a/b\n  newTag: '2'\n  digest: {D}\n")
        );
        // Ranges are in the file's own offsets.
        let tag = fe.edits.iter().find(|e| e.text == "'2'").unwrap();
        assert_eq!(&src[tag.range.clone()], "'1'");
    }

    #[test]
    fn flux_setters_follow_their_policy() {
        let src = "images:\n  - name: container\n    newName: replaced # {\"$imagepolicy\": \"ns:policy:name\"}\n    newTag: v1 # {\"$imagepolicy\": \"ns:policy:tag\"}\n    newDigest: sha256:1234 # {\"$imagepolicy\": \"ns:pd:digest\"}\npatches:\n  - target:\n      image: image # {\"$imagepolicy\": \"ns:pd\"}\n";
        let out = bump("x.yaml", src, "image", Some("v1.0.0"));
        assert!(
            out.contains(&format!(
                "newDigest: {D} # {{\"$imagepolicy\": \"ns:pd:digest\"}}"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("image: image:v1.0.0@{D} # {{")),
            "{out}"
        );
        assert!(
            out.contains("newTag: v1 #"),
            "policy of another image untouched: {out}"
        );
        let out = bump("x.yaml", src, "replaced", Some("v2"));
        assert!(out.contains("newTag: v2 # {"), "{out}");
        assert!(out.contains("newName: replaced #"), "{out}");
    }

    #[test]
    fn kustomize_adds_missing_keys_with_entry_indentation_and_keeps_eof() {
        let src = "images:\n- name: ghcr.io/a/b # c\n  newTag: '1'";
        let out = bump("kustomization.yaml", src, "ghcr.io/a/b", Some("2"));
        assert_eq!(
            out,
            format!("images:\n- name: ghcr.io/a/b # c\n  newTag: '2'\n  digest: {D}")
        );
        let src = "images:\r\n  - name: x\r\n    newName: ghcr.io/a/b\r\n# tail\r\n";
        let out = bump("kustomization.yaml", src, "ghcr.io/a/b", None);
        assert_eq!(out, format!("images:\r\n  - name: x\r\n    newName: ghcr.io/a/b\r\n    digest: {D}\r\n# tail\r\n"));
        // `name` alone does not match when newName renames it elsewhere.
        let src = "images:\n- name: ghcr.io/a/b\n  newName: other/c\n";
        assert_eq!(bump("kustomization.yaml", src, "ghcr.io/a/b", None), src);
    }

    #[test]
    fn kustomize_set_image_adds_an_entry_for_named_files() {
        let mut t = Target::new("ghcr.io/a/b", Some("2.0"), D).unwrap();
        t.add_missing = true;
        let src = "resources:\n  - d.yaml\nimages:\n  - name: nginx\n    newTag: \"1\" # keep\n";
        let out = edit_content("kustomization.yaml", src, &t)
            .unwrap()
            .new_content;
        assert_eq!(
            out,
            format!("{src}  - name: ghcr.io/a/b\n    newTag: \"2.0\"\n    digest: {D}\n")
        );
        let src = "resources:\n- d.yaml";
        let out = edit_content("kustomization.yaml", src, &t)
            .unwrap()
            .new_content;
        assert_eq!(
            out,
            format!("{src}\nimages:\n- name: ghcr.io/a/b\n  newTag: \"2.0\"\n  digest: {D}\n")
        );
        // Not when walking (add_missing false), and not twice.
        t.add_missing = false;
        assert_eq!(
            edit_content("kustomization.yaml", src, &t)
                .unwrap()
                .new_content,
            src
        );
        t.add_missing = true;
        let once = edit_content("kustomization.yaml", src, &t)
            .unwrap()
            .new_content;
        assert_eq!(
            edit_content("kustomization.yaml", &once, &t)
                .unwrap()
                .new_content,
            once
        );
    }

    #[test]
    fn helm_and_argocd_and_numbers_stay_strings() {
        let src = "image:\n  repository: nginx\n  tag: 1.25\n";
        let out = bump("values.yaml", src, "docker.io/library/nginx", Some("1.26"));
        assert_eq!(
            out,
            format!("image:\n  repository: nginx\n  tag: 1.26@{D}\n")
        );
        let src = "image:\n  repository: nginx\n  tag: 1.25\n";
        let k = "images:\n- name: nginx\n  newTag: 1.25\n";
        let out = bump("kustomization.yaml", k, "nginx", Some("1.26"));
        assert!(
            out.contains("newTag: \"1.26\""),
            "a bare 1.26 would load as a float: {out}"
        );
        let _ = src;
        let src = "kustomize:\n  images:\n  - nginx=nginx:1.25\n  - ghcr.io/a/b:1\n";
        let out = bump(".argocd-source-app.yaml", src, "nginx", None);
        assert_eq!(
            out,
            format!("kustomize:\n  images:\n  - nginx=nginx:1.25@{D}\n  - ghcr.io/a/b:1\n")
        );
    }
}
