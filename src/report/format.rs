use crate::event::{Event, Level, Stream};

/// `2026/11/23 18:42:10.123456`, the timestamp CodeBuild's `[Container]` lines carry (UTC).
pub fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]/[month]/[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    now.format(&fmt).unwrap_or_default()
}

/// The line CodeBuild's log would show for `event`, if any. Build output is passed through
/// as it was printed.
pub fn codebuild_line(event: &Event) -> Option<String> {
    let ts = timestamp();
    Some(match event {
        Event::BuildStarted {
            build_id, image, ..
        } => format!("[Container] {ts} Running build {build_id} on image {image}"),
        Event::PhaseStarted { phase } => format!("[Container] {ts} Entering phase {phase}"),
        Event::PhaseEnded {
            phase,
            status,
            context,
            ..
        } => {
            let mut s = format!(
                "[Container] {ts} Phase complete: {phase} State: {}",
                status.as_str()
            );
            if let Some(c) = context {
                let (code, msg) = c.split_once(": ").unwrap_or(("", c.as_str()));
                s.push_str(&format!(
                    "\n[Container] {ts} Phase context status code: {code} Message: {msg}"
                ));
            }
            s
        }
        Event::CommandStarted { command, .. } => {
            format!("[Container] {ts} Running command {command}")
        }
        Event::CommandEnded { .. } => return None,
        Event::Log {
            stream: Stream::Stdout | Stream::Stderr,
            line,
        } => line.clone(),
        Event::Notice { level, message } => {
            let tag = match level {
                Level::Info => "",
                Level::Warning => "Warning: ",
                Level::Error => "Error: ",
            };
            format!("[Container] {ts} {tag}{message}")
        }
        Event::Artifact(a) => format!(
            "[Container] {ts} Artifact {}: {} files, {} bytes in {}",
            a.identifier, a.files, a.bytes, a.path
        ),
        Event::Report(r) => crate::reports::render_summary(r),
        Event::Stage(st) => format!(
            "[Container] {ts} {}{}",
            if st.ok { "" } else { "Error: " },
            st.message
        ),
        Event::Cache(c) => {
            let mib = c.bytes as f64 / (1024.0 * 1024.0);
            let secs = c.duration_ms as f64 / 1000.0;
            let rate = if secs > 0.0 { mib / secs } else { 0.0 };
            let what = match (c.action, c.hit) {
                ("restore", true) if c.source == Some("volume") => format!(
                    "Cache {} found in the local cache volumes: {} files, {mib:.1} MiB, nothing to extract ({secs:.2}s)",
                    c.matched_key.as_deref().unwrap_or(&c.key),
                    c.files
                ),
                ("restore", true) => format!(
                    "Cache restored from {}: {} files, {mib:.1} MiB in {secs:.2}s ({rate:.0} MiB/s)",
                    c.matched_key.as_deref().unwrap_or(&c.key),
                    c.files
                ),
                ("restore", false) => format!("Cache miss for key {}", c.key),
                (_, true) => format!(
                    "Cache saved as {}: {} files, {mib:.1} MiB ({:.1} MiB compressed) in {secs:.2}s",
                    c.key,
                    c.files,
                    c.compressed_bytes as f64 / (1024.0 * 1024.0)
                ),
                (_, false) => format!("Cache not saved for key {}", c.key),
            };
            match &c.note {
                Some(n) => format!("[Container] {ts} {what} ({n})"),
                None => format!("[Container] {ts} {what}"),
            }
        }
        Event::BuildEnded(r) => format!(
            "[Container] {ts} Build {} finished: {}",
            r.build_id,
            r.status.as_str()
        ),
        Event::Diagnostic(d) => d.render(),
        // Each build of a batch has ended already; the summary is the terminal's.
        Event::BatchEnded(_) => return None,
    })
}
