use tokio::sync::watch;

/// Why a build was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// Ctrl-C, SIGTERM, or a batch's fast-fail.
    Stopped,
}

/// The sending half: `cancel()` interrupts every `Cancel` made from it.
#[derive(Clone)]
pub struct Canceller(watch::Sender<Option<CancelReason>>);

/// The receiving half, handed to running builds.
#[derive(Clone)]
pub struct Cancel(watch::Receiver<Option<CancelReason>>);

impl Canceller {
    pub fn new() -> (Canceller, Cancel) {
        let (tx, rx) = watch::channel(None);
        (Canceller(tx), Cancel(rx))
    }

    pub fn cancel(&self, reason: CancelReason) {
        let _ = self.0.send(Some(reason));
    }
}

impl Cancel {
    /// A `Cancel` that never fires.
    pub fn never() -> Cancel {
        let (tx, rx) = watch::channel(None);
        // Keep the sender alive forever so `changed()` never errors out.
        std::mem::forget(tx);
        Cancel(rx)
    }

    /// Resolves when cancellation is requested.
    pub async fn cancelled(&mut self) -> CancelReason {
        loop {
            if let Some(r) = *self.0.borrow_and_update() {
                return r;
            }
            if self.0.changed().await.is_err() {
                // The sender is gone: nobody can cancel any more.
                std::future::pending::<()>().await;
            }
        }
    }
}
