//! The runner's data directory: build logs and per-project build numbers.

use std::path::{Path, PathBuf};

/// The default data directory from the caller's environment values: `runner_data_dir`
/// (RUNNER_DATA_DIR), else `<xdg_data_home>/runner`, else `<home>/.local/share/runner`,
/// else `./.runner`. Empty values count as unset. The command line reads the variables.
pub fn default_data_dir(
    runner_data_dir: Option<PathBuf>,
    xdg_data_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> PathBuf {
    let set = |d: &Option<PathBuf>| d.clone().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = set(&runner_data_dir) {
        return d;
    }
    if let Some(d) = set(&xdg_data_home) {
        return d.join("runner");
    }
    if let Some(h) = set(&home) {
        return h.join(".local/share/runner");
    }
    PathBuf::from(".runner")
}

/// A project name made safe for a file name.
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "project".to_string()
    } else {
        s
    }
}

/// Takes the project's next build number (1, 2, …), stored under the data directory.
/// The write is atomic (temp file + rename) so a crash never leaves a torn counter.
pub fn next_build_number(data: &Path, project: &str) -> std::io::Result<u64> {
    let dir = data.join("projects").join(safe_name(project));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("build-number");
    let current = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let next = current + 1;
    let tmp = dir.join(format!(".build-number.{}", std::process::id()));
    std::fs::write(&tmp, format!("{next}\n"))?;
    std::fs::rename(&tmp, &file)?;
    Ok(next)
}

/// A random UUID (version 4 layout) for build ids.
pub fn new_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}
