//! `GET /stats?project=&window=`: the delivery metrics (see [`crate::pool::dora`]) of each
//! project over a window ending now: the four figures, and one small chart per figure
//! with a bar per day (windows up to 14 days), week (up to 120 days) or 30 days, drawn as
//! SVG on the server (no script; colours as SVG attributes, so the CSP's `style-src`
//! holds).

use super::super::stats::{window, StatsQuery};
use super::html::{self, esc, url_part};
use super::{signed_in, viewer, Res, Web, WebError};
use crate::pool::dora::{self, chart, Figures};
use crate::pool::server::St;
use crate::pool::store;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Html;
use axum::Extension;
use serde::Deserialize;
use std::fmt::Write as _;

/// Projects drawn with charts (the table lists them all).
const CHARTED: usize = 12;
const DAY_MS: i64 = 86_400_000;
const WINDOWS: [&str; 4] = ["7d", "30d", "90d", "365d"];

#[derive(Deserialize)]
pub(super) struct PageQuery {
    project: Option<String>,
    window: Option<String>,
}

fn bucket_ms(span: i64) -> i64 {
    if span <= 14 * DAY_MS {
        DAY_MS
    } else if span <= 120 * DAY_MS {
        7 * DAY_MS
    } else {
        30 * DAY_MS
    }
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "–".into())
}

fn percent(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

/// The four charts of one project's series.
fn charts(series: &[dora::Bucket], per: &str) -> String {
    let label = |b: &dora::Bucket| {
        store::rfc3339(b.window.from_ms)
            .get(..10)
            .unwrap_or_default()
            .to_string()
    };
    type Pick = fn(&Figures) -> (Option<f64>, String);
    let metrics: [(&str, &str, &str, Pick); 4] = [
        ("Deployments", "deployments", "#2da44e", |f| {
            (Some(f.deployments as f64), f.deployments.to_string())
        }),
        ("Lead time for changes", "lead-time", "#0969da", |f| {
            (
                f.lead_time_seconds,
                or_dash(f.lead_time_seconds.map(dora::human_span)),
            )
        }),
        ("Change failure rate", "failure-rate", "#cf222e", |f| {
            (
                f.change_failure_rate,
                or_dash(f.change_failure_rate.map(percent)),
            )
        }),
        ("Time to restore", "restore", "#9a6700", |f| {
            (
                f.time_to_restore_seconds,
                or_dash(f.time_to_restore_seconds.map(dora::human_span)),
            )
        }),
    ];
    let mut out = String::from("<div class=\"charts\">");
    for (title, class, fill, pick) in metrics {
        let bars: Vec<chart::Bar> = series
            .iter()
            .map(|b| {
                let (value, text) = pick(&b.figures);
                chart::Bar {
                    label: label(b),
                    value,
                    text,
                }
            })
            .collect();
        let _ = write!(
            out,
            "<figure class=\"metric\">{}<figcaption>{} <span class=\"muted\">per {}</span>\
             </figcaption></figure>",
            chart::bars(&format!("{title} per {per}"), class, fill, &bars),
            esc(title),
            esc(per)
        );
    }
    out.push_str("</div>");
    out
}

/// `GET /stats`.
pub(super) async fn page(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<PageQuery>,
) -> Res<Html<String>> {
    let session = signed_in(&web, &headers, &uri).await?;
    let project = q
        .project
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let span = q
        .window
        .as_deref()
        .filter(|w| !w.is_empty())
        .unwrap_or("30d");
    let w = window(
        &StatsQuery {
            window: Some(span.to_string()),
            ..StatsQuery::default()
        },
        store::now_ms(),
    )
    .map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e))?;
    let histories = st.store.delivery_history(project, w).await?;
    let bucket = bucket_ms(w.to_ms - w.from_ms);
    let per = match bucket / DAY_MS {
        1 => "day",
        7 => "week",
        _ => "30 days",
    };

    let mut b = String::from("<h1>Delivery metrics</h1>");
    let _ = write!(
        b,
        "<form class=\"filters\" method=\"get\" action=\"/stats\">\
         <label>Project <input name=\"project\" value=\"{}\"></label>\
         <label>Window <select name=\"window\">",
        esc(project.unwrap_or(""))
    );
    for opt in WINDOWS {
        let _ = write!(
            b,
            "<option value=\"{opt}\"{}>last {opt}</option>",
            if opt == span { " selected" } else { "" }
        );
    }
    let _ = write!(
        b,
        "</select></label><button type=\"submit\">Show</button></form>\
         <p class=\"muted\">From {} to {}. A deployment is a merged GitOps pull request a \
         build opened; a failure is a failed main-line build or a revert before the next \
         deployment.</p>",
        esc(&html::time(w.from_ms)),
        esc(&html::time(w.to_ms))
    );
    if histories.is_empty() {
        b.push_str(
            "<p class=\"muted empty\">No builds or deployments in this window. Deployments \
             are counted when the config repository's GitHub webhook reports a merged pull \
             request that a job opened.</p>",
        );
    } else {
        b.push_str(
            "<table class=\"stats\"><thead><tr><th>Project</th><th>Deployments</th>\
             <th>Per day</th><th>Lead time</th><th>Change failure rate</th>\
             <th>Time to restore</th></tr></thead><tbody>",
        );
        for (name, h) in &histories {
            let f = dora::figures(h, w);
            let _ = write!(
                b,
                "<tr class=\"project\"><td><a href=\"/stats?project={}&amp;window={}\">{}</a>\
                 </td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&url_part(name)),
                esc(&url_part(span)),
                esc(name),
                f.deployments,
                f.deployments_per_day,
                esc(&or_dash(f.lead_time_seconds.map(dora::human_span))),
                esc(&or_dash(f.change_failure_rate.map(percent))),
                esc(&or_dash(f.time_to_restore_seconds.map(dora::human_span))),
            );
        }
        b.push_str("</tbody></table>");
        for (name, h) in histories.iter().take(CHARTED) {
            let series = dora::series(h, w, bucket);
            let _ = write!(
                b,
                "<section class=\"project-stats\"><h2>{}</h2>{}</section>",
                esc(name),
                charts(&series, per)
            );
        }
        if histories.len() > CHARTED {
            let _ = write!(
                b,
                "<p class=\"muted\">Charts for the first {CHARTED} projects; pick a project \
                 for its own.</p>"
            );
        }
    }
    Ok(Html(html::page(
        "Delivery metrics",
        Some(&viewer(&session)),
        &b,
        false,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_windows_length() {
        assert_eq!(bucket_ms(7 * DAY_MS), DAY_MS);
        assert_eq!(bucket_ms(30 * DAY_MS), 7 * DAY_MS);
        assert_eq!(bucket_ms(365 * DAY_MS), 30 * DAY_MS);
    }
}
