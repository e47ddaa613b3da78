//! The shutdown signal, passed to every connection task so that each can
//! tell its client why it is closing, and learn when they all have
//! (mini-redis's pattern).

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Starts the shutdown and waits for every task holding a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    signal: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

/// A task's view of the shutdown signal. While any clone lives, shutdown is
/// not complete.
#[derive(Debug, Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

/// A trigger and the first receiver; clone the receiver for each task.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (signal, receiver) = watch::channel(false);
    let (alive, done) = mpsc::channel(1);
    (
        ShutdownTrigger { signal, done },
        Shutdown {
            signal: receiver,
            _alive: alive,
        },
    )
}

impl ShutdownTrigger {
    /// Tells every task to finish.
    pub fn signal(&self) {
        self.signal.send_replace(true);
    }

    /// Waits until every [`Shutdown`] is dropped (or `patience` runs out).
    /// False when some task was still running.
    pub async fn wait(mut self, patience: Duration) -> bool {
        tokio::time::timeout(patience, self.done.recv())
            .await
            .is_ok()
    }
}

impl Shutdown {
    /// Completes once shutdown has begun (at once if it already has).
    pub async fn recv(&mut self) {
        // An error means the trigger is gone, which also means stopping.
        let _ = self.signal.wait_for(|stopping| *stopping).await;
    }
}
