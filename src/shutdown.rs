//! The shutdown signal, passed to every connection task so that each can
//! tell its client why it is closing, and learn when they all have
//! (mini-redis's pattern).
//!
//! The clients are not all told at once: each connection's turn comes at
//! its own moment within the drain period, so that the reconnects a
//! rolling deploy causes reach the other nodes at an even rate, not as one
//! wave. A connection keeps serving its client until its turn.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Starts the shutdown and waits for every task holding a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    signal: watch::Sender<Option<Instant>>,
    done: mpsc::Receiver<()>,
}

/// A task's view of the shutdown signal. While any clone lives, shutdown is
/// not complete.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// When shutdown began, once it has.
    signal: watch::Receiver<Option<Instant>>,
    /// Over how long the connections' turns are spread.
    drain_period: Duration,
    _alive: mpsc::Sender<()>,
}

/// A trigger and the first receiver, whose turns are spread over
/// `drain_period`; clone the receiver for each task.
pub fn channel(drain_period: Duration) -> (ShutdownTrigger, Shutdown) {
    let (signal, receiver) = watch::channel(None);
    let (alive, done) = mpsc::channel(1);
    (
        ShutdownTrigger { signal, done },
        Shutdown {
            signal: receiver,
            drain_period,
            _alive: alive,
        },
    )
}

impl ShutdownTrigger {
    /// Tells every task to finish, each in its turn.
    pub fn signal(&self) {
        self.signal.send_replace(Some(Instant::now()));
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
    /// Completes once shutdown has begun and the turn of the task placed
    /// at `place` (a fraction of the drain period, from 0 to 1) has come.
    /// Asked again, it completes at the same moment.
    pub async fn turn(&mut self, place: f64) {
        // An error means the trigger is gone, which also means stopping.
        let began = match self.signal.wait_for(Option::is_some).await {
            Ok(began) => *began,
            Err(_) => None,
        };
        if let Some(began) = began {
            let offset = self.drain_period.mul_f64(place.clamp(0.0, 1.0));
            tokio::time::sleep_until(began + offset).await;
        }
    }
}
