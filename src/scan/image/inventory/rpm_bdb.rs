//! The BerkeleyDB rpmdb (`/var/lib/rpm/Packages` of Amazon Linux 2, CentOS/RHEL 5-8):
//! a Berkeley DB *hash* database whose keys are header instance numbers and whose
//! values are rpm header blobs. Read in memory by a page walker, no Berkeley DB
//! library: every hash page's key/value pairs are visited (the bucket structure is
//! not needed to list all values), and values stored off-page are reassembled from
//! their overflow page chains.
//!
//! Layout (Berkeley DB 4.x-6.x, db_page.h): page 0 is the hash metadata page
//! (magic 0x061561 at byte 12, in the byte order of the machine that wrote it, which
//! tells the order of every other integer; page size at 20; encryption at 24; meta
//! flags at 26; last page number at 32). Every page starts with a 26-byte header
//! (32 with checksums): next page at 16, entry count at 20, free-space offset at 22,
//! page type at 25. A hash page has `entries` 2-byte item offsets after the header,
//! key and value alternating; an item runs from its offset to the previous item's
//! offset (the page end for the first). Item byte 0 is its type: 1 = data inline,
//! 3 = off-page (page number at 4, total length at 8). An overflow page holds
//! `free-space offset` bytes of data after its header and links to the next.
//!
//! Bounded: pages past the file's end or its last page number are not read, every
//! overflow chain is at most as long as the file has pages and never longer than the
//! item's total length; nothing panics on bad input.

use super::rpm::{parse_header, RpmPackage};
use super::InventoryError;

const HASH_MAGIC: u32 = 0x0006_1561;
const PAGE_HEADER: usize = 26;
/// Header with a checksum (`PG_CHKSUM`: 2 bytes alignment + 4 bytes checksum).
const PAGE_HEADER_CHKSUM: usize = 32;
const META_FLAG_CHKSUM: u8 = 0x01;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// Whether `db` starts like a Berkeley DB hash database (either byte order).
pub fn is_bdb_hash(db: &[u8]) -> bool {
    magic_order(db).is_some()
}

/// `Some(true)` for a little-endian file, `Some(false)` for big-endian.
fn magic_order(db: &[u8]) -> Option<bool> {
    let m: [u8; 4] = db.get(12..16)?.try_into().ok()?;
    if u32::from_le_bytes(m) == HASH_MAGIC {
        Some(true)
    } else if u32::from_be_bytes(m) == HASH_MAGIC {
        Some(false)
    } else {
        None
    }
}

struct Bdb<'a> {
    db: &'a [u8],
    le: bool,
    page_size: usize,
    header: usize,
    pages: usize,
}

impl<'a> Bdb<'a> {
    fn u16_at(&self, b: &[u8], off: usize) -> Option<usize> {
        let s: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
        Some(usize::from(if self.le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        }))
    }

    fn u32_at(&self, b: &[u8], off: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }

    fn page(&self, n: usize) -> Option<&'a [u8]> {
        if n >= self.pages {
            return None;
        }
        let start = n.checked_mul(self.page_size)?;
        self.db.get(start..start.checked_add(self.page_size)?)
    }

    /// The `total` bytes of an off-page item starting at overflow page `first`.
    fn overflow(&self, first: u32, total: usize) -> Result<Vec<u8>, InventoryError> {
        let bad = InventoryError::BdbOverflowChain;
        // No value is longer than the file holding it.
        if total > self.db.len() {
            return Err(bad);
        }
        let mut out = Vec::with_capacity(total);
        let mut pgno = first;
        let mut steps = 0usize;
        while out.len() < total {
            steps += 1;
            if pgno == 0 || steps > self.pages {
                return Err(bad);
            }
            let page = usize::try_from(pgno)
                .ok()
                .and_then(|n| self.page(n))
                .ok_or(InventoryError::BdbOverflowChain)?;
            if page.get(25) != Some(&P_OVERFLOW) {
                return Err(bad);
            }
            let len = self
                .u16_at(page, 22)
                .ok_or(InventoryError::BdbOverflowChain)?;
            let data = page
                .get(self.header..self.header.saturating_add(len))
                .ok_or(InventoryError::BdbOverflowChain)?;
            let want = total - out.len();
            out.extend_from_slice(&data[..data.len().min(want)]);
            pgno = self
                .u32_at(page, 16)
                .ok_or(InventoryError::BdbOverflowChain)?;
        }
        Ok(out)
    }

    /// The values of one hash page (every second item), inline or off-page.
    fn page_values(&self, page: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), InventoryError> {
        let entries = self
            .u16_at(page, 20)
            .ok_or(InventoryError::BdbCorruptPage)?;
        if entries > (self.page_size - self.header) / 2 {
            return Err(InventoryError::BdbCorruptPage);
        }
        for i in (1..entries).step_by(2) {
            let idx = self.header + 2 * i;
            let off = self
                .u16_at(page, idx)
                .ok_or(InventoryError::BdbCorruptPage)?;
            let end = self
                .u16_at(page, idx - 2)
                .ok_or(InventoryError::BdbCorruptPage)?;
            let item = page.get(off..end).ok_or(InventoryError::BdbCorruptPage)?;
            match item.first() {
                Some(&H_KEYDATA) => out.push(item[1..].to_vec()),
                Some(&H_OFFPAGE) => {
                    let pgno = self.u32_at(item, 4).ok_or(InventoryError::BdbCorruptPage)?;
                    let tlen = self.u32_at(item, 8).ok_or(InventoryError::BdbCorruptPage)?;
                    let tlen = usize::try_from(tlen).map_err(|_| InventoryError::BdbCorruptPage)?;
                    out.push(self.overflow(pgno, tlen)?);
                }
                // Duplicates (rpm's Packages has none) and unknown item types.
                _ => {}
            }
        }
        Ok(())
    }
}

/// Every value (rpm header blob, plus rpm's 4-byte instance counter under key 0) of a
/// Berkeley DB hash database held in memory.
pub fn hash_values(db: &[u8]) -> Result<Vec<Vec<u8>>, InventoryError> {
    let le = magic_order(db).ok_or(InventoryError::NotBdbHash)?;
    let mut bdb = Bdb {
        db,
        le,
        page_size: 0,
        header: PAGE_HEADER,
        pages: 0,
    };
    let page_size = bdb.u32_at(db, 20).ok_or(InventoryError::NotBdbHash)?;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(InventoryError::BdbPageSize(page_size));
    }
    if db.get(25) != Some(&P_HASHMETA) {
        return Err(InventoryError::NotBdbHash);
    }
    if db.get(24).copied().unwrap_or(0) != 0 {
        return Err(InventoryError::BdbEncrypted);
    }
    if db.get(26).copied().unwrap_or(0) & META_FLAG_CHKSUM != 0 {
        bdb.header = PAGE_HEADER_CHKSUM;
    }
    bdb.page_size = page_size as usize;
    let last = bdb.u32_at(db, 32).ok_or(InventoryError::NotBdbHash)?;
    bdb.pages = (db.len() / bdb.page_size).min(
        usize::try_from(last)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    );
    let mut out = Vec::new();
    for n in 1..bdb.pages {
        let Some(page) = bdb.page(n) else { break };
        if matches!(page.get(25), Some(&P_HASH) | Some(&P_HASH_UNSORTED)) {
            bdb.page_values(page, &mut out)?;
        }
    }
    Ok(out)
}

/// Packages of a BerkeleyDB rpmdb (`Packages`), the `gpg-pubkey` pseudo-packages
/// skipped.
pub fn parse_rpmdb_bdb(db: &[u8]) -> Result<Vec<RpmPackage>, InventoryError> {
    Ok(hash_values(db)?
        .iter()
        .filter_map(|blob| parse_header(blob))
        .filter(|p| p.name != "gpg-pubkey")
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::scan::image::inventory::rpm_ndb::tests::{fixture, lines};

    #[test]
    fn rhel8_bdb_lists_what_rpm_reads() {
        let (db, want) = fixture("rhel8-libuuid", "Packages.gz");
        let got = crate::scan::image::inventory::rpm::parse_rpmdb(&db).unwrap();
        assert_eq!(lines(&got), want);
        assert_eq!(
            got[0].source_rpm.as_deref(),
            Some("util-linux-2.32.1-42.el8_8.src.rpm")
        );
    }

    #[test]
    fn truncated_or_damaged_bdb_is_an_error_never_a_panic() {
        let (db, _) = fixture("rhel8-libuuid", "Packages.gz");
        for cut in (0..db.len()).step_by(509) {
            let _ = parse_rpmdb_bdb(&db[..cut]);
        }
        for i in (0..db.len()).step_by(7) {
            let mut d = db.clone();
            d[i] ^= 0xff;
            let _ = parse_rpmdb_bdb(&d);
        }
    }
}
