//! Writing an artifact as a zip file: entries in sorted order, files deflated with their
//! unix mode and modification time (UTC), symlinks stored as symlinks (unix mode
//! `S_IFLNK`, target as content) when `enable-symlinks` kept them.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Component, Path};
use std::time::{SystemTime, UNIX_EPOCH};

use ::zip::write::SimpleFileOptions;
use ::zip::{CompressionMethod, DateTime, ZipWriter};

use super::beneath::Tree;
use super::collect::Planned;
use super::error::ArtifactError;
use super::glob::EntryKind;

/// The entry name: the destination's components joined with `/`.
fn entry_name(dest: &Path) -> Result<String, ArtifactError> {
    let mut parts = Vec::new();
    for c in dest.components() {
        match c {
            Component::Normal(s) => match s.to_str() {
                Some(s) => parts.push(s),
                None => {
                    return Err(ArtifactError::NonUtf8Path {
                        path: dest.to_path_buf(),
                    })
                }
            },
            _ => {
                return Err(ArtifactError::UnsafeDestination {
                    path: dest.to_path_buf(),
                })
            }
        }
    }
    Ok(parts.join("/"))
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A modification time as a zip (MS-DOS) timestamp in UTC; out-of-range times become
/// the zip epoch (1980-01-01).
pub(super) fn zip_time(t: SystemTime) -> DateTime {
    let Ok(since) = t.duration_since(UNIX_EPOCH) else {
        return DateTime::default();
    };
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let (Ok(year), Ok(month), Ok(day)) = (u16::try_from(y), u8::try_from(m), u8::try_from(d))
    else {
        return DateTime::default();
    };
    let hour = (rem / 3600) as u8;
    let minute = ((rem % 3600) / 60) as u8;
    let second = (rem % 60) as u8;
    DateTime::from_date_and_time(year, month, day, hour, minute, second).unwrap_or_default()
}

/// Writes the planned entries to a new zip file at `path`; returns the bytes stored
/// (uncompressed file contents). Files are read from `tree` (never through a link
/// leading out of it).
pub(super) fn write_zip(
    path: &Path,
    tree: &Tree,
    planned: &[Planned],
) -> Result<u64, ArtifactError> {
    let zip_err = |source| ArtifactError::Zip {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create_new(path).map_err(|e| ArtifactError::io("create", path, e))?;
    let mut zip = ZipWriter::new(BufWriter::new(file));
    let mut bytes = 0u64;
    for p in planned {
        let name = entry_name(&p.dest)?;
        match &p.entry.kind {
            EntryKind::File { .. } => {
                let (mut src, meta) = tree
                    .open_file(&p.entry.abs)
                    .map_err(|e| ArtifactError::io("read", &p.entry.abs, e))?;
                let mut options = SimpleFileOptions::default()
                    .compression_method(CompressionMethod::Deflated)
                    .unix_permissions(meta.mode)
                    .large_file(meta.size >= u64::from(u32::MAX));
                if let Some(mtime) = meta.modified() {
                    options = options.last_modified_time(zip_time(mtime));
                }
                zip.start_file(name, options).map_err(zip_err)?;
                bytes += io::copy(&mut src, &mut zip)
                    .map_err(|e| ArtifactError::io("copy", &p.entry.abs, e))?;
            }
            EntryKind::Symlink { target } => {
                let Some(target) = target.to_str() else {
                    return Err(ArtifactError::NonUtf8Path {
                        path: target.clone(),
                    });
                };
                let mut options = SimpleFileOptions::default().unix_permissions(0o777);
                if let Ok(mtime) =
                    std::fs::symlink_metadata(&p.entry.abs).and_then(|m| m.modified())
                {
                    options = options.last_modified_time(zip_time(mtime));
                }
                zip.add_symlink(name, target, options).map_err(zip_err)?;
            }
        }
    }
    let mut inner = zip.finish().map_err(zip_err)?;
    io::Write::flush(&mut inner).map_err(|e| ArtifactError::io("write", path, e))?;
    inner
        .get_ref()
        .sync_all()
        .map_err(|e| ArtifactError::io("write", path, e))?;
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn zip_time_is_utc_and_clamped() {
        // 2024-02-29T13:45:30Z
        let t = UNIX_EPOCH + Duration::from_secs(1_709_214_330);
        let dt = zip_time(t);
        assert_eq!(
            (
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            ),
            (2024, 2, 29, 13, 45, 30)
        );
        assert_eq!(zip_time(UNIX_EPOCH), DateTime::default());
    }

    #[test]
    fn entry_names_use_forward_slashes() {
        assert_eq!(entry_name(Path::new("a/b/c.txt")).unwrap(), "a/b/c.txt");
        assert!(entry_name(Path::new("../x")).is_err());
    }
}
