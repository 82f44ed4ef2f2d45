//! Reading an image's `runtimes.yml` (CodeBuild's format) into a [`Manifest`].

use crate::buildspec::yaml::{self, Node};

/// What an image declares: its runtimes in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub runtimes: Vec<Runtime>,
}

/// One runtime (`nodejs`) with its versions in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub name: String,
    pub versions: Vec<RuntimeVersion>,
    /// The `default` entry: how the image installs an exact version it does not have
    /// (CodeBuild's custom runtime versions; `$VERSION` is the version asked for).
    pub default: Option<RuntimeVersion>,
}

/// One version of a runtime: the commands that select it and the runtimes it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeVersion {
    pub name: String,
    pub commands: Vec<String>,
    /// `requires:`: runtime → the versions of it this version works with.
    pub requires: Vec<(String, Vec<String>)>,
}

impl Manifest {
    pub fn runtime(&self, name: &str) -> Option<&Runtime> {
        self.runtimes.iter().find(|r| r.name == name)
    }
}

/// A runtimes file runner cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ManifestError {
    pub line: u32,
    pub message: String,
}

fn err(node: &Node, message: impl Into<String>) -> ManifestError {
    ManifestError {
        line: node.pos().line,
        message: message.into(),
    }
}

fn entries<'n>(node: &'n Node, what: &str) -> Result<&'n [(Node, Node)], ManifestError> {
    match node {
        Node::Map { entries, .. } => Ok(entries),
        Node::Null { .. } => Ok(&[]),
        other => Err(err(
            other,
            format!("{what} must be a mapping, found {}", other.kind()),
        )),
    }
}

fn key_text<'n>(key: &'n Node, what: &str) -> Result<&'n str, ManifestError> {
    key.as_str()
        .ok_or_else(|| err(key, format!("{what} must be a plain name")))
}

fn strings(node: &Node, what: &str) -> Result<Vec<String>, ManifestError> {
    match node {
        Node::Seq { items, .. } => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err(i, format!("{what} must hold strings, found {}", i.kind())))
            })
            .collect(),
        Node::Scalar { text, .. } => Ok(vec![text.clone()]),
        Node::Null { .. } => Ok(Vec::new()),
        other => Err(err(
            other,
            format!("{what} must be a list, found {}", other.kind()),
        )),
    }
}

fn version(name: &str, node: &Node, runtime: &str) -> Result<RuntimeVersion, ManifestError> {
    let what = format!("runtimes.{runtime}.versions.{name}");
    let mut v = RuntimeVersion {
        name: name.to_string(),
        commands: Vec::new(),
        requires: Vec::new(),
    };
    for (k, val) in entries(node, &what)? {
        match k.as_str() {
            Some("commands") => v.commands = strings(val, &format!("{what}.commands"))?,
            Some("requires") => {
                for (rk, rv) in entries(val, &format!("{what}.requires"))? {
                    let rname = key_text(rk, "a required runtime")?;
                    v.requires.push((
                        rname.to_string(),
                        strings(rv, &format!("{what}.requires.{rname}"))?,
                    ));
                }
            }
            // Other keys (none in CodeBuild's files today) are left alone.
            _ => {}
        }
    }
    Ok(v)
}

/// Reads a runtimes file. Unknown keys are ignored; a runtime or version that is not a
/// mapping, or commands that are not strings, are errors naming the line.
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let loaded = yaml::load(text);
    if let Some(d) = loaded.diagnostics.iter().find(|d| d.is_error()) {
        return Err(ManifestError {
            line: d.line,
            message: d.message.clone(),
        });
    }
    let Some(root) = loaded.root else {
        return Ok(Manifest::default());
    };
    let Some(runtimes) = root.get("runtimes") else {
        return Err(err(&root, "no `runtimes:` mapping"));
    };
    let mut manifest = Manifest::default();
    for (rk, rv) in entries(runtimes, "runtimes")? {
        let name = key_text(rk, "a runtime's name")?;
        let mut runtime = Runtime {
            name: name.to_string(),
            versions: Vec::new(),
            default: None,
        };
        let versions = match rv.get("versions") {
            Some(v) => v,
            None if rv.is_null() => continue,
            None => return Err(err(rv, format!("runtimes.{name} has no `versions:`"))),
        };
        for (vk, vv) in entries(versions, &format!("runtimes.{name}.versions"))? {
            let vname = key_text(vk, "a version")?;
            let v = version(vname, vv, name)?;
            if vname == "default" {
                runtime.default = Some(v);
            } else {
                runtime.versions.push(v);
            }
        }
        manifest.runtimes.push(runtime);
    }
    Ok(manifest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An excerpt of aws-codebuild-docker-images' ubuntu/standard/7.0/runtimes.yml plus
    /// the `requires:` of its older images.
    pub(crate) const CODEBUILD_EXCERPT: &str = r#"version: 0.1

runtimes:
  android:
    versions:
      28:
        requires:
          java: ["corretto8"]
        commands:
          - echo "Installing Android version 28 ..."
  java:
    versions:
      corretto21:
        commands:
          - echo "Installing Corretto(OpenJDK) version 21 ..."
          - export JAVA_HOME="$JAVA_21_HOME"
          - |-
            for tool_path in "$JAVA_HOME"/bin/*;
             do tool=`basename "$tool_path"`;
             done
      corretto8:
        commands:
          - export JAVA_HOME="$JAVA_8_HOME"
      corretto17:
        commands:
          - export JAVA_HOME="$JAVA_17_HOME"
  golang:
    versions:
      1.22:
        commands:
          - goenv global $GOLANG_22_VERSION
      1.20:
        commands:
          - goenv global $GOLANG_20_VERSION
      default:
        commands:
          - goenv install $VERSION && rm -rf /tmp/*
          - goenv global $VERSION
  python:
    versions:
      3.9:
        commands:
          - pyenv global $PYTHON_39_VERSION
      3.10:
        commands:
          - pyenv global $PYTHON_310_VERSION
      3.12:
        commands:
          - pyenv global $PYTHON_312_VERSION
  nodejs:
    versions:
      10:
        commands:
          - n $NODE_10_VERSION
      12:
        commands:
          - n $NODE_12_VERSION
"#;

    #[test]
    fn reads_codebuilds_format() {
        let m = parse(CODEBUILD_EXCERPT).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = m.runtimes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["android", "java", "golang", "python", "nodejs"]);
        let java = m.runtime("java").unwrap_or_else(|| panic!("java"));
        assert_eq!(java.versions[0].name, "corretto21");
        assert_eq!(java.versions[0].commands.len(), 3);
        assert!(java.versions[0].commands[2].starts_with("for tool_path"));
        // Versions keep their text: 3.10 is not the number 3.1.
        let py = m.runtime("python").unwrap_or_else(|| panic!("python"));
        let v: Vec<_> = py.versions.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(v, ["3.9", "3.10", "3.12"]);
        let go = m.runtime("golang").unwrap_or_else(|| panic!("golang"));
        assert_eq!(go.versions.len(), 2);
        assert_eq!(
            go.default.as_ref().map(|d| d.commands.len()),
            Some(2),
            "default is kept apart from the versions"
        );
        let android = m.runtime("android").unwrap_or_else(|| panic!("android"));
        assert_eq!(
            android.versions[0].requires,
            vec![("java".to_string(), vec!["corretto8".to_string()])]
        );
    }

    #[test]
    fn bad_files_are_errors_with_a_line() {
        let e = parse("runtimes:\n  java:\n    versions:\n      corretto8:\n        commands:\n          - {a: b}\n")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.line, 6);
        assert!(e.message.contains("must hold strings"), "{e}");
        let e = parse("version: 0.1\n")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(e.message.contains("runtimes"), "{e}");
        let e = parse("runtimes: [a\n")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(e.line >= 1);
    }
}
