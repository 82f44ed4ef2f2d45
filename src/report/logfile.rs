use super::format::codebuild_line;
use crate::event::{Event, Reporter};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The build's log file in the runner's data directory: the CodeBuild-style lines.
pub struct LogFileReporter {
    path: PathBuf,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl LogFileReporter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::File::create(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(std::io::BufWriter::new(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Reporter for LogFileReporter {
    fn event(&self, event: &Event) {
        let Some(line) = codebuild_line(event) else {
            return;
        };
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{line}");
            if matches!(event, Event::BuildEnded(_)) {
                let _ = f.flush();
            }
        }
    }
}

impl Drop for LogFileReporter {
    fn drop(&mut self) {
        if let Ok(mut f) = self.file.lock() {
            let _ = f.flush();
        }
    }
}
