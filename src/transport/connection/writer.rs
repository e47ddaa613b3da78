//! The writing half of a connection: a task of its own that drains
//! everything queued for the client into one write, and keeps the
//! outgoing heart-beat.
//!
//! The driver never waits for the client's socket: it queues encoded frames
//! in [`Outgoing`] and goes on. The writer takes every frame that is ready
//! at once and hands them to the transport together (one flush: one
//! syscall for many small frames). A client that stops reading leaves
//! frames queued; past the driver's bound it stops taking deliveries, the
//! broker's outbox fills, and the session ends as a slow consumer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{TransportClosed, sleep_until_some};

/// How a transport writes: many encoded frames (or heart-beat EOLs) at
/// once, in order.
pub trait TransportWriter: Send + 'static {
    /// Sends `frames` in order and flushes once. An error means the client
    /// has gone.
    fn send(
        &mut self,
        frames: Vec<Bytes>,
    ) -> impl Future<Output = Result<(), TransportClosed>> + Send;

    /// Closes the connection once what was sent is flushed, saying why
    /// where the transport can.
    fn close(&mut self, why: Closing) -> impl Future<Output = ()> + Send;
}

/// Why the relay closes a connection, for transports that say it (a
/// WebSocket close code).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Closing {
    /// The session ended: DISCONNECT, an ERROR, shutdown.
    #[default]
    Normal,
    /// The client sent a message over the size limit.
    TooLarge,
}

/// What the driver has queued for the writer; cloning shares it.
#[derive(Clone, Default)]
pub struct Outgoing {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// The writer has something to do.
    ready: Notify,
    /// The writer took a batch: the queue has room again.
    drained: Notify,
    /// The client is gone (a write failed).
    gone: Notify,
}

#[derive(Default)]
struct Queue {
    frames: Vec<Bytes>,
    heart_beat: Option<Duration>,
    /// Close once the queue is written, and why.
    finish: Option<Closing>,
    gone: bool,
}

impl Outgoing {
    /// Queues one encoded frame; answers how many now wait.
    pub fn push(&self, frame: Bytes) -> usize {
        let waiting = {
            let mut queue = self.shared.queue.lock();
            queue.frames.push(frame);
            queue.frames.len()
        };
        self.shared.ready.notify_one();
        waiting
    }

    /// Frames queued and not yet taken by the writer.
    pub fn waiting(&self) -> usize {
        self.shared.queue.lock().frames.len()
    }

    /// Completes when the writer has taken what was queued.
    pub async fn drained(&self) {
        self.shared.drained.notified().await
    }

    /// Completes when the client has gone.
    pub async fn gone(&self) {
        if self.shared.queue.lock().gone {
            return;
        }
        self.shared.gone.notified().await
    }

    /// Sends a heart-beat EOL whenever nothing else was written for
    /// `interval`.
    pub fn set_heart_beat(&self, interval: Option<Duration>) {
        self.shared.queue.lock().heart_beat = interval;
        self.shared.ready.notify_one();
    }

    /// Writes what is queued, then closes the connection.
    pub fn finish(&self, why: Closing) {
        self.shared.queue.lock().finish = Some(why);
        self.shared.ready.notify_one();
    }
}

/// Writes what `outgoing` queues until it is finished or the client goes;
/// gives the writer back.
pub async fn run<W: TransportWriter>(mut writer: W, outgoing: Outgoing) -> W {
    let shared = &outgoing.shared;
    let mut last_write = Instant::now();
    loop {
        let heart_beat = shared.queue.lock().heart_beat;
        let deadline = heart_beat.map(|interval| last_write + interval);
        let beat = tokio::select! {
            () = shared.ready.notified() => false,
            () = sleep_until_some(deadline) => true,
        };
        let (mut frames, finish) = {
            let mut queue = shared.queue.lock();
            (std::mem::take(&mut queue.frames), queue.finish)
        };
        shared.drained.notify_one();
        if frames.is_empty() && beat {
            frames.push(Bytes::from_static(b"\n"));
        }
        if !frames.is_empty() {
            if writer.send(frames).await.is_err() {
                shared.queue.lock().gone = true;
                shared.gone.notify_one();
                return writer;
            }
            last_write = Instant::now();
        }
        // What was queued while that write ran goes out before the close.
        if let Some(why) = finish
            && shared.queue.lock().frames.is_empty()
        {
            writer.close(why).await;
            return writer;
        }
    }
}
