//! A job's log, as the agent uploads it (JSON lines, one build event per line, see
//! [`crate::event::Event`]), read back for the page: log lines as HTML and as text, the
//! phase timeline, the pushed image digest, the GitOps pull requests, test reports and
//! scan findings.

use super::ansi;
use super::html::{duration, esc, safe_href};
use super::results::Results;
use serde_json::Value;
use std::fmt::Write as _;

/// One phase as the timeline shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    /// `None` while it runs.
    pub status: Option<String>,
    pub duration_ms: Option<u64>,
}

/// What the page shows from a log, built up chunk by chunk.
#[derive(Debug, Default)]
pub struct JobLog {
    pub phases: Vec<Phase>,
    /// `(reference, digest)` of the pushed image.
    pub pushed: Option<(String, String)>,
    /// Pull request URLs of the GitOps stage.
    pub pull_requests: Vec<String>,
    /// `SUCCEEDED`, `FAILED`, … once the build ended.
    pub build_status: Option<String>,
    /// Test reports and scan findings.
    pub results: Results,
}

/// One rendered line: HTML for the page, text for the download.
pub struct Line {
    pub html: String,
    pub text: String,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn line(class: &str, html: String, text: String) -> Line {
    Line {
        html: format!("<span class=\"ln {class}\">{html}</span>\n"),
        text,
    }
}

fn plain(class: &str, text: String) -> Line {
    line(class, esc(&text), text)
}

impl JobLog {
    /// Reads one chunk (JSON lines); returns its lines.
    pub fn feed(&mut self, data: &str) -> Vec<Line> {
        let mut out = Vec::new();
        for raw in data.lines() {
            if raw.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(raw) {
                Ok(v) if v.get("event").is_some() => self.event(&v, &mut out),
                _ => out.push(line("raw", ansi::to_html(raw), ansi::strip(raw))),
            }
        }
        out
    }

    fn event(&mut self, v: &Value, out: &mut Vec<Line>) {
        match s(v, "event") {
            "log" => {
                let l = s(v, "line");
                let class = if s(v, "stream") == "stderr" {
                    "log err"
                } else {
                    "log"
                };
                out.push(line(class, ansi::to_html(l), ansi::strip(l)));
            }
            "build_started" => out.push(plain(
                "info",
                format!(
                    "Build {} of {} (image {})",
                    s(v, "build_id"),
                    s(v, "project"),
                    s(v, "image")
                ),
            )),
            "phase_started" => {
                let name = s(v, "phase").to_string();
                out.push(plain("phase", format!("▶ {name}")));
                self.phases.push(Phase {
                    name,
                    status: None,
                    duration_ms: None,
                });
            }
            "phase_ended" => {
                let name = s(v, "phase");
                let status = s(v, "status");
                let ms = v.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
                let mut text = format!("■ {name} {status} ({})", duration(ms));
                if let Some(c) = v.get("context").and_then(Value::as_str) {
                    let _ = write!(text, ": {c}");
                }
                out.push(plain("phase", text));
                match self
                    .phases
                    .iter_mut()
                    .rev()
                    .find(|p| p.name == name && p.status.is_none())
                {
                    Some(p) => {
                        p.status = Some(status.to_string());
                        p.duration_ms = Some(ms);
                    }
                    None => self.phases.push(Phase {
                        name: name.to_string(),
                        status: Some(status.to_string()),
                        duration_ms: Some(ms),
                    }),
                }
            }
            "command_started" => out.push(plain("cmd", format!("$ {}", s(v, "command")))),
            "command_ended" => {}
            "notice" => out.push(plain(
                &format!("notice n-{}", esc(s(v, "level"))),
                format!("[runner] {}", s(v, "message")),
            )),
            "diagnostic" => {
                let mut text = String::new();
                if let Some(f) = v.get("file").and_then(Value::as_str) {
                    let _ = write!(text, "{f}:");
                    if let Some(l) = v.get("line").and_then(Value::as_u64) {
                        let _ = write!(text, "{l}:");
                    }
                    text.push(' ');
                }
                let _ = write!(text, "{}: {}", s(v, "level"), s(v, "message"));
                out.push(plain("notice", text));
            }
            "artifact" => out.push(plain(
                "info",
                format!(
                    "artifacts {}: {} files",
                    s(v, "identifier"),
                    v.get("files").and_then(Value::as_u64).unwrap_or(0)
                ),
            )),
            "cache" => out.push(plain(
                "info",
                format!(
                    "cache {} {}: {}",
                    s(v, "action"),
                    s(v, "key"),
                    if v.get("hit").and_then(Value::as_bool) == Some(true) {
                        "hit"
                    } else {
                        "miss"
                    }
                ),
            )),
            "stage" => {
                let stage = s(v, "stage");
                let ok = v.get("ok").and_then(Value::as_bool) == Some(true);
                let d = v.get("detail").unwrap_or(&Value::Null);
                if ok && stage == "push" {
                    self.pushed = Some((s(d, "reference").to_string(), s(d, "digest").to_string()));
                }
                if stage == "scan" {
                    self.results.scan(d);
                }
                if ok && stage == "gitops" {
                    if let Some(url) = d
                        .get("pull_request")
                        .and_then(|p| p.get("url"))
                        .and_then(Value::as_str)
                    {
                        self.pull_requests.push(url.to_string());
                    }
                }
                out.push(plain(
                    if ok { "stage" } else { "stage err" },
                    format!("[{stage}] {}", s(v, "message")),
                ));
            }
            "report" => {
                self.results.report(v);
                let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
                out.push(plain(
                    "info",
                    format!(
                        "report {}: {} passed, {} failed, {} errored, {} skipped",
                        s(v, "group"),
                        n("passed"),
                        n("failed"),
                        n("errored"),
                        n("skipped")
                    ),
                ));
            }
            "build_ended" => {
                let status = s(v, "status").to_string();
                let ms = v.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
                out.push(plain(
                    "phase",
                    format!("Build {status} in {}", duration(ms)),
                ));
                self.build_status = Some(status);
            }
            _ => {}
        }
    }

    /// The phase timeline: one row per phase, its duration as a bar.
    pub fn timeline_html(&self) -> String {
        if self.phases.is_empty() {
            return "<p class=\"muted\">No phases yet.</p>".into();
        }
        let longest = self
            .phases
            .iter()
            .filter_map(|p| p.duration_ms)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut h = String::from("<table class=\"timeline\"><tbody>");
        for p in &self.phases {
            let status = p.status.as_deref().unwrap_or("RUNNING");
            let width = p
                .duration_ms
                .map(|ms| (ms.saturating_mul(1000) / longest).max(4))
                .unwrap_or(0);
            let _ = write!(
                h,
                "<tr class=\"phase-row\"><th>{}</th><td class=\"st p-{}\">{}</td>\
                 <td class=\"barcell\"><svg class=\"bar\" viewBox=\"0 0 1000 12\" \
                 preserveAspectRatio=\"none\" aria-hidden=\"true\"><rect class=\"p-{}\" \
                 width=\"{width}\" height=\"12\"/></svg></td><td class=\"dur\">{}</td></tr>",
                esc(&p.name),
                esc(status),
                esc(status),
                esc(status),
                p.duration_ms.map(duration).unwrap_or_default()
            );
        }
        h.push_str("</tbody></table>");
        h
    }

    /// The release section: pushed digest and pull requests (empty when neither).
    pub fn release_html(&self) -> String {
        let mut h = String::new();
        if let Some((reference, digest)) = &self.pushed {
            let _ = write!(
                h,
                "<p>Pushed <code class=\"ref\">{}</code> <code class=\"digest\">{}</code></p>",
                esc(reference),
                esc(digest)
            );
        }
        for url in &self.pull_requests {
            match safe_href(url) {
                Some(href) => {
                    let _ = write!(
                        h,
                        "<p>GitOps pull request: <a class=\"pr\" href=\"{href}\" \
                         rel=\"noopener noreferrer\">{}</a></p>",
                        esc(url)
                    );
                }
                None => {
                    let _ = write!(h, "<p>GitOps pull request: {}</p>", esc(url));
                }
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_lines_phases_and_release() {
        let mut log = JobLog::default();
        let data = [
            r#"{"event":"phase_started","phase":"BUILD"}"#,
            r#"{"event":"command_started","phase":"BUILD","command":"echo <x>"}"#,
            r#"{"event":"log","stream":"stdout","line":"<script>alert(1)</script>"}"#,
            r#"{"event":"phase_ended","phase":"BUILD","status":"SUCCEEDED","duration_ms":1500}"#,
            r#"{"event":"stage","stage":"push","ok":true,"message":"pushed","detail":{"reference":"r/a:1","digest":"sha256:ab"},"duration_ms":1}"#,
            r#"{"event":"stage","stage":"gitops","ok":true,"message":"pr","detail":{"pull_request":{"url":"javascript:alert(1)"}},"duration_ms":1}"#,
            "not json <b>",
        ]
        .join("\n");
        let lines = log.feed(&data);
        let html: String = lines.iter().map(|l| l.html.as_str()).collect();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("$ echo &lt;x&gt;"));
        assert!(html.contains("not json &lt;b&gt;"));
        assert_eq!(lines[2].text, "<script>alert(1)</script>");
        assert_eq!(
            log.phases,
            vec![Phase {
                name: "BUILD".into(),
                status: Some("SUCCEEDED".into()),
                duration_ms: Some(1500)
            }]
        );
        let release = log.release_html();
        assert!(release.contains("sha256:ab"));
        assert!(!release.contains("href=\"javascript"), "{release}");
        assert!(log.timeline_html().contains("width=\"1000\""));
    }
}
