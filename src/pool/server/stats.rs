//! Delivery metrics over HTTP: `GET /v1/stats` (JSON) and the `runner_dora_*` gauges of
//! `/metrics` (see [`crate::pool::dora`] for the definitions).

use super::{auth, Answer, Res, St};
use crate::pool::dora::{self, Window};
use crate::pool::protocol::{ProjectStats, Role, StatsReport};
use crate::pool::store::{self, Store, StoreError};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;

/// The window when none is asked for.
pub const DEFAULT_WINDOW: &str = "30d";

/// `?project=&from=&to=&window=`.
#[derive(Debug, Default, Deserialize)]
pub struct StatsQuery {
    pub project: Option<String>,
    /// RFC 3339 (default: `to` minus `window`).
    pub from: Option<String>,
    /// RFC 3339 (default: now).
    pub to: Option<String>,
    /// `30d`, `2w`, `12h`, `90m` (default 30d).
    pub window: Option<String>,
}

/// The window a query asks for (an error says what to send instead).
pub fn window(q: &StatsQuery, now: i64) -> Result<Window, String> {
    let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, String> {
        match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => store::parse_rfc3339_ms(v).map(Some).ok_or_else(|| {
                format!("{name} `{v}` is not an RFC 3339 time (e.g. 2026-01-02T03:04:05Z)")
            }),
        }
    };
    let to = time("to", &q.to)?.unwrap_or(now);
    let from = match time("from", &q.from)? {
        Some(f) => f,
        None => {
            let span = q.window.as_deref().unwrap_or(DEFAULT_WINDOW);
            let ms = dora::parse_span(span).ok_or_else(|| {
                format!("window `{span}` is not a span such as 30d, 2w, 12h or 90m")
            })?;
            to.saturating_sub(ms)
        }
    };
    if from >= to {
        return Err("the window is empty: `from` must be before `to`".into());
    }
    Ok(Window {
        from_ms: from,
        to_ms: to,
    })
}

/// Every project's (or one's) figures over `w`, by project name.
pub async fn report(
    store: &Store,
    project: Option<&str>,
    w: Window,
) -> Result<Vec<ProjectStats>, StoreError> {
    let histories = store.delivery_history(project, w).await?;
    let mut out: Vec<ProjectStats> = histories
        .iter()
        .map(|(p, h)| ProjectStats {
            project: p.clone(),
            figures: dora::figures(h, w),
        })
        .collect();
    if let Some(p) = project {
        if out.is_empty() {
            out.push(ProjectStats {
                project: p.to_string(),
                figures: dora::figures(&dora::History::default(), w),
            });
        }
    }
    Ok(out)
}

/// `GET /v1/stats`.
pub(super) async fn stats(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<StatsQuery>,
) -> Res<Json<StatsReport>> {
    auth(&st, &headers, Role::Submit).await?;
    let w = window(&q, store::now_ms()).map_err(Answer::bad)?;
    let project = q.project.as_deref().filter(|p| !p.is_empty());
    let projects = report(&st.store, project, w).await?;
    Ok(Json(StatsReport {
        from: store::rfc3339(w.from_ms),
        to: store::rfc3339(w.to_ms),
        projects,
    }))
}

/// The `runner_dora_*` gauges: every project's figures over the last 30 days.
pub(super) async fn metrics_text(store: &Store) -> Result<String, StoreError> {
    let w = window(&StatsQuery::default(), store::now_ms()).unwrap_or(Window {
        from_ms: 0,
        to_ms: 1,
    });
    let projects: Vec<(String, dora::Figures)> = report(store, None, w)
        .await?
        .into_iter()
        .map(|p| (p.project, p.figures))
        .collect();
    Ok(dora::prometheus(w, &projects))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn windows_come_from_from_to_or_a_span() {
        let q = |from: Option<&str>, to: Option<&str>, window: Option<&str>| StatsQuery {
            project: None,
            from: from.map(Into::into),
            to: to.map(Into::into),
            window: window.map(Into::into),
        };
        let day = 86_400_000;
        assert_eq!(
            window(&q(None, None, None), 100 * day).unwrap(),
            Window {
                from_ms: 70 * day,
                to_ms: 100 * day
            }
        );
        assert_eq!(
            window(&q(None, Some("1970-01-11T00:00:00Z"), Some("2d")), 0).unwrap(),
            Window {
                from_ms: 8 * day,
                to_ms: 10 * day
            }
        );
        assert_eq!(
            window(
                &q(
                    Some("1970-01-02T00:00:00Z"),
                    Some("1970-01-03T00:00:00Z"),
                    None
                ),
                0
            )
            .unwrap(),
            Window {
                from_ms: day,
                to_ms: 2 * day
            }
        );
        assert!(window(&q(Some("yesterday"), None, None), day)
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(window(&q(None, None, Some("month")), day)
            .unwrap_err()
            .contains("30d"));
        assert!(window(
            &q(
                Some("1970-01-03T00:00:00Z"),
                Some("1970-01-02T00:00:00Z"),
                None
            ),
            0
        )
        .unwrap_err()
        .contains("before"));
    }
}
