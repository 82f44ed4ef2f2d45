//! Cache keys: the default key of a project, and the `codebuild-hash-files` helper that
//! buildspecs use in dynamic keys (`key: npm-$(codebuild-hash-files package-lock.json)`).

use sha2::{Digest, Sha256};

use super::archive::hex;

/// The key used when the buildspec's `cache` has no `key`: stable for a project and
/// buildspec file, `runner-<project>-<first 12 hex digits of sha256(buildspec path)>`.
pub fn default_key(project: &str, buildspec_path: &str) -> String {
    let digest = hex(&Sha256::digest(buildspec_path.as_bytes()));
    format!("runner-{project}-{}", &digest[..12])
}

/// `codebuild-hash-files PATTERN...` as a POSIX `sh` script (for
/// `/usr/local/bin/codebuild-hash-files` in the build container). Works with Debian's
/// coreutils/findutils and with busybox (`find`, `grep -E`, `sed`, `sort`, `xargs`,
/// `sha256sum`).
///
/// Patterns are globs relative to `$CODEBUILD_SRC_DIR` (the current directory when it
/// is unset), or absolute: `*` and `?` match within one path component, `**` across
/// components (`**/package-lock.json` matches at any depth, the top included), `[...]`
/// and `[!...]` are character classes; a pattern without metacharacters names one file.
/// Only regular files are hashed (symlinks are not followed). The digest printed is the
/// sha256 of the newline-terminated lowercase hex sha256 digests of the matching files'
/// contents, in bytewise order of their paths (a file matched twice counts once). When
/// nothing matches, a warning goes to stderr and the digest of the empty list is printed.
pub const HASH_FILES_SCRIPT: &str = r#"#!/bin/sh
# codebuild-hash-files PATTERN... : sha256 of the contents of the files matching the glob
# patterns (relative to $CODEBUILD_SRC_DIR), in path order. Installed by runner.
set -eu
LC_ALL=C
export LC_ALL

if [ "$#" -eq 0 ]; then
    echo "usage: codebuild-hash-files <glob-pattern>..." >&2
    exit 2
fi
cd "${CODEBUILD_SRC_DIR:-.}"

_chf_has_meta() {
    case $1 in
        *'*'* | *'?'* | *'['*) return 0 ;;
        *) return 1 ;;
    esac
}

# Glob -> anchored extended regular expression.
_chf_ere() {
    _a=$(printf '\001')
    _b=$(printf '\002')
    _c=$(printf '\003')
    printf '%s\n' "$1" | sed \
        -e 's#[.^$+(){}|\\]#\\&#g' \
        -e "s#\*\*/#$_a#g" \
        -e "s#/\*\*\$#$_b#" \
        -e "s#\*\*#$_c#g" \
        -e 's#\*#[^/]*#g' \
        -e 's#?#[^/]#g' \
        -e 's#\[!#[^#g' \
        -e "s#$_a#(.*/)?#g" \
        -e "s#$_b#(/.*)?#g" \
        -e "s#$_c#.*#g" \
        -e 's#^#^#' \
        -e 's#$#$#'
}

# Prints the files matching each pattern, one per line.
_chf_list() {
    for _pat in "$@"; do
        while :; do
            case $_pat in
                ./*) _pat=${_pat#./} ;;
                *) break ;;
            esac
        done
        [ -n "$_pat" ] || continue
        if ! _chf_has_meta "$_pat"; then
            if [ -f "$_pat" ] && [ ! -L "$_pat" ]; then
                printf '%s\n' "$_pat"
            fi
            continue
        fi
        # Start the walk at the literal leading directories of the pattern.
        case $_pat in
            /*) _base=/ _rest=${_pat#/} ;;
            *) _base= _rest=$_pat ;;
        esac
        while :; do
            _comp=${_rest%%/*}
            if _chf_has_meta "$_comp" || [ "$_comp" = "$_rest" ]; then
                break
            fi
            _base=$_base$_comp/
            _rest=${_rest#*/}
        done
        _dir=${_base%/}
        case $_base in
            /) _dir=/ ;;
            '') _dir=. ;;
        esac
        [ -d "$_dir" ] || continue
        _re=$(_chf_ere "$_pat")
        find "$_dir" -type f 2>/dev/null | sed 's#^\./##' | grep -E "$_re" || true
    done
}

_chf_files=$(_chf_list "$@" | sort -u)
if [ -z "$_chf_files" ]; then
    echo "codebuild-hash-files: no files match: $*" >&2
fi
printf '%s\n' "$_chf_files" \
    | sed -e '/^$/d' -e 's#^\([^/]\)#./\1#' \
    | tr '\n' '\000' \
    | xargs -0 -r sha256sum \
    | sed 's#^\\##' \
    | cut -c1-64 \
    | sha256sum \
    | cut -c1-64
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn default_key_is_stable_and_distinct() {
        let a = default_key("web", "buildspec.yml");
        assert_eq!(a, default_key("web", "buildspec.yml"));
        assert!(a.starts_with("runner-web-"));
        assert_eq!(a.len(), "runner-web-".len() + 12);
        assert_ne!(a, default_key("web", "ci/buildspec.yml"));
        assert_ne!(a, default_key("api", "buildspec.yml"));
        // sha256("buildspec.yml") starts with these digits (pins the format).
        let d = hex(&Sha256::digest(b"buildspec.yml"));
        assert_eq!(a, format!("runner-web-{}", &d[..12]));
    }

    /// Writes a tree; returns relative path → contents.
    fn tree(root: &Path) -> BTreeMap<&'static str, &'static [u8]> {
        let files: &[(&str, &[u8])] = &[
            ("package-lock.json", b"{\"root\":1}\n"),
            ("app/package-lock.json", b"{\"app\":2}\n"),
            ("app/deep/er/package-lock.json", b"{\"deep\":3}\n"),
            ("app/src/main.go", b"package main\n"),
            ("app/src/util.go", b"package util\n"),
            ("app/src/sub/x.go", b"package sub\n"),
            ("with space/a b.txt", b"spaces\n"),
            ("-dash.txt", b"dash\n"),
            ("req.txt", b"r1\n"),
            ("reqs.txt", b"r2\n"),
            ("data.v1.txt", b"dots\n"),
            ("dataxv1.txt", b"not a dot\n"),
        ];
        for (p, c) in files {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        std::os::unix::fs::symlink("package-lock.json", root.join("link.json")).unwrap();
        files.iter().copied().collect()
    }

    fn expected(contents: &[&[u8]]) -> String {
        let mut list = String::new();
        for c in contents {
            list.push_str(&hex(&Sha256::digest(c)));
            list.push('\n');
        }
        hex(&Sha256::digest(list.as_bytes()))
    }

    /// Shells to try: (name, program, args before the script, PATH override).
    fn shells(busybox_bin: &Path) -> Vec<(String, Vec<String>, Option<String>)> {
        let mut out = Vec::new();
        for sh in ["/bin/sh", "/usr/bin/dash", "/usr/bin/bash"] {
            if Path::new(sh).exists() {
                out.push((sh.to_string(), vec![sh.to_string()], None));
            }
        }
        if let Some(bb) = which("busybox") {
            // Busybox shell with busybox applets only (as in an Alpine/busybox image).
            std::fs::create_dir_all(busybox_bin).unwrap();
            for applet in [
                "sh",
                "find",
                "sed",
                "grep",
                "sort",
                "xargs",
                "sha256sum",
                "cut",
                "tr",
                "printf",
            ] {
                let _ = std::os::unix::fs::symlink(&bb, busybox_bin.join(applet));
            }
            out.push((
                "busybox sh (busybox applets)".to_string(),
                vec![bb.display().to_string(), "sh".to_string()],
                Some(busybox_bin.display().to_string()),
            ));
        }
        out
    }

    // Test harness only (this module is `#[cfg(test)]`): finds the host's busybox to run
    // the hash-files script under it. The host PATH of the test process, not a setting
    // of the library.
    fn which(name: &str) -> Option<std::path::PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(name))
            .find(|p| p.exists())
    }

    fn run(
        cmd: &[String],
        path: &Option<String>,
        script: &Path,
        src: &Path,
        args: &[&str],
    ) -> (String, String, bool) {
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..]).arg(script).args(args);
        c.env("CODEBUILD_SRC_DIR", src);
        if let Some(p) = path {
            c.env("PATH", p);
        }
        let out = c.output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
            out.status.success(),
        )
    }

    #[test]
    fn hash_files_script_with_every_shell() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let t = tree(&src);
        let script = dir.path().join("codebuild-hash-files");
        std::fs::write(&script, HASH_FILES_SCRIPT).unwrap();
        let abs_pattern = format!("{}/app/src/*.go", src.display());

        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            (vec!["package-lock.json"], vec!["package-lock.json"]),
            (
                vec!["**/package-lock.json"],
                vec![
                    "app/deep/er/package-lock.json",
                    "app/package-lock.json",
                    "package-lock.json",
                ],
            ),
            (
                vec!["app/src/*.go"],
                vec!["app/src/main.go", "app/src/util.go"],
            ),
            (
                vec!["app/src/**/*.go"],
                vec!["app/src/main.go", "app/src/sub/x.go", "app/src/util.go"],
            ),
            (
                vec!["app/src/**"],
                vec!["app/src/main.go", "app/src/sub/x.go", "app/src/util.go"],
            ),
            (vec!["req?.txt"], vec!["reqs.txt"]),
            (vec!["req*.txt"], vec!["req.txt", "reqs.txt"]),
            (vec!["data.v1.txt"], vec!["data.v1.txt"]),
            (vec!["data.*.txt"], vec!["data.v1.txt"]),
            (vec!["[-]dash.txt"], vec!["-dash.txt"]),
            (vec!["with space/*"], vec!["with space/a b.txt"]),
            // Overlapping patterns count each file once; argument order does not matter.
            (
                vec!["app/src/util.go", "app/src/*.go"],
                vec!["app/src/main.go", "app/src/util.go"],
            ),
            (
                vec![abs_pattern.as_str()],
                vec!["app/src/main.go", "app/src/util.go"],
            ),
            (vec!["./req.txt"], vec!["req.txt"]),
            // Symlinks are not hashed.
            (vec!["link.json"], vec![]),
            (vec!["nothing/**/*.x"], vec![]),
        ];

        let bb_bin = dir.path().join("bb-bin");
        let shells = shells(&bb_bin);
        assert!(shells.len() >= 2, "need at least two shells to compare");
        for (name, cmd, path) in &shells {
            for (args, files) in &cases {
                let contents: Vec<&[u8]> = files.iter().map(|f| t[f]).collect();
                let (out, err, ok) = run(cmd, path, &script, &src, args);
                assert!(ok, "{name} {args:?}: failed: {err}");
                assert_eq!(out, expected(&contents), "{name} {args:?}: {err}");
                if files.is_empty() {
                    assert!(err.contains("no files match"), "{name}: {err}");
                }
            }
            // No pattern: usage error.
            let (_, err, ok) = run(cmd, path, &script, &src, &[]);
            assert!(!ok && err.contains("usage"), "{name}: {err}");
        }
    }
}
