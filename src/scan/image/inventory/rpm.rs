//! RPM databases in the sqlite format (`/var/lib/rpm/rpmdb.sqlite`, RHEL 9,
//! Fedora 33+, Rocky/Alma 9, ...): table `Packages(hnum, blob)`, one rpm header
//! blob per package. The sqlite file is read in memory by a minimal read-only
//! b-tree walker (no sqlite library, nothing written to disk), and each header is
//! decoded for NAME, VERSION, RELEASE, EPOCH, ARCH and SOURCERPM.
//!
//! Limits: a `-wal` file next to the database is not replayed (rpm checkpoints
//! when it closes the database, so images normally have none).
//!
//! The other two formats rpm writes are read by [`super::rpm_bdb`] (BerkeleyDB
//! `Packages`) and [`super::rpm_ndb`] (ndb `Packages.db`); [`parse_rpmdb`] picks
//! the reader from the file's magic.

use std::collections::HashSet;

use super::InventoryError;

/// One installed rpm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpmPackage {
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    /// `SOURCERPM` (`openssl-3.0.7-24.el9.src.rpm`).
    pub source_rpm: Option<String>,
}

impl RpmPackage {
    /// `[epoch:]version-release`, the form advisories use.
    pub fn evr(&self) -> String {
        match self.epoch {
            Some(e) if e > 0 => format!("{e}:{}-{}", self.version, self.release),
            _ => format!("{}-{}", self.version, self.release),
        }
    }

    /// The source package name from `SOURCERPM` (`openssl` from
    /// `openssl-3.0.7-24.el9.src.rpm`).
    pub fn source_name(&self) -> Option<String> {
        let s = self.source_rpm.as_deref()?;
        let s = s
            .strip_suffix(".src.rpm")
            .or_else(|| s.strip_suffix(".nosrc.rpm"))?;
        let (rest, _release) = s.rsplit_once('-')?;
        let (name, _version) = rest.rsplit_once('-')?;
        (!name.is_empty()).then(|| name.to_string())
    }
}

/// Packages of an rpm database in any of rpm's formats, told apart by their magic:
/// sqlite (`rpmdb.sqlite`), ndb (`Packages.db`) or BerkeleyDB hash (`Packages`).
pub fn parse_rpmdb(db: &[u8]) -> Result<Vec<RpmPackage>, InventoryError> {
    if db.starts_with(b"SQLite format 3\0") {
        parse_rpmdb_sqlite(db)
    } else if super::rpm_ndb::is_ndb(db) {
        super::rpm_ndb::parse_rpmdb_ndb(db)
    } else if super::rpm_bdb::is_bdb_hash(db) {
        super::rpm_bdb::parse_rpmdb_bdb(db)
    } else {
        Err(InventoryError::UnknownRpmdb)
    }
}

/// Packages of an rpmdb.sqlite file (the `gpg-pubkey` pseudo-packages skipped).
pub fn parse_rpmdb_sqlite(db: &[u8]) -> Result<Vec<RpmPackage>, InventoryError> {
    let sq = Sqlite::new(db)?;
    let root = sq
        .table_root("Packages")?
        .ok_or(InventoryError::NoPackagesTable)?;
    let mut out = Vec::new();
    for row in sq.rows(root)? {
        // hnum is the rowid (stored as NULL); the blob is the last column.
        let Some(Value::Blob(blob)) = row.into_iter().last() else {
            continue;
        };
        if let Some(p) = parse_header(&blob) {
            if p.name != "gpg-pubkey" {
                out.push(p);
            }
        }
    }
    Ok(out)
}

const TAG_NAME: i32 = 1000;
const TAG_VERSION: i32 = 1001;
const TAG_RELEASE: i32 = 1002;
const TAG_EPOCH: i32 = 1003;
const TAG_ARCH: i32 = 1022;
const TAG_SOURCERPM: i32 = 1044;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Decode an rpm header blob as stored in the database (no lead, no 8-byte
/// header magic): `il`, `dl`, `il` index entries of 16 bytes, `dl` data bytes.
pub fn parse_header(blob: &[u8]) -> Option<RpmPackage> {
    let il = usize::try_from(be32(blob, 0)?).ok()?;
    let dl = usize::try_from(be32(blob, 4)?).ok()?;
    let data_start = 8usize.checked_add(il.checked_mul(16)?)?;
    let data = blob.get(data_start..data_start.checked_add(dl)?)?;
    let mut p = RpmPackage::default();
    for i in 0..il {
        let e = 8 + i * 16;
        let tag = be32(blob, e)? as i32;
        let ty = be32(blob, e + 4)?;
        let off = usize::try_from(be32(blob, e + 8)?).ok()?;
        let string = || -> Option<String> {
            if ty != TYPE_STRING && ty != TYPE_I18NSTRING {
                return None;
            }
            let rest = data.get(off..)?;
            let end = rest.iter().position(|&c| c == 0)?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        match tag {
            TAG_NAME => p.name = string()?,
            TAG_VERSION => p.version = string()?,
            TAG_RELEASE => p.release = string()?,
            TAG_EPOCH if ty == TYPE_INT32 => p.epoch = be32(data, off),
            TAG_ARCH => p.arch = string(),
            TAG_SOURCERPM => p.source_rpm = string(),
            _ => {}
        }
    }
    (!p.name.is_empty() && !p.version.is_empty()).then_some(p)
}

/// A column value of a sqlite record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A read-only view of a sqlite database file held in memory.
pub struct Sqlite<'a> {
    db: &'a [u8],
    page_size: usize,
    usable: usize,
}

/// A sqlite varint at `b[off..]`: (value, length).
fn varint(b: &[u8], off: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..9 {
        let c = *b.get(off + i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(c), 9));
        }
        v = (v << 7) | u64::from(c & 0x7f);
        if c & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

impl<'a> Sqlite<'a> {
    pub fn new(db: &'a [u8]) -> Result<Self, InventoryError> {
        if !db.starts_with(b"SQLite format 3\0") || db.len() < 100 {
            return Err(InventoryError::NotSqlite);
        }
        let ps = usize::from(u16::from_be_bytes([db[16], db[17]]));
        let page_size = if ps == 1 { 65536 } else { ps };
        if page_size < 512 || !page_size.is_power_of_two() {
            return Err(InventoryError::SqlitePageSize(page_size));
        }
        let usable = page_size - usize::from(db[20]);
        if usable < 480 {
            return Err(InventoryError::SqliteReservedSpace);
        }
        Ok(Sqlite {
            db,
            page_size,
            usable,
        })
    }

    fn page(&self, n: u32) -> Result<&'a [u8], InventoryError> {
        let n = usize::try_from(n).map_err(|_| InventoryError::SqlitePageNumber)?;
        let start = n
            .checked_sub(1)
            .and_then(|i| i.checked_mul(self.page_size))
            .ok_or(InventoryError::SqlitePageNumber)?;
        self.db
            .get(start..start + self.page_size)
            .ok_or(InventoryError::SqlitePastEnd(n))
    }

    /// Root page of table `name`, from sqlite_schema.
    pub fn table_root(&self, name: &str) -> Result<Option<u32>, InventoryError> {
        for row in self.rows(1)? {
            if let [Value::Text(ty), Value::Text(n), _, Value::Int(root), ..] = row.as_slice() {
                if ty == "table" && n.eq_ignore_ascii_case(name) {
                    return Ok(u32::try_from(*root).ok());
                }
            }
        }
        Ok(None)
    }

    /// All records of the table b-tree rooted at `root`, in rowid order.
    pub fn rows(&self, root: u32) -> Result<Vec<Vec<Value>>, InventoryError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![root];
        while let Some(pn) = stack.pop() {
            if !seen.insert(pn) {
                return Err(InventoryError::SqliteCycle);
            }
            let page = self.page(pn)?;
            let hdr = if pn == 1 { 100 } else { 0 };
            let kind = *page.get(hdr).ok_or(InventoryError::SqliteShortPage)?;
            let ncells = usize::from(u16::from_be_bytes([
                *page.get(hdr + 3).ok_or(InventoryError::SqliteShortPage)?,
                *page.get(hdr + 4).ok_or(InventoryError::SqliteShortPage)?,
            ]));
            let (hlen, leaf) = match kind {
                0x0d => (8, true),
                0x05 => (12, false),
                k => return Err(InventoryError::SqlitePageType(k)),
            };
            let mut children = Vec::new();
            for i in 0..ncells {
                let p = hdr + hlen + 2 * i;
                let off = usize::from(u16::from_be_bytes([
                    *page.get(p).ok_or(InventoryError::SqliteShortPage)?,
                    *page.get(p + 1).ok_or(InventoryError::SqliteShortPage)?,
                ]));
                if leaf {
                    out.push(self.leaf_cell(page, off)?);
                } else {
                    children.push(be32(page, off).ok_or(InventoryError::SqliteShortCell)?);
                }
            }
            if !leaf {
                children.push(be32(page, hdr + 8).ok_or(InventoryError::SqliteShortPage)?);
                // Pushed in reverse so the leftmost child is visited first.
                stack.extend(children.into_iter().rev());
            }
        }
        Ok(out)
    }

    fn leaf_cell(&self, page: &[u8], off: usize) -> Result<Vec<Value>, InventoryError> {
        let bad = || InventoryError::SqliteCorruptCell;
        let (psize, n1) = varint(page, off).ok_or_else(bad)?;
        let (_rowid, n2) = varint(page, off + n1).ok_or_else(bad)?;
        let psize = usize::try_from(psize).map_err(|_| bad())?;
        if psize > self.db.len() {
            return Err(bad());
        }
        let start = off + n1 + n2;
        let u = self.usable;
        let x = u - 35;
        let local = if psize <= x {
            psize
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + ((psize - m) % (u - 4));
            if k <= x {
                k
            } else {
                m
            }
        };
        let mut payload = Vec::with_capacity(psize);
        payload.extend_from_slice(page.get(start..start + local).ok_or_else(bad)?);
        if local < psize {
            let mut next = be32(page, start + local).ok_or_else(bad)?;
            let mut hops = 0usize;
            while payload.len() < psize {
                hops += 1;
                if next == 0 || hops > self.db.len() / self.page_size + 1 {
                    return Err(InventoryError::SqliteOverflowChain);
                }
                let ov = self.page(next)?;
                next = be32(ov, 0).ok_or_else(bad)?;
                let take = (psize - payload.len()).min(u - 4);
                payload.extend_from_slice(ov.get(4..4 + take).ok_or_else(bad)?);
            }
        }
        record(&payload).ok_or_else(bad)
    }
}

/// Decode a sqlite record (header of serial types, then values).
fn record(p: &[u8]) -> Option<Vec<Value>> {
    let (hsize, mut h) = varint(p, 0)?;
    let hsize = usize::try_from(hsize).ok()?;
    let mut body = hsize;
    let mut out = Vec::new();
    while h < hsize {
        let (st, n) = varint(p, h)?;
        h += n;
        let int = |len: usize, body: usize| -> Option<i64> {
            let s = p.get(body..body + len)?;
            let mut v: i64 = if s.first()? & 0x80 != 0 { -1 } else { 0 };
            for &b in s {
                v = (v << 8) | i64::from(b);
            }
            Some(v)
        };
        let (v, len) = match st {
            0 => (Value::Null, 0),
            1 => (Value::Int(int(1, body)?), 1),
            2 => (Value::Int(int(2, body)?), 2),
            3 => (Value::Int(int(3, body)?), 3),
            4 => (Value::Int(int(4, body)?), 4),
            5 => (Value::Int(int(6, body)?), 6),
            6 => (Value::Int(int(8, body)?), 8),
            7 => {
                let s = p.get(body..body + 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                (Value::Float(f64::from_be_bytes(a)), 8)
            }
            8 => (Value::Int(0), 0),
            9 => (Value::Int(1), 0),
            n if n >= 12 && n % 2 == 0 => {
                let len = usize::try_from((n - 12) / 2).ok()?;
                (
                    Value::Blob(p.get(body..body.checked_add(len)?)?.to_vec()),
                    len,
                )
            }
            n if n >= 13 => {
                let len = usize::try_from((n - 13) / 2).ok()?;
                let s = p.get(body..body.checked_add(len)?)?;
                (Value::Text(String::from_utf8_lossy(s).into_owned()), len)
            }
            _ => return None,
        };
        body += len;
        out.push(v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn fixture_rpmdb() {
        let db = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/scan/image/rpmdb.sqlite"
        ))
        .unwrap();
        let pkgs = parse_rpmdb_sqlite(&db).unwrap();
        let got: Vec<String> = pkgs
            .iter()
            .map(|p| format!("{} {} {:?} {:?}", p.name, p.evr(), p.arch, p.source_name()))
            .collect();
        let want = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/scan/image/rpmdb.sqlite.expected"
        ))
        .unwrap();
        assert_eq!(got.join("\n") + "\n", want);
    }

    #[test]
    fn mutated_databases_never_panic() {
        let db = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/scan/image/rpmdb.sqlite"
        ))
        .unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000 {
            let mut bad = db.clone();
            for _ in 0..1 + i % 8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Hit the b-tree pages and headers more than the free space.
                let pos = (seed % (bad.len() as u64).min(if i % 2 == 0 { 8192 } else { u64::MAX }))
                    as usize;
                bad[pos] = (seed >> 40) as u8;
            }
            if i % 50 == 0 {
                bad.truncate((seed % bad.len() as u64) as usize);
            }
            let _ = parse_rpmdb_sqlite(&bad);
        }
    }

    #[test]
    fn garbage() {
        assert!(parse_rpmdb_sqlite(b"nope").is_err());
        assert!(parse_header(&[0, 0, 0, 9, 0, 0, 0, 0]).is_none());
        let p = RpmPackage {
            source_rpm: Some("openssl-3.0.7-24.el9.src.rpm".into()),
            ..Default::default()
        };
        assert_eq!(p.source_name().as_deref(), Some("openssl"));
    }
}
