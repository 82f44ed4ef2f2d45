//! HTML building blocks: escaping and the page layout. Every user-controlled string
//! (project and branch names, log lines, messages, artifact names) reaches HTML only
//! through [`esc`] (text and attribute values alike, always inside double quotes) or
//! [`url_part`] (inside a URL).

use std::fmt::Write as _;

pub use crate::pool::markup::esc;

/// Percent-encodes a string for one URL path segment or query value.
pub fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Percent-encodes a path of several segments (artifact names keep their `/`).
pub fn url_path(s: &str) -> String {
    s.split('/').map(url_part).collect::<Vec<_>>().join("/")
}

/// An `http(s)` link taken from a job's events, or `None` (a `javascript:` or other URL
/// from a build is never made clickable).
pub fn safe_href(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then(|| esc(url.trim()))
}

/// The signed-in user, for the page header.
pub struct Viewer<'a> {
    pub role: &'a str,
    pub csrf: &'a str,
}

/// A whole page: `title` is text (escaped here), `body` is HTML.
pub fn page(title: &str, viewer: Option<&Viewer>, body: &str, script: bool) -> String {
    let mut nav = String::new();
    if let Some(v) = viewer {
        let _ = write!(
            nav,
            "<nav><a href=\"/jobs\">Jobs</a> <a href=\"/agents\">Agents</a> <a href=\"/queue\">Queue</a> \
             <a href=\"/stats\">Delivery</a>\
             <form method=\"post\" action=\"/signout\" class=\"signout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <span class=\"role\">{}</span> <button type=\"submit\">Sign out</button></form></nav>",
            esc(v.csrf),
            esc(v.role)
        );
    }
    let script = if script {
        "<script src=\"/static/live.js\" defer></script>"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · runner</title><link rel=\"stylesheet\" href=\"/static/web.css\">{script}\
         </head><body><header><a class=\"brand\" href=\"/jobs\">runner</a>{nav}</header>\
         <main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// One row of a [`table`]: its class, more attributes (HTML, escaped by the caller, with a
/// leading space) and each cell's HTML.
pub struct Row {
    pub class: &'static str,
    pub attrs: String,
    pub cells: Vec<String>,
}

impl Row {
    pub fn new(class: &'static str, cells: Vec<String>) -> Row {
        Row {
            class,
            attrs: String::new(),
            cells,
        }
    }
}

/// A list page's table: `head` (text) over `rows`, or `empty` (text) when there is none.
pub fn table(class: &str, head: &[&str], rows: &[Row], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted empty\">{}</p>", esc(empty));
    }
    let mut h = format!("<table class=\"{}\"><thead><tr>", esc(class));
    for th in head {
        let _ = write!(h, "<th>{}</th>", esc(th));
    }
    h.push_str("</tr></thead><tbody>");
    for r in rows {
        let _ = write!(h, "<tr class=\"{}\"{}>", r.class, r.attrs);
        for c in &r.cells {
            let _ = write!(h, "<td>{c}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

/// A state as a coloured label.
pub fn state_label(state: &str) -> String {
    format!(
        "<span class=\"state s-{0}\" data-state=\"{0}\">{0}</span>",
        esc(state)
    )
}

/// Milliseconds as `1m 05s`, `3.2s` or `120ms`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

/// A millisecond timestamp as `2026-12-06 05:40:01 UTC`.
pub fn time(ms: i64) -> String {
    let t = crate::pool::store::rfc3339(ms);
    match (t.get(..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h} UTC"),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_attributes_and_urls() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(url_part("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(url_path("dist/a b.zip"), "dist/a%20b.zip");
        assert_eq!(safe_href("javascript:alert(1)"), None);
        assert_eq!(
            safe_href("https://github.com/o/r/pull/1?a=1&b=2").as_deref(),
            Some("https://github.com/o/r/pull/1?a=1&amp;b=2")
        );
        assert_eq!(duration(65_000), "1m 05s");
        let t = table(
            "jobs",
            &["A<b>"],
            &[Row::new("job", vec!["<i>x</i>".into()])],
            "none",
        );
        assert_eq!(
            t,
            "<table class=\"jobs\"><thead><tr><th>A&lt;b&gt;</th></tr></thead><tbody>\
             <tr class=\"job\"><td><i>x</i></td></tr></tbody></table>"
        );
        assert_eq!(
            table("jobs", &[], &[], "No <jobs>."),
            "<p class=\"muted empty\">No &lt;jobs&gt;.</p>"
        );
        assert_eq!(duration(3_200), "3.2s");
    }
}
