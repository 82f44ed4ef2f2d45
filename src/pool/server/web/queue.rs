//! The queue page: the pauses in force, queued jobs per label set with the oldest's wait,
//! the longest waiting jobs; an `admin` session pauses and resumes (plain forms, each
//! with the session's CSRF token).

use super::super::queue as q;
use super::{checked_post, esc, html, signed_in, viewer, Res, Web, WebError};
use crate::pool::protocol::{label_key, parse_labels, Role};
use crate::pool::server::St;
use crate::pool::store;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use std::fmt::Write as _;

/// The queue page lists at most this many jobs (the counts cover them all).
const SHOWN: u32 = 100;

fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        "every job".into()
    } else {
        label_key(labels)
    }
}

fn key_text(key: &str) -> &str {
    if key.is_empty() {
        "(no labels)"
    } else {
        key
    }
}

pub(super) async fn page(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
) -> Res<Html<String>> {
    let session = signed_in(&web, &headers, &uri).await?;
    let view = q::view(&st).await?;
    let jobs = st.store.queued_jobs(SHOWN).await?;
    let queued = st.store.queued_groups().await?;
    let pauses = st.pauses.current(&st.store).await?;
    let admin = session.role == Role::Admin;
    let csrf = esc(&session.csrf);
    let now = store::now_ms();

    let mut b = String::from("<h1>Queue</h1>");
    if view.pauses.is_empty() {
        b.push_str("<p class=\"qstate\" id=\"qstate\"><span class=\"state s-running\">running</span> Agents take queued jobs.</p>");
    } else {
        b.push_str("<p class=\"qstate\" id=\"qstate\"><span class=\"state s-queued\">paused</span> Agents take no job a pause holds; running jobs go on.</p>");
        b.push_str(
            "<table class=\"pauses\"><thead><tr><th>Paused</th><th>Since</th><th></th></tr>\
             </thead><tbody>",
        );
        for p in &view.pauses {
            let button = if admin {
                format!(
                    "<form method=\"post\" action=\"/queue/resume\" class=\"qform\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"labels\" value=\"{}\">\
                     <button type=\"submit\">Resume</button></form>",
                    esc(&label_key(&p.labels))
                )
            } else {
                String::new()
            };
            let _ = write!(
                b,
                "<tr class=\"pause\"><td><code>{}</code></td><td>{}</td><td>{button}</td></tr>",
                esc(&labels_text(&p.labels)),
                esc(&p.since),
            );
        }
        b.push_str("</tbody></table>");
    }
    if admin {
        let _ = write!(
            b,
            "<div class=\"qactions\"><form method=\"post\" action=\"/queue/pause\" class=\"qform\" id=\"pause\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>Labels <input name=\"labels\" placeholder=\"every job, or os=linux,…\"></label>\
             <button type=\"submit\">Pause</button></form>"
        );
        if !view.pauses.is_empty() {
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/queue/resume\" class=\"qform\" id=\"resume\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"scope\" value=\"all\">\
                 <button type=\"submit\">Resume all</button></form>"
            );
        }
        b.push_str("</div>");
    } else {
        b.push_str("<p class=\"muted\">An <code>admin</code> token pauses and resumes.</p>");
    }

    b.push_str("<h2>Queued by label set</h2>");
    let groups: Vec<html::Row> = queued
        .iter()
        .map(|g| {
            html::Row::new(
                "group",
                vec![
                    format!("<code>{}</code>", esc(key_text(&g.key))),
                    g.count.to_string(),
                    esc(&html::duration(
                        u64::try_from(now - g.oldest_ms).unwrap_or(0),
                    )),
                    if pauses.holds(&g.key) {
                        "<span class=\"state s-queued\">paused</span>"
                    } else {
                        "waiting for an agent"
                    }
                    .to_string(),
                ],
            )
        })
        .collect();
    b.push_str(&html::table(
        "queued",
        &["Labels", "Jobs", "Oldest waits", ""],
        &groups,
        "No queued jobs.",
    ));
    if !jobs.is_empty() {
        let rows: Vec<html::Row> = jobs
            .iter()
            .map(|j| {
                html::Row::new(
                    if pauses.holds(&j.key) {
                        "qjob held"
                    } else {
                        "qjob"
                    },
                    vec![
                        super::job_link(&j.id),
                        esc(&j.project),
                        format!("<code>{}</code>", esc(key_text(&j.key))),
                        esc(&html::duration(
                            u64::try_from(now - j.queued_ms).unwrap_or(0),
                        )),
                    ],
                )
            })
            .collect();
        b.push_str("<h2>Longest waiting</h2>");
        b.push_str(&html::table(
            "jobs",
            &["Job", "Project", "Labels", "Waiting"],
            &rows,
            "",
        ));
    }
    Ok(Html(html::page(
        "Queue",
        Some(&viewer(&session)),
        &b,
        false,
    )))
}

#[derive(Deserialize)]
pub(super) struct QueueForm {
    csrf: Option<String>,
    labels: Option<String>,
    /// `all`: resume every pause.
    scope: Option<String>,
}

/// A POST of an admin session (same origin, its CSRF token).
async fn admin_post(
    web: &super::WebState,
    headers: &HeaderMap,
    uri: &Uri,
    f: &QueueForm,
) -> Res<()> {
    let (_, session) = checked_post(web, headers, uri, f.csrf.as_deref()).await?;
    if session.role != Role::Admin {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "pausing and resuming the queue needs an admin token; sign in with one",
        ));
    }
    Ok(())
}

fn form_labels(f: &QueueForm) -> Res<std::collections::BTreeMap<String, String>> {
    parse_labels(f.labels.as_deref().unwrap_or("")).map_err(|e| {
        WebError::new(
            StatusCode::BAD_REQUEST,
            format!("{e}; leave it empty to pause every job"),
        )
    })
}

pub(super) async fn pause(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<QueueForm>,
) -> Res<Response> {
    admin_post(&web, &headers, &uri, &f).await?;
    let labels = form_labels(&f)?;
    q::pause_labels(&st, &labels).await?;
    Ok(Redirect::to("/queue").into_response())
}

pub(super) async fn resume(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<QueueForm>,
) -> Res<Response> {
    admin_post(&web, &headers, &uri, &f).await?;
    let labels = if f.scope.as_deref() == Some("all") {
        None
    } else {
        Some(form_labels(&f)?)
    };
    q::resume_labels(&st, labels.as_ref()).await?;
    Ok(Redirect::to("/queue").into_response())
}
