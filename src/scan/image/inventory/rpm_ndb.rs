//! The ndb rpmdb (`Packages.db` of SUSE Linux Enterprise 15 and openSUSE Leap 15):
//! rpm's own "new database" format (rpm lib/backend/ndb/rpmpkg.c), all integers
//! little-endian.
//!
//! Layout: a 16-byte header (magic `RpmP`, version 0 at 4, generation at 8, slot page
//! count at 12) padded to 32 bytes, then `slot pages` pages of 4096 bytes holding
//! 16-byte slots (the header takes the first two): magic `Slot`, package index (0 =
//! free), block offset and block count, in 16-byte blocks. A slot's block starts with
//! a 16-byte blob header (magic `BlbS`, package index, checksum, blob length), then the
//! rpm header blob. The blob checksum is not verified (a damaged header is rejected by
//! the header parser's own bounds).
//!
//! Bounded: at most 2048 slot pages (rpm's own limit) and never more than the file
//! holds; every blob must lie inside the file and inside its slot's blocks.

use super::rpm::{parse_header, RpmPackage};
use super::InventoryError;

const HEADER_MAGIC: &[u8; 4] = b"RpmP";
const SLOT_MAGIC: &[u8; 4] = b"Slot";
const BLOB_MAGIC: &[u8; 4] = b"BlbS";
const SLOT_PAGE: usize = 4096;
const SLOT: usize = 16;
const BLOCK: usize = 16;
const MAX_SLOT_PAGES: usize = 2048;

fn le32(b: &[u8], off: usize) -> Option<usize> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(s)).ok()
}

/// Whether `db` starts like an ndb `Packages.db`.
pub fn is_ndb(db: &[u8]) -> bool {
    db.starts_with(HEADER_MAGIC)
}

/// The header blobs of an ndb `Packages.db` held in memory, in slot order.
pub fn blobs(db: &[u8]) -> Result<Vec<&[u8]>, InventoryError> {
    if !is_ndb(db) || le32(db, 4) != Some(0) {
        return Err(InventoryError::NotNdb);
    }
    let pages = le32(db, 12).ok_or(InventoryError::NotNdb)?;
    if pages == 0 || pages > MAX_SLOT_PAGES || pages * SLOT_PAGE > db.len() {
        return Err(InventoryError::NdbSlotPages(pages));
    }
    let mut out = Vec::new();
    // The 32-byte database header occupies the first two slots.
    for slot in (2..pages * SLOT_PAGE / SLOT).map(|i| i * SLOT) {
        let s = db
            .get(slot..slot + SLOT)
            .ok_or(InventoryError::NdbCorrupt)?;
        if &s[..4] != SLOT_MAGIC {
            return Err(InventoryError::NdbCorrupt);
        }
        let pkg = le32(s, 4).ok_or(InventoryError::NdbCorrupt)?;
        if pkg == 0 {
            continue;
        }
        let blk_off = le32(s, 8).ok_or(InventoryError::NdbCorrupt)?;
        let blk_cnt = le32(s, 12).ok_or(InventoryError::NdbCorrupt)?;
        let start = blk_off
            .checked_mul(BLOCK)
            .ok_or(InventoryError::NdbCorrupt)?;
        let span = blk_cnt
            .checked_mul(BLOCK)
            .ok_or(InventoryError::NdbCorrupt)?;
        let block = start
            .checked_add(span)
            .and_then(|end| db.get(start..end))
            .ok_or(InventoryError::NdbCorrupt)?;
        if block.get(..4) != Some(BLOB_MAGIC.as_slice()) || le32(block, 4) != Some(pkg) {
            return Err(InventoryError::NdbCorrupt);
        }
        let len = le32(block, 12).ok_or(InventoryError::NdbCorrupt)?;
        let blob = 16usize
            .checked_add(len)
            .and_then(|end| block.get(16..end))
            .ok_or(InventoryError::NdbCorrupt)?;
        out.push(blob);
    }
    Ok(out)
}

/// Packages of an ndb rpmdb (`Packages.db`), the `gpg-pubkey` pseudo-packages skipped.
pub fn parse_rpmdb_ndb(db: &[u8]) -> Result<Vec<RpmPackage>, InventoryError> {
    Ok(blobs(db)?
        .into_iter()
        .filter_map(parse_header)
        .filter(|p| p.name != "gpg-pubkey")
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Read;

    /// A gzip-compressed fixture under fixtures/scan/rpmdb/, and its expected list
    /// (`name [epoch:]version-release arch` lines).
    pub(crate) fn fixture(dir: &str, file: &str) -> (Vec<u8>, Vec<String>) {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/scan/rpmdb")
            .join(dir);
        let gz = std::fs::read(base.join(file)).unwrap();
        let mut db = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut db)
            .unwrap();
        let want = std::fs::read_to_string(base.join("expected.txt")).unwrap();
        (db, want.lines().map(str::to_string).collect())
    }

    pub(crate) fn lines(pkgs: &[RpmPackage]) -> Vec<String> {
        pkgs.iter()
            .map(|p| format!("{} {} {}", p.name, p.evr(), p.arch.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn sle15_ndb_lists_go_rpmdbs_expected_packages_exactly() {
        let (db, want) = fixture("sle15-bci", "Packages.db.gz");
        let got = crate::scan::image::inventory::rpm::parse_rpmdb(&db).unwrap();
        assert_eq!(want.len(), 35);
        assert_eq!(lines(&got), want);
    }

    #[test]
    fn truncated_or_damaged_ndb_is_an_error_never_a_panic() {
        let (db, _) = fixture("sle15-bci", "Packages.db.gz");
        for cut in [0, 3, 16, 31, 4095, 4096, 8191, db.len() / 2, db.len() - 1] {
            let _ = parse_rpmdb_ndb(&db[..cut]);
        }
        // Every byte of the header and the first slots flipped in turn.
        for i in 0..256 {
            let mut d = db.clone();
            d[i] ^= 0xff;
            let _ = parse_rpmdb_ndb(&d);
        }
        assert!(matches!(
            parse_rpmdb_ndb(&db[..db.len() / 2]),
            Err(InventoryError::NdbCorrupt | InventoryError::NdbSlotPages(_))
        ));
    }
}
