//! `reports:` — find each report group's files below the source directory and summarise
//! JUnit XML test results. A bad report file never fails the build: it becomes an error
//! entry inside that group's [`ReportResult`].

mod collect;
mod junit;
mod summary;

pub use collect::{collect_reports, collect_reports_excluding, ReportFileError, ReportResult};
pub use junit::{parse_junit, parse_junit_file, JunitCounts, JunitError, TestCaseFailure};
pub use summary::render_summary;
