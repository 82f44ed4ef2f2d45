//! Rust binaries built with `cargo auditable`: an ELF section `.dep-v0` holding
//! zlib-compressed JSON `{"packages":[{"name","version","source","kind",...}]}`.
//! Section headers are parsed by hand (ELF32/ELF64, either byte order).

use std::io::Read;

use super::InventoryError;

/// Largest decompressed dependency list we accept.
const MAX_JSON: u64 = 8 << 20;

fn rd(b: &[u8], off: usize, len: usize, le: bool) -> Option<u64> {
    let s = b.get(off..off.checked_add(len)?)?;
    let mut v = 0u64;
    if le {
        for &x in s.iter().rev() {
            v = (v << 8) | u64::from(x);
        }
    } else {
        for &x in s {
            v = (v << 8) | u64::from(x);
        }
    }
    Some(v)
}

/// The bytes of the ELF section `name`, or `None` (not an ELF file, no such
/// section, or headers pointing outside the file).
pub fn elf_section<'a>(b: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if !b.starts_with(b"\x7fELF") {
        return None;
    }
    let is64 = match b.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match b.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (
            rd(b, 0x28, 8, le)?,
            rd(b, 0x3a, 2, le)?,
            rd(b, 0x3c, 2, le)?,
            rd(b, 0x3e, 2, le)?,
        )
    } else {
        (
            rd(b, 0x20, 4, le)?,
            rd(b, 0x2e, 2, le)?,
            rd(b, 0x30, 2, le)?,
            rd(b, 0x32, 2, le)?,
        )
    };
    let shoff = usize::try_from(shoff).ok()?;
    let shentsize = usize::try_from(shentsize).ok()?;
    if shentsize < if is64 { 64 } else { 40 } {
        return None;
    }
    // (name offset, type, data offset, data size) of section i.
    let sec = |i: u64| -> Option<(u64, u64, u64, u64)> {
        let base = shoff.checked_add(usize::try_from(i).ok()?.checked_mul(shentsize)?)?;
        if is64 {
            Some((
                rd(b, base, 4, le)?,
                rd(b, base + 4, 4, le)?,
                rd(b, base + 24, 8, le)?,
                rd(b, base + 32, 8, le)?,
            ))
        } else {
            Some((
                rd(b, base, 4, le)?,
                rd(b, base + 4, 4, le)?,
                rd(b, base + 16, 4, le)?,
                rd(b, base + 20, 4, le)?,
            ))
        }
    };
    let data = |off: u64, size: u64| -> Option<&'a [u8]> {
        let off = usize::try_from(off).ok()?;
        let size = usize::try_from(size).ok()?;
        b.get(off..off.checked_add(size)?)
    };
    let (_, _, str_off, str_size) = sec(shstrndx)?;
    let strtab = data(str_off, str_size)?;
    for i in 0..shnum {
        let Some((n, ty, off, size)) = sec(i) else {
            continue;
        };
        let Some(rest) = usize::try_from(n).ok().and_then(|n| strtab.get(n..)) else {
            continue;
        };
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            if ty == 8 {
                return None; // SHT_NOBITS
            }
            return data(off, size);
        }
    }
    None
}

#[derive(serde::Deserialize)]
struct Auditable {
    packages: Vec<AuditPkg>,
}

#[derive(serde::Deserialize)]
struct AuditPkg {
    name: String,
    version: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    kind: Option<String>,
}

/// Decode a `.dep-v0` payload: crates.io packages that are linked in (build
/// dependencies and local/git crates are left out).
pub fn decode_dep_v0(section: &[u8]) -> Result<Vec<(String, String)>, InventoryError> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(section)
        .take(MAX_JSON + 1)
        .read_to_end(&mut json)
        .map_err(InventoryError::DepV0Zlib)?;
    if json.len() as u64 > MAX_JSON {
        return Err(InventoryError::DepV0TooLarge);
    }
    let a: Auditable = serde_json::from_slice(&json).map_err(InventoryError::DepV0Json)?;
    Ok(a.packages
        .into_iter()
        .filter(|p| p.source == "crates.io" && p.kind.as_deref() != Some("build"))
        .map(|p| (p.name, p.version))
        .collect())
}

/// Packages recorded in an ELF binary by cargo-auditable; empty for other files.
pub fn packages_from_elf(bytes: &[u8]) -> Result<Vec<(String, String)>, InventoryError> {
    match elf_section(bytes, ".dep-v0") {
        Some(s) => decode_dep_v0(s),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::Write;

    /// A minimal ELF64 LE file with sections: null, .shstrtab, .dep-v0.
    pub(crate) fn tiny_elf(json: &str) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json.as_bytes()).unwrap();
        let dep = z.finish().unwrap();
        let strtab = b"\0.shstrtab\0.dep-v0\0".to_vec();
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        let str_off = f.len() as u64;
        f.extend_from_slice(&strtab);
        let dep_off = f.len() as u64;
        f.extend_from_slice(&dep);
        let shoff = f.len() as u64;
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        let sh = |name: u32, ty: u32, off: u64, size: u64| {
            let mut s = vec![0u8; 64];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[4..8].copy_from_slice(&ty.to_le_bytes());
            s[24..32].copy_from_slice(&off.to_le_bytes());
            s[32..40].copy_from_slice(&size.to_le_bytes());
            s
        };
        f.extend(sh(0, 0, 0, 0));
        f.extend(sh(1, 3, str_off, strtab.len() as u64));
        f.extend(sh(11, 1, dep_off, dep.len() as u64));
        f
    }

    #[test]
    fn reads_dep_v0() {
        let elf = tiny_elf(
            r#"{"packages":[{"name":"myapp","version":"0.1.0","source":"local","root":true,"dependencies":[1,2]},
               {"name":"serde","version":"1.0.190","source":"crates.io"},
               {"name":"cc","version":"1.0.83","source":"crates.io","kind":"build"},
               {"name":"smallvec","version":"1.6.0","source":"crates.io","kind":"runtime"}]}"#,
        );
        assert_eq!(
            packages_from_elf(&elf).unwrap(),
            [
                ("serde".to_string(), "1.0.190".to_string()),
                ("smallvec".to_string(), "1.6.0".to_string())
            ]
        );
    }

    #[test]
    fn real_dep_v0_section() {
        // `.dep-v0` of a binary built by cargo-auditable 0.7.7 (serde_json + memchr),
        // dumped with `objcopy --dump-section .dep-v0=dep-v0.bin`.
        let sec = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/scan/image/dep-v0.bin"
        ))
        .unwrap();
        let got: Vec<String> = decode_dep_v0(&sec)
            .unwrap()
            .into_iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        assert_eq!(
            got,
            [
                "itoa 1.0.19",
                "memchr 2.8.3",
                "serde_core 1.0.229",
                "serde_json 1.0.154",
                "zmij 1.0.23"
            ]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn real_elf_sections() {
        // This test binary is a real ELF file written by the linker.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let text = elf_section(&me, ".text").expect(".text");
        assert!(text.len() > 1000);
        assert!(elf_section(&me, ".shstrtab").is_some());
        assert!(elf_section(&me, ".bss").is_none(), "NOBITS has no data");
        assert!(packages_from_elf(&me).unwrap().is_empty());
    }

    #[test]
    fn garbage_is_not_fatal() {
        assert!(packages_from_elf(b"#!/bin/sh\necho hi\n")
            .unwrap()
            .is_empty());
        assert!(packages_from_elf(b"\x7fELF\x02\x01").unwrap().is_empty());
        let mut elf = tiny_elf("{}");
        let n = elf.len();
        elf.truncate(n - 40); // section table cut short
        assert!(packages_from_elf(&elf).unwrap().is_empty());
        let bad = tiny_elf("not json");
        assert!(packages_from_elf(&bad).is_err());
    }
}
