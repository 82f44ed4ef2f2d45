//! Alpine's apk database `/lib/apk/db/installed`: one `X:value` per line,
//! packages separated by blank lines. `P` name, `V` version, `o` origin
//! (source package), `A` architecture.

use super::{InventoryError, OsPackage};

pub fn parse_installed(bytes: &[u8]) -> Result<Vec<OsPackage>, InventoryError> {
    if bytes.contains(&0) {
        return Err(InventoryError::BinaryData {
            what: "the apk database",
        });
    }
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut cur = OsPackage::default();
    let mut flush = |cur: &mut OsPackage| {
        let p = std::mem::take(cur);
        if !p.name.is_empty() && !p.version.is_empty() {
            out.push(p);
        }
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut cur);
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k {
            "P" => cur.name = v.to_string(),
            "V" => cur.version = v.to_string(),
            "o" => cur.source_name = Some(v.to_string()),
            "A" => cur.arch = Some(v.to_string()),
            _ => {}
        }
    }
    flush(&mut cur);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn fixture_installed() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/scan/image/apk-installed"
        ))
        .unwrap();
        let pkgs = parse_installed(&bytes).unwrap();
        let got: Vec<String> = pkgs
            .iter()
            .map(|p| format!("{} {} {:?} {:?}", p.name, p.version, p.source_name, p.arch))
            .collect();
        assert_eq!(
            got,
            [
                "musl 1.2.4_git20230717-r4 Some(\"musl\") Some(\"x86_64\")",
                "busybox 1.36.1-r15 Some(\"busybox\") Some(\"x86_64\")",
                "libcrypto3 3.1.4-r5 Some(\"openssl\") Some(\"x86_64\")",
            ]
        );
        assert!(parse_installed(b"\x00").is_err());
    }
}
