//! How old the advisory data is. `runner db update` records, per ecosystem, when it
//! fetched each dump (`<dir>/runner-db.json`); every scan reports the age of the oldest
//! dump in use and warns past the policy's `max-data-age-hours` (Trivy warns when its
//! database is older than a day). Data that `runner db update` did not write (a copied
//! directory, a mirror) is dated by its files' modification times, and says so.

use crate::scan::osv::error::OsvError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The file `runner db update` keeps beside the dumps.
pub const STATE_FILE: &str = "runner-db.json";

/// Warn when the data is older than this (hours), unless the policy says otherwise.
pub const DEFAULT_MAX_AGE_HOURS: u64 = 24;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    ecosystems: BTreeMap<String, Fetched>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Fetched {
    /// RFC 3339, UTC.
    fetched_at: String,
    url: String,
    records: usize,
}

/// Where a [`DataAge`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgeBasis {
    /// Recorded by `runner db update`.
    DbUpdate,
    /// The dumps' file modification times (data `runner db update` did not fetch).
    FileTime,
}

/// The age of the advisory data in a directory: that of its oldest dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataAge {
    /// When the oldest dump was fetched, RFC 3339 UTC.
    pub fetched_at: String,
    /// Seconds between then and the scan (0 if the clock says the future).
    pub age_seconds: u64,
    pub basis: AgeBasis,
}

impl DataAge {
    /// `3 h`, `2 days`: for people.
    pub fn human(&self) -> String {
        let h = self.age_seconds / 3600;
        if h < 48 {
            format!("{h} h")
        } else {
            format!("{} days", h / 24)
        }
    }

    /// One line for a scan's output: when the data was fetched and how old it is.
    pub fn describe(&self) -> String {
        let how = match self.basis {
            AgeBasis::DbUpdate => "fetched",
            AgeBasis::FileTime => "files dated",
        };
        format!(
            "advisory data {how} {} ({} old)",
            self.fetched_at,
            self.human()
        )
    }

    /// The warning a scan prints when the data is older than `max_hours` (0: never).
    pub fn stale_warning(&self, max_hours: u64) -> Option<String> {
        (max_hours > 0 && self.age_seconds > max_hours.saturating_mul(3600)).then(|| {
            format!(
                "advisory data is {} old (older than {max_hours} h): run `runner db update` \
                 for current advisories (the policy's vulnerabilities.max-data-age-hours sets \
                 when this warns)",
                self.human()
            )
        })
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn read_state(dir: &Path) -> State {
    std::fs::read(dir.join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records that `ecosystem`'s dump was fetched from `url` at `now` (atomically: temp
/// file + rename; an unreadable old state file is replaced).
pub fn record_fetch(
    dir: &Path,
    ecosystem: &str,
    url: &str,
    records: usize,
    now: OffsetDateTime,
) -> Result<(), OsvError> {
    let mut state = read_state(dir);
    state.ecosystems.insert(
        ecosystem.to_string(),
        Fetched {
            fetched_at: rfc3339(now),
            url: url.to_string(),
            records,
        },
    );
    let target = dir.join(STATE_FILE);
    let tmp = dir.join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
    let body = serde_json::to_vec_pretty(&state).unwrap_or_default();
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, &body)?;
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        OsvError::io(&target, e)
    })
}

/// The age of the data in `dir` at `now`: the oldest fetch `runner db update` recorded
/// for a dump still there, else the oldest modification time of the `<eco>/all.zip`
/// dumps, else of any file one or two levels down. `None` when there is nothing.
pub fn data_age(dir: &Path, now: OffsetDateTime) -> Option<DataAge> {
    let state = read_state(dir);
    let recorded = state
        .ecosystems
        .iter()
        .filter(|(eco, _)| dir.join(eco).join("all.zip").is_file())
        .filter_map(|(_, f)| OffsetDateTime::parse(&f.fetched_at, &Rfc3339).ok())
        .min();
    let (at, basis) = match recorded {
        Some(t) => (t, AgeBasis::DbUpdate),
        None => (oldest_file_time(dir)?, AgeBasis::FileTime),
    };
    let age = (now - at).whole_seconds().max(0) as u64;
    Some(DataAge {
        fetched_at: rfc3339(at),
        age_seconds: age,
        basis,
    })
}

fn oldest_file_time(dir: &Path) -> Option<OffsetDateTime> {
    let mut dumps = Vec::new();
    let mut others = Vec::new();
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let path = e.path();
        if path.is_dir() {
            for f in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let Ok(meta) = f.metadata() else { continue };
                let Ok(m) = meta.modified() else { continue };
                if !meta.is_file() {
                    continue;
                }
                if f.file_name() == "all.zip" {
                    dumps.push(OffsetDateTime::from(m));
                } else {
                    others.push(OffsetDateTime::from(m));
                }
            }
        } else if path.file_name().is_some_and(|n| n != STATE_FILE) {
            if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                others.push(OffsetDateTime::from(m));
            }
        }
    }
    dumps.into_iter().min().or_else(|| others.into_iter().min())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn recorded_fetch_dates_the_data_and_the_oldest_dump_counts() {
        let dir = tempfile::tempdir().unwrap();
        for eco in ["PyPI", "npm"] {
            std::fs::create_dir_all(dir.path().join(eco)).unwrap();
            std::fs::write(dir.path().join(eco).join("all.zip"), b"x").unwrap();
        }
        let t0 = datetime!(2026-03-01 10:00:00 UTC);
        record_fetch(dir.path(), "PyPI", "https://x/PyPI/all.zip", 5, t0).unwrap();
        record_fetch(
            dir.path(),
            "npm",
            "https://x/npm/all.zip",
            7,
            t0 + time::Duration::hours(30),
        )
        .unwrap();
        // An ecosystem recorded but no longer there does not count.
        record_fetch(
            dir.path(),
            "Go",
            "https://x/Go/all.zip",
            1,
            t0 - time::Duration::days(9),
        )
        .unwrap();
        let now = t0 + time::Duration::hours(50);
        let age = data_age(dir.path(), now).unwrap();
        assert_eq!(age.fetched_at, "2026-03-01T10:00:00Z");
        assert_eq!(age.age_seconds, 50 * 3600);
        assert_eq!(age.basis, AgeBasis::DbUpdate);
        assert_eq!(age.human(), "2 days");
        assert!(age
            .describe()
            .contains("fetched 2026-03-01T10:00:00Z (2 days old)"));
        let w = age.stale_warning(24).unwrap();
        assert!(w.contains("runner db update"), "{w}");
        assert_eq!(age.stale_warning(72), None);
        assert_eq!(age.stale_warning(0), None);
        let fresh = data_age(dir.path(), t0 + time::Duration::hours(3)).unwrap();
        assert_eq!(fresh.human(), "3 h");
        assert_eq!(fresh.stale_warning(24), None);
    }

    #[test]
    fn data_not_fetched_by_runner_is_dated_by_its_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(data_age(dir.path(), OffsetDateTime::now_utc()), None);
        std::fs::create_dir_all(dir.path().join("crates.io")).unwrap();
        std::fs::write(dir.path().join("crates.io/all.zip"), b"x").unwrap();
        // A garbage state file is ignored, not fatal.
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let now = OffsetDateTime::now_utc() + time::Duration::days(3);
        let age = data_age(dir.path(), now).unwrap();
        assert_eq!(age.basis, AgeBasis::FileTime);
        assert!(age.age_seconds >= 3 * 86400 - 60, "{age:?}");
        assert!(age.stale_warning(24).is_some());
        assert!(age.describe().starts_with("advisory data files dated "));
    }
}
