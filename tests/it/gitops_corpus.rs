//! Every corpus file that holds an image: a bump changes only the lines holding the value
//! (plus added keys), and the YAML trees before/after differ only at the edited paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use runner::gitops::edit::{discover_images, edit_content, Target};
use yaml_rust2::{Yaml, YamlLoader};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/gitops");
const DIGEST: &str = "sha256:4d2c4b8e6f1a0f3b9f0d8e8f6c1b2a3d4e5f60718293a4b5c6d7e8f901234567";

fn yaml_key(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Null => "~".into(),
        other => format!("{other:?}"),
    }
}

fn diff(a: &Yaml, b: &Yaml, path: String, out: &mut BTreeSet<String>) {
    match (a, b) {
        (Yaml::Hash(x), Yaml::Hash(y)) => {
            for (k, v) in x {
                let p = format!("{path}.{}", yaml_key(k));
                match y.get(k) {
                    Some(w) => diff(v, w, p, out),
                    None => {
                        out.insert(p);
                    }
                }
            }
            for k in y.keys() {
                if !x.contains_key(k) {
                    out.insert(format!("{path}.{}", yaml_key(k)));
                }
            }
        }
        (Yaml::Array(x), Yaml::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, format!("{path}[{i}]"), out);
            }
        }
        _ => {
            if a != b {
                out.insert(path);
            }
        }
    }
}

/// Lines of `a` and `b` outside their longest common subsequence.
fn line_diff<'a>(a: &[&'a str], b: &[&'a str]) -> (Vec<usize>, Vec<usize>) {
    let (n, m) = (a.len(), b.len());
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if a[i] == b[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut removed, mut added) = (0, 0, Vec::new(), Vec::new());
    while i < n && j < m {
        if a[i] == b[j] {
            i += 1;
            j += 1;
        } else if t[i + 1][j] >= t[i][j + 1] {
            removed.push(i);
            i += 1;
        } else {
            added.push(j);
            j += 1;
        }
    }
    removed.extend(i..n);
    added.extend(j..m);
    (removed, added)
}

#[test]
fn corpus_bumps_touch_only_the_image_values() {
    let mut entries: Vec<_> = std::fs::read_dir(CORPUS)
        .expect("corpus dir")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let (mut files, mut with_images, mut edited) = (0, 0, 0);
    let mut skipped: Vec<(String, String)> = Vec::new();
    for path in entries {
        let fname = path.file_name().unwrap().to_string_lossy().to_string();
        if !(fname.ends_with(".yaml") || fname.ends_with(".yml")) {
            continue;
        }
        files += 1;
        // Corpus names are owner__repo__dir__file; the editors look at the real file name.
        let rel = fname.rsplit("__").next().unwrap().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let images = match discover_images(&rel, &src) {
            Ok(i) => i,
            Err(e) => {
                skipped.push((fname, format!("YAML error: {e}")));
                continue;
            }
        };
        let Some(image) = images.iter().find(|i| Target::new(i, None, DIGEST).is_ok()) else {
            let probe = Target::new("invalid.invalid/none", None, DIGEST).unwrap();
            let notes = edit_content(&rel, &src, &probe)
                .map(|f| f.notes)
                .unwrap_or_default();
            let why = if notes.is_empty() {
                "no image field".to_string()
            } else {
                notes.join("; ")
            };
            skipped.push((fname, format!("no valid image reference: {why}")));
            continue;
        };
        with_images += 1;
        let target = Target::new(image, None, DIGEST).unwrap();
        let fe = edit_content(&rel, &src, &target).unwrap();
        if !fe.changed() {
            skipped.push((
                fname,
                format!("image {image}: no edit ({})", fe.notes.join("; ")),
            ));
            continue;
        }
        edited += 1;
        // 1. Lines: removed lines are exactly lines holding replaced values; added lines are
        //    their replacements plus inserted key lines.
        let old_lines: Vec<&str> = src.split('\n').collect();
        let new_lines: Vec<&str> = fe.new_content.split('\n').collect();
        let (removed, added) = line_diff(&old_lines, &new_lines);
        let mut touched = BTreeSet::new();
        let mut inserted_lines = 0;
        for e in &fe.edits {
            if e.inserted && (e.text.ends_with('\n') || e.text.starts_with('\n')) {
                inserted_lines += e.text.trim_matches('\n').split('\n').count();
            } else {
                touched.insert(src[..e.range.start].matches('\n').count());
            }
        }
        let removed_set: BTreeSet<usize> = removed.iter().copied().collect();
        assert!(
            removed_set.is_subset(&touched),
            "{fname}: lines {removed:?} changed, only {touched:?} hold edited values\n{}",
            fe.new_content
        );
        assert_eq!(
            added.len(),
            removed.len() + inserted_lines,
            "{fname}: unexpected added lines"
        );
        // 2. Trees: differ exactly at the edited paths, and the new values carry the digest.
        let before = YamlLoader::load_from_str(&src).unwrap();
        let after = YamlLoader::load_from_str(&fe.new_content).unwrap_or_else(|e| {
            panic!(
                "{fname}: edited file does not parse: {e}\n{}",
                fe.new_content
            )
        });
        assert_eq!(before.len(), after.len(), "{fname}: document count changed");
        let mut got = BTreeSet::new();
        for (i, (a, b)) in before.iter().zip(&after).enumerate() {
            diff(a, b, format!("doc{i}"), &mut got);
        }
        let want: BTreeSet<String> = fe
            .edits
            .iter()
            .flat_map(|e| e.paths.iter().map(|p| p.to_string()))
            .collect();
        assert_eq!(got, want, "{fname}: tree differences vs edits");
        assert!(
            fe.new_content.contains(DIGEST),
            "{fname}: digest not written"
        );
        println!(
            "edited  {fname}: --image {image}: {} edit(s) at {want:?}",
            fe.edits.len()
        );
    }
    for (f, why) in &skipped {
        println!("skipped {f}: {why}");
    }
    println!(
        "corpus: {files} files, {with_images} with images, {edited} edited, {} skipped",
        skipped.len()
    );
    assert_eq!(
        with_images, edited,
        "every file holding an image must be edited"
    );
    assert!(edited >= 25, "expected most of the corpus to hold images");
}

#[test]
fn truncated_and_mangled_corpus_files_never_panic() {
    let mut n = 0;
    for e in std::fs::read_dir(CORPUS).unwrap() {
        let path = e.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap_or_default();
        let rel = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .rsplit("__")
            .next()
            .unwrap()
            .to_string();
        let images = discover_images(&rel, &src).unwrap_or_default();
        let image = images
            .iter()
            .find(|i| Target::new(i, None, DIGEST).is_ok())
            .cloned()
            .unwrap_or_else(|| "nginx".into());
        let target = Target::new(&image, Some("9.9"), DIGEST).unwrap();
        let cuts: Vec<usize> = src.char_indices().map(|(i, _)| i).step_by(29).collect();
        for cut in cuts {
            for text in [
                src[..cut].to_string(),
                format!("{}\t{{[\"'\n{}", &src[..cut], &src[cut..]),
            ] {
                n += 1;
                if let Ok(fe) = edit_content(&rel, &text, &target) {
                    // Whatever was edited must still parse (if the loader took the input).
                    if fe.changed() && YamlLoader::load_from_str(&text).is_ok() {
                        assert!(
                            YamlLoader::load_from_str(&fe.new_content).is_ok(),
                            "{rel} cut {cut}: {:?}\n--- before\n{text}\n--- after\n{}",
                            fe.edits,
                            fe.new_content
                        );
                    }
                }
            }
        }
    }
    println!("{n} mangled inputs, no panic");
}
