//! Wake-ups inside one server process.
//!
//! A claim long-poll registers a [`Registration`] under every label key its agent can
//! take. A queued job wakes **one** waiter under its key (not every idle agent); a waiter
//! woken but gone before it claimed passes the wake-up on, and one that claimed a job of
//! another key passes its wake-up on too, so a queued job is never left with nobody
//! awake for it. Other notices (a cancel asked, log appended, job finished) go to a
//! broadcast that log followers and cancel watchers filter by job.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, Notify};

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A job was queued under this label key.
    Queued(String),
    /// A cancel was asked for this running job.
    Cancel(String),
    /// This job's log grew.
    Log(String),
    /// This job ended.
    Finished(String),
    /// The queue's pauses changed (paused or resumed): every replica reads them again.
    Paused,
}

impl Notice {
    /// The `NOTIFY` payload.
    pub fn encode(&self) -> String {
        match self {
            Notice::Queued(k) => format!("q:{k}"),
            Notice::Cancel(j) => format!("c:{j}"),
            Notice::Log(j) => format!("l:{j}"),
            Notice::Finished(j) => format!("f:{j}"),
            Notice::Paused => "p:".to_string(),
        }
    }

    pub fn decode(s: &str) -> Option<Notice> {
        let (kind, rest) = s.split_once(':')?;
        let rest = rest.to_string();
        Some(match kind {
            "q" => Notice::Queued(rest),
            "c" => Notice::Cancel(rest),
            "l" => Notice::Log(rest),
            "f" => Notice::Finished(rest),
            "p" => Notice::Paused,
            _ => return None,
        })
    }

    /// The job this notice is about (not for `Queued`).
    pub fn job(&self) -> Option<&str> {
        match self {
            Notice::Queued(_) | Notice::Paused => None,
            Notice::Cancel(j) | Notice::Log(j) | Notice::Finished(j) => Some(j),
        }
    }
}

#[derive(Default)]
struct WaiterState {
    /// The key it was woken for, until the waiter takes it.
    woken: Option<String>,
    gone: bool,
}

struct Waiter {
    notify: Notify,
    state: Mutex<WaiterState>,
}

impl Waiter {
    fn state(&self) -> MutexGuard<'_, WaiterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Waiters {
    by_key: HashMap<String, VecDeque<Arc<Waiter>>>,
    /// Registrations dropped but maybe still queued under other keys.
    dead: usize,
    live: usize,
}

/// The hub of one process.
pub struct Hub {
    waiters: Mutex<Waiters>,
    events: broadcast::Sender<Notice>,
    /// Counts [`Notice::Paused`] (its own channel: the queue's pause cache is no follower).
    pauses: tokio::sync::watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (events, _) = broadcast::channel(4096);
        Hub {
            waiters: Mutex::new(Waiters::default()),
            events,
            pauses: tokio::sync::watch::Sender::new(0),
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers a notice to this process's waiters.
    pub fn dispatch(&self, notice: Notice) {
        match notice {
            Notice::Queued(key) => self.wake(&key),
            Notice::Paused => self.pauses.send_modify(|n| *n = n.wrapping_add(1)),
            other => {
                // No receiver is fine: nobody is following that job here.
                let _ = self.events.send(other);
            }
        }
    }

    /// Log followers and cancel watchers subscribe here.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.events.subscribe()
    }

    /// Changes when the queue's pauses change (a [`Notice::Paused`] from any replica).
    pub fn pause_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.pauses.subscribe()
    }

    /// Wakes one live waiter registered under `key`.
    pub fn wake(&self, key: &str) {
        let mut g = self.waiters();
        let Some(queue) = g.by_key.get_mut(key) else {
            return;
        };
        while let Some(w) = queue.pop_front() {
            let mut s = w.state();
            if s.gone || s.woken.is_some() {
                continue;
            }
            s.woken = Some(key.to_string());
            drop(s);
            w.notify.notify_one();
            break;
        }
        if queue.is_empty() {
            g.by_key.remove(key);
        }
    }

    /// Wakes every waiter (after missed notices, e.g. a lost LISTEN connection).
    pub fn wake_all(&self) {
        let mut g = self.waiters();
        for (key, queue) in g.by_key.drain() {
            for w in queue {
                let mut s = w.state();
                if !s.gone && s.woken.is_none() {
                    s.woken = Some(key.clone());
                    drop(s);
                    w.notify.notify_one();
                }
            }
        }
    }

    /// Registers a claim waiter under `keys`.
    pub fn register(self: &Arc<Self>, keys: &[String]) -> Registration {
        let waiter = Arc::new(Waiter {
            notify: Notify::new(),
            state: Mutex::new(WaiterState::default()),
        });
        let mut g = self.waiters();
        for k in keys {
            g.by_key
                .entry(k.clone())
                .or_default()
                .push_back(waiter.clone());
        }
        g.live += 1;
        Registration {
            hub: self.clone(),
            waiter,
        }
    }

    /// Log followers and cancel watchers subscribed now (for tests and metrics).
    pub fn followers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Waiters registered now (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.waiters().live
    }

    fn unregister(&self) {
        let mut g = self.waiters();
        g.live = g.live.saturating_sub(1);
        g.dead += 1;
        if g.dead > 1024 && g.dead > g.live {
            for queue in g.by_key.values_mut() {
                queue.retain(|w| !w.state().gone);
            }
            g.by_key.retain(|_, q| !q.is_empty());
            g.dead = 0;
        }
    }
}

/// One claim long-poll's place in the queues; dropping it leaves them.
pub struct Registration {
    hub: Arc<Hub>,
    waiter: Arc<Waiter>,
}

impl Registration {
    /// Waits until woken; answers the key it was woken for. The caller owns that wake-up
    /// from here on (see [`Baton`]).
    pub async fn woken(&self) -> String {
        loop {
            if let Some(k) = self.waiter.state().woken.take() {
                return k;
            }
            self.waiter.notify.notified().await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let pass_on = {
            let mut s = self.waiter.state();
            s.gone = true;
            s.woken.take()
        };
        self.hub.unregister();
        if let Some(key) = pass_on {
            self.hub.wake(&key);
        }
    }
}

/// A wake-up taken by a waiter: unless [`Baton::used_for`] says the claim took a job of
/// that key, dropping it wakes another waiter for the key.
pub struct Baton {
    hub: Arc<Hub>,
    key: Option<String>,
}

impl Baton {
    pub fn new(hub: Arc<Hub>, key: String) -> Baton {
        Baton {
            hub,
            key: Some(key),
        }
    }

    /// The claim answered: `Some(key)` of the job it took, or `None` (nothing left: the
    /// job was taken by someone else, and the wake-up is spent).
    pub fn used_for(mut self, claimed_key: Option<&str>) {
        match (self.key.take(), claimed_key) {
            (Some(k), Some(c)) if k != c => self.hub.wake(&k),
            _ => {}
        }
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.hub.wake(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_job_wakes_one_waiter_and_a_dropped_wake_passes_on() {
        let hub = Arc::new(Hub::new());
        let a = hub.register(&["".into(), "os=linux".into()]);
        let b = hub.register(&["".into()]);
        hub.wake("");
        let first = tokio::time::timeout(Duration::from_secs(5), a.woken())
            .await
            .unwrap();
        assert_eq!(first, "");
        // b was not woken.
        assert!(tokio::time::timeout(Duration::from_millis(50), b.woken())
            .await
            .is_err());
        // a's wake-up is dropped unused: it goes to b.
        drop(Baton::new(hub.clone(), first));
        let second = tokio::time::timeout(Duration::from_secs(5), b.woken())
            .await
            .unwrap();
        assert_eq!(second, "");
        drop(a);
        drop(b);
        assert_eq!(hub.waiting(), 0);
    }

    #[test]
    fn notices_round_trip_through_notify_payloads() {
        for n in [
            Notice::Queued("os=linux,size=large".into()),
            Notice::Queued(String::new()),
            Notice::Cancel("j".into()),
            Notice::Log("j".into()),
            Notice::Finished("j".into()),
            Notice::Paused,
        ] {
            assert_eq!(Notice::decode(&n.encode()), Some(n));
        }
    }
}
