use crate::event::{Event, Level, Stream};

/// `2026/11/23 18:42:10.123456`, the timestamp CodeBuild's `[Container]` lines carry (UTC).
pub fn timestamp() -> String {
    codebuild_timestamp(time::OffsetDateTime::now_utc())
}

/// `at` as CodeBuild's `[Container]` lines show it (UTC).
pub fn codebuild_timestamp(at: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]/[month]/[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_default()
}

/// The line CodeBuild's log would show for `event`, if any. Build output is passed through
/// as it was printed.
pub fn codebuild_line(event: &Event) -> Option<String> {
    codebuild_line_at(event, &timestamp())
}

/// [`codebuild_line`] with the timestamp `ts` (an event recorded earlier).
pub fn codebuild_line_at(event: &Event, ts: &str) -> Option<String> {
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

/// [`codebuild_line_at`] for an event read back as JSON (`runner build --json`'s form, as
/// agents ship it), at its own recorded `time`; `build_ended` gives the terminal's summary
/// ([`build_summary`]). Unknown events give `None`.
pub fn codebuild_line_json(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let ts = time::OffsetDateTime::parse(s("time"), &time::format_description::well_known::Rfc3339)
        .map(codebuild_timestamp)
        .unwrap_or_else(|_| s("time").to_string());
    Some(match s("event") {
        "log" => s("line").to_string(),
        "build_started" => format!(
            "[Container] {ts} Running build {} on image {}",
            s("build_id"),
            s("image")
        ),
        "phase_started" => format!("[Container] {ts} Entering phase {}", s("phase")),
        "phase_ended" => {
            let mut l = format!(
                "[Container] {ts} Phase complete: {} State: {}",
                s("phase"),
                s("status")
            );
            if let Some(c) = v.get("context").and_then(Value::as_str) {
                let (code, msg) = c.split_once(": ").unwrap_or(("", c));
                l.push_str(&format!(
                    "\n[Container] {ts} Phase context status code: {code} Message: {msg}"
                ));
            }
            l
        }
        "command_started" => format!("[Container] {ts} Running command {}", s("command")),
        "notice" => {
            let tag = match s("level") {
                "warning" => "Warning: ",
                "error" => "Error: ",
                _ => "",
            };
            format!("[Container] {ts} {tag}{}", s("message"))
        }
        "artifact" => format!(
            "[Container] {ts} Artifact {}: {} files, {} bytes in {}",
            s("identifier"),
            n("files"),
            n("bytes"),
            s("path")
        ),
        "report" => match serde_json::from_value::<crate::reports::ReportResult>(v.clone()) {
            Ok(r) => crate::reports::render_summary(&r),
            Err(_) => return None,
        },
        "stage" => format!(
            "[Container] {ts} {}{}",
            if v.get("ok").and_then(Value::as_bool).unwrap_or(true) {
                ""
            } else {
                "Error: "
            },
            s("message")
        ),
        "cache" => {
            let mib = n("bytes") as f64 / (1024.0 * 1024.0);
            let secs = n("duration_ms") as f64 / 1000.0;
            let rate = if secs > 0.0 { mib / secs } else { 0.0 };
            let hit = v.get("hit").and_then(Value::as_bool).unwrap_or(false);
            let key = s("key");
            let matched = v.get("matched_key").and_then(Value::as_str).unwrap_or(key);
            let what = match (s("action"), hit) {
                ("restore", true) if s("source") == "volume" => format!(
                    "Cache {matched} found in the local cache volumes: {} files, {mib:.1} MiB, nothing to extract ({secs:.2}s)",
                    n("files")
                ),
                ("restore", true) => format!(
                    "Cache restored from {matched}: {} files, {mib:.1} MiB in {secs:.2}s ({rate:.0} MiB/s)",
                    n("files")
                ),
                ("restore", false) => format!("Cache miss for key {key}"),
                (_, true) => format!(
                    "Cache saved as {key}: {} files, {mib:.1} MiB ({:.1} MiB compressed) in {secs:.2}s",
                    n("files"),
                    n("compressed_bytes") as f64 / (1024.0 * 1024.0)
                ),
                (_, false) => format!("Cache not saved for key {key}"),
            };
            match v.get("note").and_then(Value::as_str) {
                Some(note) => format!("[Container] {ts} {what} ({note})"),
                None => format!("[Container] {ts} {what}"),
            }
        }
        "build_ended" => build_summary_json(v),
        "diagnostic" => {
            let level = match s("level") {
                "info" => "note",
                other => other,
            };
            match (v.get("file").and_then(Value::as_str), v.get("line")) {
                (Some(f), Some(l)) => format!(
                    "{f}:{l}:{}: {level}: {}",
                    v.get("col").and_then(Value::as_u64).unwrap_or(1),
                    s("message")
                ),
                _ => format!("{level}: {}", s("message")),
            }
        }
        _ => return None,
    })
}

/// The end-of-build summary `runner build` prints on a terminal (phases with their
/// durations, exported variables, the verdict), with `paint(colour, text)` for colour.
pub fn build_summary(
    r: &crate::event::BuildResult,
    paint: impl Fn(&str, &str) -> String,
) -> String {
    let mut s = String::new();
    s.push('\n');
    for p in &r.phases {
        let status = p.status.as_str();
        s.push_str(&format!(
            "  {:<17} {} {:>8.1}s\n",
            p.phase.as_str(),
            paint(status_colour(status), &format!("{status:<10}")),
            p.duration_ms as f64 / 1000.0
        ));
    }
    for (k, v) in &r.exported_variables {
        s.push_str(&format!("  exported {k}={v}\n"));
    }
    let status = r.status.as_str();
    let who = r
        .batch_identifier
        .as_deref()
        .map(|b| format!(" {b}"))
        .unwrap_or_default();
    s.push_str(&format!(
        "Build{who} {} in {:.1}s",
        paint(
            if status == "SUCCEEDED" {
                "1;32"
            } else {
                "1;31"
            },
            status
        ),
        r.duration_ms as f64 / 1000.0
    ));
    if let Some(log) = &r.log_file {
        s.push_str(&format!(" (log: {log})"));
    }
    s
}

/// A phase status's colour in the summary.
pub fn status_colour(status: &str) -> &'static str {
    match status {
        "SUCCEEDED" => "32",
        "SKIPPED" => "2",
        _ => "31",
    }
}

/// [`build_summary`] without colour, from a `build_ended` event read back as JSON.
fn build_summary_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = String::from("\n");
    for p in v
        .get("phases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let status = p.get("status").and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!(
            "  {:<17} {:<10} {:>8.1}s\n",
            p.get("phase").and_then(Value::as_str).unwrap_or(""),
            status,
            p.get("duration_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0
        ));
    }
    for pair in v
        .get("exported_variables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = pair.get(0).and_then(Value::as_str).unwrap_or("");
        let val = pair.get(1).and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!("  exported {k}={val}\n"));
    }
    let who = v
        .get("batch_identifier")
        .and_then(Value::as_str)
        .map(|b| format!(" {b}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "Build{who} {} in {:.1}s",
        s("status"),
        v.get("duration_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0
    ));
    if let Some(log) = v.get("log_file").and_then(Value::as_str) {
        out.push_str(&format!(" (log: {log})"));
    }
    out
}
