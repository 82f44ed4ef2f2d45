//! The queue's pauses, in the database so every replica and a restarted server see them:
//! a pause names a label set (empty: every job) and holds every queued job that has
//! those labels; agents claim nothing it holds until it is resumed. Running jobs are not
//! touched. A change is announced as [`Notice::Paused`] (through `NOTIFY` on
//! PostgreSQL), so each replica reads the pauses again at once. The claim itself is not
//! changed: the server leaves held label keys out of an agent's claim (see
//! `crate::pool::server::queue`).

use super::{now_ms, Notice, Store, StoreError};
use super::{pg_ops, sqlite_ops, Backend};
use crate::pool::protocol::label_key;
use std::collections::BTreeMap;

/// One pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePause {
    /// The labels it holds (empty: every job).
    pub labels: BTreeMap<String, String>,
    /// When it was paused (ms).
    pub since_ms: i64,
}

/// Queued jobs of one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedGroup {
    pub key: String,
    pub count: i64,
    /// When the oldest was queued (ms).
    pub oldest_ms: i64,
}

/// A queued job, for the queue page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: String,
    pub project: String,
    pub key: String,
    pub queued_ms: i64,
}

/// The labels of a label key (`k=v,k=v`; keys and values hold neither `,` nor `=`).
pub fn key_labels(key: &str) -> BTreeMap<String, String> {
    key.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl QueuePause {
    /// Whether this pause holds jobs queued under `key`: they have every label it names.
    pub fn holds(&self, key: &str) -> bool {
        if self.labels.is_empty() {
            return true;
        }
        let job = key_labels(key);
        self.labels.iter().all(|(k, v)| job.get(k) == Some(v))
    }
}

impl Store {
    /// Pauses the jobs with `labels` (empty: all), on every replica.
    pub async fn pause_queue(&self, labels: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let key = label_key(labels);
        let now = now_ms();
        let key = key.as_str();
        write_op!(self, None, pause_queue(r key, v now))?;
        self.notify(Notice::Paused).await;
        Ok(())
    }

    /// Resumes the pause of exactly `labels`, or every pause (`None`); how many ended.
    pub async fn resume_queue(
        &self,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<u64, StoreError> {
        let key = labels.map(label_key);
        let key = key.as_deref();
        let n = write_op!(self, None, resume_queue(o key))?;
        self.notify(Notice::Paused).await;
        Ok(n)
    }

    /// The pauses now in force.
    pub async fn queue_pauses(&self) -> Result<Vec<QueuePause>, StoreError> {
        let rows = read_op!(self, queue_pauses())?;
        Ok(rows
            .into_iter()
            .map(|(key, since_ms)| QueuePause {
                labels: key_labels(&key),
                since_ms,
            })
            .collect())
    }

    /// Queued jobs per label key, the longest waiting first.
    pub async fn queued_groups(&self) -> Result<Vec<QueuedGroup>, StoreError> {
        let rows = read_op!(self, queued_groups())?;
        Ok(rows
            .into_iter()
            .map(|(key, count, oldest_ms)| QueuedGroup {
                key,
                count,
                oldest_ms,
            })
            .collect())
    }

    /// The `limit` longest waiting queued jobs.
    pub async fn queued_jobs(&self, limit: u32) -> Result<Vec<QueuedJob>, StoreError> {
        let rows = read_op!(self, queued_jobs(i64::from(limit)))?;
        Ok(rows
            .into_iter()
            .map(|(id, project, key, queued_ms)| QueuedJob {
                id,
                project,
                key,
                queued_ms,
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::pool::store::StoreConfig;

    #[test]
    fn a_pause_holds_the_keys_that_have_its_labels() {
        let all = QueuePause {
            labels: BTreeMap::new(),
            since_ms: 0,
        };
        assert!(all.holds("") && all.holds("os=linux"));
        let linux = QueuePause {
            labels: key_labels("os=linux"),
            since_ms: 0,
        };
        assert!(linux.holds("os=linux"));
        assert!(linux.holds("arch=arm64,os=linux"));
        assert!(!linux.holds(""));
        assert!(!linux.holds("os=windows"));
        assert!(!linux.holds("os=linux2"));
    }

    #[tokio::test]
    async fn pauses_are_stored_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("jobs.db").display().to_string();
        let store = Store::open(&StoreConfig { url: url.clone() })
            .await
            .unwrap();
        let changes = store.hub().pause_changes();
        let linux = key_labels("os=linux");
        store.pause_queue(&linux).await.unwrap();
        assert!(changes.has_changed().unwrap());
        store.pause_queue(&BTreeMap::new()).await.unwrap();
        drop(store);
        let store = Store::open(&StoreConfig { url }).await.unwrap();
        let keys: Vec<_> = store
            .queue_pauses()
            .await
            .unwrap()
            .into_iter()
            .map(|p| label_key(&p.labels))
            .collect();
        assert_eq!(keys, vec!["".to_string(), "os=linux".to_string()]);
        assert_eq!(store.resume_queue(Some(&linux)).await.unwrap(), 1);
        assert_eq!(store.resume_queue(None).await.unwrap(), 1);
        assert!(store.queue_pauses().await.unwrap().is_empty());
    }
}
