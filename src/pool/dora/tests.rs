#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

fn dep(pr: &str, merged_h: i64, commits_h: &[Option<i64>]) -> Deployment {
    Deployment {
        pr: pr.into(),
        opened_ms: None,
        merged_ms: merged_h * H,
        changes: commits_h
            .iter()
            .enumerate()
            .map(|(i, c)| Change {
                job: format!("{pr}-{i}"),
                commit_ms: c.map(|h| h * H),
            })
            .collect(),
    }
}

fn failed(h: i64) -> Build {
    Build {
        finished_ms: h * H,
        failed: true,
    }
}

fn ok(h: i64) -> Build {
    Build {
        finished_ms: h * H,
        failed: false,
    }
}

fn window(from_h: i64, to_h: i64) -> Window {
    Window {
        from_ms: from_h * H,
        to_ms: to_h * H,
    }
}

#[test]
fn a_deployment_a_failure_and_a_fix() {
    // commit 8h, build ok 9h, PR 1 merged 10h; build fails 11h; fix committed 13h,
    // built 13h, PR 2 merged 14h.
    let h = History {
        deployments: vec![dep("pr1", 10, &[Some(8)]), dep("pr2", 14, &[Some(13)])],
        builds: vec![ok(9), failed(11), ok(13)],
        reverts: vec![],
    };
    let f = figures(&h, window(0, 24));
    assert_eq!(
        f,
        Figures {
            deployments: 2,
            deployments_per_day: 2.0,
            // median(2h, 1h) = 1.5h
            lead_time_seconds: Some(5400.0),
            changes: 2,
            failed_deployments: 1,
            change_failure_rate: Some(0.5),
            // 11h → 14h
            time_to_restore_seconds: Some(10800.0),
            restored: 1,
            unrestored: 0,
        }
    );
}

#[test]
fn a_failure_belongs_to_the_deployment_before_it_and_a_revert_is_a_failure() {
    // The revert arrives exactly at PR 2's merge: PR 2's failure, not PR 1's; nothing
    // restores it before the window ends.
    let h = History {
        deployments: vec![dep("pr1", 10, &[Some(9)]), dep("pr2", 20, &[Some(19)])],
        builds: vec![ok(15)],
        reverts: vec![20 * H],
    };
    let f = figures(&h, window(0, 24));
    assert_eq!(f.deployments, 2);
    assert_eq!(f.failed_deployments, 1);
    assert_eq!(f.change_failure_rate, Some(0.5));
    assert_eq!(f.time_to_restore_seconds, None);
    assert_eq!((f.restored, f.unrestored), (0, 1));
    assert_eq!(f.lead_time_seconds, Some(3600.0));
    // One millisecond before the merge, the revert is PR 1's.
    let h = History {
        reverts: vec![20 * H - 1],
        ..h
    };
    let f = figures(&h, window(0, 24));
    assert_eq!(f.failed_deployments, 1);
    assert_eq!((f.restored, f.unrestored), (1, 0));
    assert_eq!(f.time_to_restore_seconds, Some(0.001));
}

#[test]
fn consecutive_failed_deployments_are_one_incident() {
    // d1 10h ok; d2 12h fails 13h; d3 14h fails 15h; d4 18h ok; d5 20h fails 21h; d6 22h ok.
    let deployments = vec![
        dep("d1", 10, &[Some(9)]),
        dep("d2", 12, &[Some(11), Some(10)]),
        dep("d3", 14, &[None]),
        dep("d4", 18, &[Some(18)]),
        // committed after its merge (a clock skew): counts as 0
        dep("d5", 20, &[Some(21)]),
        dep("d6", 22, &[Some(19)]),
    ];
    let h = History {
        deployments: deployments.clone(),
        builds: vec![failed(13), failed(15), ok(16), failed(21), failed(21)],
        reverts: vec![],
    };
    let want = Figures {
        deployments: 6,
        deployments_per_day: 6.0,
        // lead times 1, 1, 2, 0, 0, 3 hours: median (1 + 1) / 2 = 1h
        lead_time_seconds: Some(3600.0),
        changes: 6,
        failed_deployments: 3,
        change_failure_rate: Some(0.5),
        // incidents 13h → 18h (5h) and 21h → 22h (1h): median 3h
        time_to_restore_seconds: Some(10800.0),
        restored: 2,
        unrestored: 0,
    };
    assert_eq!(figures(&h, window(0, 24)), want);
    // The order of the inputs does not matter.
    let mut reversed = h.clone();
    reversed.deployments.reverse();
    reversed.builds.reverse();
    assert_eq!(figures(&reversed, window(0, 24)), want);
}

#[test]
fn the_window_bounds_what_counts() {
    // Window [100h, 100h + 7 days).
    let w = Window {
        from_ms: 100 * H,
        to_ms: 100 * H + 7 * DAY,
    };
    let h = History {
        deployments: vec![
            // before the window: its change is not counted, but its failure (in the
            // window) starts an incident there
            dep("d0", 90, &[Some(80)]),
            dep("d1", 110, &[Some(100)]),
            // merged exactly at the window's end: not yet
            dep("d9", 100 + 7 * 24, &[Some(200)]),
        ],
        // before any deployment: nobody's failure
        builds: vec![failed(50), failed(101), ok(111)],
        reverts: vec![],
    };
    let f = figures(&h, w);
    assert_eq!(f.deployments, 1);
    assert_eq!(f.deployments_per_day, 1.0 / 7.0);
    assert_eq!(f.lead_time_seconds, Some(36000.0));
    assert_eq!(f.changes, 1);
    assert_eq!(f.failed_deployments, 0);
    assert_eq!(f.change_failure_rate, Some(0.0));
    // 101h → 110h
    assert_eq!(f.time_to_restore_seconds, Some(32400.0));
    assert_eq!((f.restored, f.unrestored), (1, 0));

    // An incident that started before the window is not the window's.
    let f = figures(&h, window(105, 200));
    assert_eq!(f.time_to_restore_seconds, None);
    assert_eq!((f.restored, f.unrestored), (0, 0));
    // A failure after the window's end does not make its deployment failed.
    let h2 = History {
        builds: vec![failed(150)],
        ..h.clone()
    };
    assert_eq!(figures(&h2, window(100, 150)).failed_deployments, 0);
    assert_eq!(figures(&h2, window(100, 151)).failed_deployments, 1);
}

#[test]
fn no_history_or_no_window_gives_no_figures() {
    let f = figures(&History::default(), window(0, 24));
    assert_eq!(f, Figures::default());
    assert_eq!(f.change_failure_rate, None);
    assert_eq!(f.lead_time_seconds, None);
    let h = History {
        deployments: vec![dep("d", 1, &[Some(0)])],
        ..History::default()
    };
    assert_eq!(figures(&h, window(24, 24)), Figures::default());
    assert_eq!(figures(&h, window(24, 0)), Figures::default());
    // No commit times: deployments without a lead time.
    let h = History {
        deployments: vec![dep("d", 1, &[None])],
        ..History::default()
    };
    let f = figures(&h, window(0, 24));
    assert_eq!(
        (f.deployments, f.changes, f.lead_time_seconds),
        (1, 0, None)
    );
    // Odd sample: the middle value.
    let h = History {
        deployments: vec![dep("d", 10, &[Some(9), Some(5), Some(7)])],
        ..History::default()
    };
    assert_eq!(
        figures(&h, window(0, 24)).lead_time_seconds,
        Some(3.0 * 3600.0)
    );
}

#[test]
fn series_splits_the_window_into_buckets_counted_back_from_its_end() {
    let h = History {
        deployments: vec![
            dep("a", 2, &[Some(1)]),
            dep("b", 4 * 24, &[Some(4 * 24 - 2)]),
            dep("c", 9 * 24, &[Some(9 * 24 - 3)]),
        ],
        builds: vec![failed(9 * 24 + 1)],
        reverts: vec![],
    };
    let s = series(&h, window(0, 10 * 24), 7 * DAY);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].window, window(0, 3 * 24));
    assert_eq!(s[1].window, window(3 * 24, 10 * 24));
    assert_eq!(s[0].figures.deployments, 1);
    assert_eq!(s[0].figures.lead_time_seconds, Some(3600.0));
    assert_eq!(s[1].figures.deployments, 2);
    assert_eq!(s[1].figures.lead_time_seconds, Some(2.5 * 3600.0));
    assert_eq!(s[1].figures.change_failure_rate, Some(0.5));
    assert!(series(&h, window(0, 24), 0).is_empty());
    assert_eq!(series(&h, window(0, 100_000 * 24), H).len(), 1000);
}

#[test]
fn pull_requests_are_read_from_their_urls_and_the_gitops_stage() {
    assert_eq!(
        pull_request_key("https://github.com/Acme/Shop-Config/pull/12"),
        Some(("acme/shop-config".into(), 12))
    );
    assert_eq!(
        pull_request_key("https://ghe.example/acme/cfg/pull/3?w=1#x"),
        Some(("acme/cfg".into(), 3))
    );
    assert_eq!(
        pull_request_key("https://gitlab.example/group/sub/cfg/-/merge_requests/5"),
        Some(("group/sub/cfg".into(), 5))
    );
    assert_eq!(
        pull_request_key("http://gitea.local/o/r/pulls/9"),
        Some(("o/r".into(), 9))
    );
    for bad in [
        "javascript:alert(1)",
        "https://github.com/o/pull/1",
        "https://github.com/o/r/pull/x",
        "https://github.com/o/r/pull/0",
        "https://github.com/o/r/pull/",
        "https://github.com/o/r",
        "",
    ] {
        assert_eq!(pull_request_key(bad), None, "{bad}");
    }
    let chunk = concat!(
        "{\"event\":\"log\",\"line\":\"\\\"gitops\\\"\"}\n",
        "{\"event\":\"stage\",\"stage\":\"gitops\",\"ok\":true,\"message\":\"m\",",
        "\"detail\":{\"pull_request\":{\"number\":12,\"url\":\"https://github.com/a/c/pull/12\",\"action\":\"created\"}}}\n",
        "{\"event\":\"stage\",\"stage\":\"gitops\",\"ok\":false,\"detail\":{\"pull_request\":{\"url\":\"https://github.com/a/c/pull/13\"}}}\n",
        "{\"event\":\"stage\",\"stage\":\"gitops\",\"ok\":true,\"detail\":{\"pull_request\":null}}\n",
        "{\"event\":\"stage\",\"stage\":\"push\",\"ok\":true,\"detail\":{\"pull_request\":{\"url\":\"https://github.com/a/c/pull/14\"}}}\n",
        "not json \"gitops\"\n",
    );
    assert_eq!(
        reported_pull_requests(chunk),
        vec!["https://github.com/a/c/pull/12".to_string()]
    );
    assert!(reported_pull_requests("{\"event\":\"log\"}").is_empty());
}

#[test]
fn reverts_are_recognised_by_their_subject() {
    assert!(is_revert_message(
        "Revert \"add cache\"\n\nThis reverts commit abc."
    ));
    assert!(is_revert_message("revert: add cache"));
    assert!(is_revert_message("Revert: add cache"));
    assert!(!is_revert_message("Reverting is hard"));
    assert!(!is_revert_message("fix: not a Revert \"x\""));
    assert!(!is_revert_message(""));
}

#[test]
fn spans_and_prometheus_text() {
    assert_eq!(parse_span("30d"), Some(30 * DAY));
    assert_eq!(parse_span("2w"), Some(14 * DAY));
    assert_eq!(parse_span("12h"), Some(12 * H));
    assert_eq!(parse_span("90m"), Some(90 * 60_000));
    for bad in [
        "",
        "d",
        "0d",
        "-1d",
        "3x",
        "1.5d",
        "99999999999999999d",
        "é",
    ] {
        assert_eq!(parse_span(bad), None, "{bad}");
    }
    let f = Figures {
        deployments: 2,
        deployments_per_day: 0.5,
        lead_time_seconds: Some(5400.0),
        changes: 2,
        failed_deployments: 1,
        change_failure_rate: Some(0.5),
        time_to_restore_seconds: None,
        restored: 0,
        unrestored: 1,
    };
    let text = prometheus(window(0, 96), &[("a\"b".into(), f)]);
    assert!(
        text.contains("runner_dora_window_seconds 345600\n"),
        "{text}"
    );
    assert!(
        text.contains("runner_dora_deployments{project=\"a\\\"b\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("runner_dora_deployments_per_day{project=\"a\\\"b\"} 0.5\n"));
    assert!(text.contains("runner_dora_lead_time_seconds{project=\"a\\\"b\"} 5400\n"));
    assert!(text.contains("runner_dora_change_failure_rate{project=\"a\\\"b\"} 0.5\n"));
    assert!(text.contains("# TYPE runner_dora_time_to_restore_seconds gauge\n"));
    assert!(!text.contains("runner_dora_time_to_restore_seconds{"));
}

#[test]
fn spans_read_as_days_hours_minutes_seconds() {
    assert_eq!(human_span(12.4), "12s");
    assert_eq!(human_span(0.0), "0s");
    assert_eq!(human_span(0.053), "53ms");
    assert_eq!(human_span(0.0001), "1ms");
    assert_eq!(human_span(250.0), "4m 10s");
    assert_eq!(human_span(7500.0), "2h 05m");
    assert_eq!(human_span(273_600.0), "3d 04h");
    assert_eq!(human_span(-1.0), "0s");
    assert_eq!(human_span(f64::NAN), "0s");
}
