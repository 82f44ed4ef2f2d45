//! Helpers the fuzz targets share: one function per parser family, so each target in
//! `fuzz_targets/` is a line or two. Every function here takes the raw fuzz input and
//! must never panic on its own; a panic is always the parser's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod registry;

use runner::scan::deps::LockfileKind;
use std::io::Write;
use std::path::Path;

/// Lockfile parsers: the text under the kind's usual file name.
pub fn lockfile(kind: LockfileKind, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = match kind {
        LockfileKind::CargoLock => "Cargo.lock",
        LockfileKind::PackageLock => "package-lock.json",
        LockfileKind::YarnLock => "yarn.lock",
        LockfileKind::PnpmLock => "pnpm-lock.yaml",
        LockfileKind::Requirements => "requirements.txt",
        LockfileKind::PoetryLock => "poetry.lock",
        LockfileKind::PipfileLock => "Pipfile.lock",
        LockfileKind::UvLock => "uv.lock",
        LockfileKind::GoMod => "go.mod",
        LockfileKind::GemfileLock => "Gemfile.lock",
        LockfileKind::ComposerLock => "composer.lock",
    };
    if let Ok(parsed) = kind.parse(text, name) {
        // The line numbers handed out must point into the file.
        let lines = text.lines().count().max(1) as u32 + 1;
        for p in &parsed.packages {
            if let Some(l) = p.location.line {
                assert!(l >= 1 && l <= lines, "line {l} outside a {lines}-line file");
            }
        }
    }
}

/// A buildspec: parse, render every diagnostic, expand a batch.
pub fn buildspec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = runner::buildspec::parse(text);
    for d in &parsed.diagnostics {
        let _ = runner::buildspec::render("buildspec.yml", d);
    }
    if let Some(spec) = &parsed.spec {
        if let Some(batch) = &spec.batch {
            let _ = runner::plan::expand_batch(batch);
        }
    }
}

/// The project file (`runner.yml`).
pub fn project_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (_, diags) = runner::project::parse_project(text);
    for d in &diags {
        let _ = runner::buildspec::render("runner.yml", d);
    }
}

/// Files the GitOps editors look at, by name (the name decides which editors apply).
const GITOPS_NAMES: [&str; 8] = [
    "kustomization.yaml",
    "overlays/prod/kustomization.yml",
    "values.yaml",
    "charts/api/values-prod.yaml",
    ".argocd-source-shop.yaml",
    ".argocd-source.yaml",
    "manifests/deployment.yaml",
    "flux/workloads.yml",
];

/// Images the corpus files name, plus whatever the file itself names.
const GITOPS_IMAGES: [&str; 5] = [
    "image",
    "ghcr.io/stefanprodan/podinfo",
    "quay.io/dkarpele/my-guestbook",
    "nginx",
    "127.0.0.1:30000/test-image",
];

const DIGEST: &str = "sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be";

/// GitOps edits: byte 0 picks the file name, byte 1 the image and options; the rest is
/// the file. An edited file must still be YAML, and editing again must change nothing.
pub fn gitops_edit(data: &[u8]) {
    use runner::gitops::edit::{discover_images, edit_content, yaml_span, Target};
    let [a, b, rest @ ..] = data else { return };
    let Ok(src) = std::str::from_utf8(rest) else {
        return;
    };
    let rel_path = GITOPS_NAMES[usize::from(*a) % GITOPS_NAMES.len()];
    let discovered = discover_images(rel_path, src).unwrap_or_default();
    let pick = usize::from(*b & 0x0f);
    let image = match pick.checked_sub(GITOPS_IMAGES.len()) {
        None => GITOPS_IMAGES[pick].to_string(),
        Some(i) => match discovered.get(i % discovered.len().max(1)) {
            Some(d) => d.clone(),
            None => GITOPS_IMAGES[0].to_string(),
        },
    };
    let tag = if b & 0x10 != 0 { Some("v2.0.0") } else { None };
    let Ok(mut target) = Target::new(&image, tag, DIGEST) else {
        return;
    };
    target.add_missing = b & 0x20 != 0;
    if b & 0x40 != 0 {
        target.helm_keys = vec!["api.image".into(), "worker".into()];
    }
    let Ok(first) = edit_content(rel_path, src, &target) else {
        return;
    };
    if first.changed() {
        if let Err(e) = yaml_span::parse(&first.new_content) {
            panic!("the edit of a valid file is not YAML any more: {e}");
        }
        if let Ok(second) = edit_content(rel_path, &first.new_content, &target) {
            assert!(
                !second.changed(),
                "a second edit changed the file again:\n{}",
                second.new_content
            );
        }
    }
}

/// An image archive: byte 0 even → the rest is a `docker save` tar; odd → the rest is a
/// tar unpacked into a directory, read as an OCI image layout.
pub fn image_archive(data: &[u8]) {
    let [mode, rest @ ..] = data else { return };
    let Some(dir) = scratch() else { return };
    let path = if mode & 1 == 0 {
        let path = dir.join("image.tar");
        if std::fs::write(&path, rest).is_err() {
            return;
        }
        path
    } else {
        let path = dir.join("layout");
        let _ = std::fs::remove_dir_all(&path);
        if unpack(rest, &path).is_err() {
            return;
        }
        path
    };
    if let Ok(inv) = runner::scan::image::scan_image_archive(&path) {
        // What a scan does next: read every file of the flattened image.
        let _ = inv.for_each_file(1 << 20, |_, _, _| {});
    }
}

/// A directory for this process's scratch files, made once (a fresh one per input costs
/// more than the parsing).
fn scratch() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<tempfile::TempDir>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().ok())
        .as_ref()
        .map(tempfile::TempDir::path)
}

/// Unpacks plain files and directories (nothing else) of a tar under `to`.
fn unpack(data: &[u8], to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut ar = tar::Archive::new(data);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        if name.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        }) {
            continue;
        }
        let dest = to.join(&name);
        match entry.header().entry_type() {
            tar::EntryType::Directory => std::fs::create_dir_all(&dest)?,
            tar::EntryType::Regular => {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut f = std::fs::File::create(&dest)?;
                std::io::copy(&mut entry, &mut f)?;
                f.flush()?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The parsers of files found in an image: byte 0 picks one.
pub fn image_inventory(data: &[u8]) {
    use runner::scan::image::inventory::{apk, cargo_auditable, dpkg, node, python, rpm};
    let [which, rest @ ..] = data else { return };
    match which % 8 {
        0 => {
            let _ = dpkg::parse_status(rest);
        }
        1 => {
            let _ = apk::parse_installed(rest);
        }
        2 => {
            // sqlite, ndb or BerkeleyDB, by magic.
            let _ = rpm::parse_rpmdb(rest);
        }
        3 => {
            let _ = rpm::parse_header(rest);
        }
        4 => {
            let _ = cargo_auditable::packages_from_elf(rest);
        }
        5 => {
            let _ = cargo_auditable::decode_dep_v0(rest);
        }
        6 => {
            let _ = python::parse_metadata(rest);
            let _ = node::parse_package_json(rest);
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let fields = runner::scan::image::os_release::parse_os_release(&text);
            let _ = runner::scan::image::os_release::from_fields(&fields, "etc/os-release");
        }
    }
}

/// A JUnit XML report.
pub fn junit(data: &[u8]) {
    let _ = runner::reports::parse_junit(data);
}

/// A `--secrets-file` (JSON).
pub fn secrets_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = runner::secrets::local::LocalSecrets::from_json(text, Path::new("secrets.json"));
}

/// A secret-scan baseline (JSON).
pub fn secrets_baseline(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(b) = runner::scan::secrets::Baseline::from_json(text, Path::new("baseline.json")) {
        let _ = b.to_json();
    }
}

/// Text the rule packs are tried on once they compile.
const SECRET_SAMPLE: &str = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n\
token: ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789\n\
password = \"hunter2-but-longer-Xy9!\"\n\
-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n";

/// A gitleaks TOML rule pack: compile it, then scan a small text with it.
pub fn gitleaks_rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scanner) = runner::scan::secrets::SecretScanner::from_rule_pack(text) {
        let _ = scanner.scan_bytes("src/config.env", SECRET_SAMPLE.as_bytes(), None);
        let _ = scanner.rule_meta();
    }
}

/// `.dockerignore`: the build context of a small fixed tree with the input as its
/// `.dockerignore`. The Dockerfile and `.dockerignore` must always be in the tar.
pub fn dockerignore(data: &[u8]) {
    static TREE: std::sync::OnceLock<Option<tempfile::TempDir>> = std::sync::OnceLock::new();
    let Some(dir) = TREE.get_or_init(|| tempfile::tempdir().ok()) else {
        return;
    };
    let root = dir.path();
    let files = [
        "Dockerfile",
        "app/main.py",
        "app/.env",
        "node_modules/x/index.js",
        "docs/README.md",
        "a b/c[1].txt",
    ];
    for f in files {
        let p = root.join(f);
        if let Some(parent) = p.parent() {
            if std::fs::create_dir_all(parent).is_err() {
                return;
            }
        }
        if std::fs::write(&p, f).is_err() {
            return;
        }
    }
    if std::fs::write(root.join(".dockerignore"), data).is_err() {
        return;
    }
    let Ok(tar_bytes) = runner::publish::context::context_tar(root, "Dockerfile") else {
        return;
    };
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    for e in ar.entries().expect("context tar readable").flatten() {
        if let Ok(p) = e.path() {
            names.push(p.to_string_lossy().into_owned());
        }
    }
    for required in ["Dockerfile", ".dockerignore"] {
        assert!(
            names.iter().any(|n| n == required),
            "{required} left out of the context: {names:?}"
        );
    }
}

/// An OSV record: parse it (full and pre-scan views), then match it against packages
/// named by the record at the versions the record itself mentions.
pub fn osv_record(data: &[u8]) {
    use runner::scan::model::{Location, Package};
    use runner::scan::osv::{db::match_record, names::normalize, record};
    let _ = serde_json::from_slice::<record::PreScan<'_>>(data);
    let Ok(vuln) = serde_json::from_slice::<record::Vuln>(data) else {
        return;
    };
    let mut versions: Vec<&str> = vec!["0", "1.0.0", "0.0.0-0", "2.3.4-1ubuntu1", "1:2.0-r3"];
    for a in &vuln.affected {
        versions.extend(a.versions.iter().map(String::as_str));
        for r in &a.ranges {
            for e in &r.events {
                for v in [&e.introduced, &e.fixed, &e.last_affected, &e.limit]
                    .into_iter()
                    .flatten()
                {
                    versions.push(v);
                }
            }
        }
    }
    versions.truncate(64);
    for a in vuln.affected.iter().take(8) {
        let eco = &a.package.ecosystem;
        let key = normalize(eco, &a.package.name);
        for v in &versions {
            let pkg = Package {
                ecosystem: eco.clone(),
                name: a.package.name.clone(),
                version: (*v).to_string(),
                source_name: None,
                purl: String::new(),
                location: Location {
                    path: "lock".into(),
                    line: None,
                    column: None,
                    layer: None,
                },
            };
            let _ = match_record(&vuln, &pkg, &key);
        }
    }
}

/// A `--env-file` (dotenv) and one `--env` assignment per line.
pub fn env_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = runner::plan::parse_env_file("build.env", text);
    for line in text.lines().take(16) {
        let _ = runner::plan::parse_env_assignment("--env", line);
    }
}

/// Image references, as the publish and GitOps sides parse them; a reference that
/// parses must parse again from its own rendering to the same value.
pub fn image_ref(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = runner::publish::ImageRef::parse(text) {
        let _ = r.name();
        let _ = r.manifest_reference();
        let _ = r.is_loopback();
        let shown = r.to_string();
        let again = runner::publish::ImageRef::parse(&shown);
        assert!(
            again.is_ok(),
            "{text:?} parsed, its rendering {shown:?} does not"
        );
    }
    if let Ok(r) = runner::gitops::edit::ImageRef::parse(text) {
        let _ = r.normalized_name();
        let shown = r.to_reference();
        let again = runner::gitops::edit::ImageRef::parse(&shown);
        assert!(
            again.is_ok(),
            "{text:?} parsed, its rendering {shown:?} does not"
        );
    }
    let _ = runner::gitops::edit::normalize_repository(text);
}
