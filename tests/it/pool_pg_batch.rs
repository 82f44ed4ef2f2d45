//! PostgreSQL group commit (src/pool/store/pg_batch.rs): claims and completions that
//! arrive together share transactions, and batching changes nothing about who gets what:
//! every job goes to one claimer whose labels match, every completion is fenced and
//! idempotent, and each change has exactly one outbox event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_pg;
use runner::pool::protocol::{claimable_keys, label_key, Conclusion, JobState};
use runner::pool::store::{Claimed, NewJob, Store, StoreConfig};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Transaction ids PostgreSQL has handed out so far: every transaction that wrote
/// something took one (and this query takes one itself).
async fn xids(url: &str) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

async fn scalar(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_pg_batch_concurrent_claims_and_completions_share_commits_and_stay_exact() {
    let url = support_pg::database().await;
    let store = Store::open(&StoreConfig { url: url.clone() })
        .await
        .unwrap();
    // 30 jobs anyone can take, 10 only a `pool=gpu` agent can.
    let gpu = labels(&[("pool", "gpu")]);
    let mut gpu_jobs = HashSet::new();
    for i in 0..40 {
        let job_labels = if i % 4 == 0 {
            gpu.clone()
        } else {
            BTreeMap::new()
        };
        let id = format!("job-{i:02}");
        if i % 4 == 0 {
            gpu_jobs.insert(id.clone());
        }
        store
            .submit(&NewJob {
                id,
                project: "p".into(),
                labels: job_labels,
                spec: "{}".into(),
                max_attempts: 1,
                change: Default::default(),
            })
            .await
            .unwrap();
    }

    // 50 claimers at once (30 plain, 20 gpu) for 40 jobs.
    let before = xids(&url).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        // Disjoint keys (a `pool=gpu` agent could also take unlabelled jobs; then who
        // gets what would depend on timing): 20 claimers for 10 gpu jobs, 30 for 30.
        let keys = if i < 20 {
            vec![label_key(&gpu)]
        } else {
            claimable_keys(&BTreeMap::new())
        };
        set.spawn(async move {
            let lease = format!("lease-{i}");
            let c = store
                .claim(
                    &format!("agent-{i}"),
                    &keys,
                    &lease,
                    Duration::from_secs(60),
                    None,
                    false,
                )
                .await
                .unwrap();
            (i, lease, c)
        });
    }
    let claims: Vec<(usize, String, Option<Claimed>)> = set.join_all().await;
    let claim_xids = xids(&url).await - before - 1;

    let got: Vec<&(usize, String, Option<Claimed>)> =
        claims.iter().filter(|(_, _, c)| c.is_some()).collect();
    assert_eq!(got.len(), 40, "every job claimed, 10 claimers got nothing");
    let ids: HashSet<&str> = got
        .iter()
        .map(|(_, _, c)| c.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids.len(), 40, "no job handed to two claimers");
    for (i, _, c) in &got {
        let c = c.as_ref().unwrap();
        assert_eq!(c.attempt, 1);
        assert_eq!(
            gpu_jobs.contains(&c.id),
            *i < 20,
            "job {} went to agent-{i} of the other label",
            c.id
        );
    }
    // Old code: each claim committed on its own, and its outbox event in a second
    // transaction (≥ 80 transactions for 40 claims).
    eprintln!("write transactions: 40 claims {claim_xids}");
    assert!(
        claim_xids < 40,
        "40 concurrent claims took {claim_xids} write transactions; they should share commits"
    );
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM attempts WHERE attempt = 1").await,
        40
    );

    // Every claimed job completed at once; some completions sent twice at the same time.
    let before = xids(&url).await;
    let mut set = tokio::task::JoinSet::new();
    for (n, (_, lease, c)) in got.iter().enumerate() {
        let c = c.as_ref().unwrap();
        let copies = if n % 5 == 0 { 2 } else { 1 };
        for _ in 0..copies {
            let (store, id, lease, attempt) =
                (store.clone(), c.id.clone(), lease.clone(), c.attempt);
            set.spawn(async move {
                let v = store
                    .complete(&id, attempt, &lease, Conclusion::Succeeded, 0, None, 0)
                    .await
                    .unwrap();
                (id, v)
            });
        }
    }
    let views = set.join_all().await;
    let complete_xids = xids(&url).await - before - 1;
    eprintln!("write transactions: 40 claims {claim_xids}, 40 completions {complete_xids}");
    assert_eq!(views.len(), 48);
    let mut by_job: HashMap<String, Vec<runner::pool::protocol::JobView>> = HashMap::new();
    for (id, v) in views {
        assert_eq!(v.state, JobState::Succeeded, "{id}");
        assert_eq!(v.attempts.len(), 1, "{id}");
        assert_eq!(v.attempts[0].outcome.as_deref(), Some("succeeded"), "{id}");
        by_job.entry(id).or_default().push(v);
    }
    assert_eq!(by_job.len(), 40);
    for (id, vs) in &by_job {
        // A repeated completion is answered the same view, not refused.
        assert!(vs.iter().all(|v| v == &vs[0]), "{id}: {vs:?}");
    }
    assert!(
        complete_xids < 40,
        "40 concurrent completions took {complete_xids} write transactions; they should share commits"
    );

    // Exactly one outbox event per change.
    assert_eq!(
        scalar(
            &url,
            "SELECT COUNT(*) FROM notify_events WHERE id LIKE '%/1/started'"
        )
        .await,
        40
    );
    assert_eq!(
        scalar(
            &url,
            "SELECT COUNT(*) FROM notify_events WHERE id LIKE '%/1/finished'"
        )
        .await,
        40
    );

    // A stale lease is still fenced through the batch path.
    let (_, lease, c) = got[0];
    let c = c.as_ref().unwrap();
    let err = store
        .complete(
            &c.id,
            c.attempt,
            "not-the-lease",
            Conclusion::Failed,
            1,
            None,
            0,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no longer holds its lease"),
        "{err}"
    );
    let again = store
        .complete(&c.id, c.attempt, lease, Conclusion::Succeeded, 0, None, 0)
        .await
        .unwrap();
    assert_eq!(again.state, JobState::Succeeded);
}
