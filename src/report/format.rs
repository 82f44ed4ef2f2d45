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
        Event::BuildEnded(r) => format!(
            "[Container] {ts} Build {} finished: {}",
            r.build_id,
            r.status.as_str()
        ),
    })
}
