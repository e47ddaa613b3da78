//! Publishing on confirm-mode channels, pipelined and in order.
//!
//! Each publisher channel is a lane, owned by one task: publishes handed to
//! a lane are queued on the connection in the order they arrive, without
//! waiting for one to be written before the next is queued, so that the
//! connection writes many in one go; the caller gets the publisher confirm
//! to await later. Publishes with one [`OrderKey`](crate::broker::OrderKey)
//! always use one lane.
//!

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use lapin::options::BasicPublishOptions;

use lapin::types::ShortString;
use lapin::{Channel, Confirmation, PublisherConfirm};
use tokio::sync::{mpsc, oneshot};

use super::connection::{Link, open_channel, unavailable};
use super::{BrokerError, Inner, Message, OrderKey, properties};

/// Publishes that may wait for a busy lane before their callers wait too.
const LANE_BACKLOG: usize = 256;

/// Publishes a lane has queued on the connection and not yet had
/// confirmed, at most: past it, the lane takes no more until RabbitMQ
/// catches up, and its callers wait.
const MAX_UNCONFIRMED: usize = 4096;

/// Publishes a lane takes from its backlog in one go.
const TAKE_AT_ONCE: usize = 64;

/// The sending end of one publisher lane.
pub(super) struct PublisherLane {
    requests: mpsc::Sender<Publish>,
}

/// One publish handed to a lane.
struct Publish {
    exchange: ShortString,
    routing_key: ShortString,
    message: Message,
    confirmed: oneshot::Sender<Result<(), BrokerError>>,
}

/// RabbitMQ's answer to one publish, once it comes: that it took the
/// message.
pub(super) type Answer = oneshot::Receiver<Result<(), BrokerError>>;

impl PublisherLane {
    /// Opens the lane's channel in confirm mode; the returned task must be
    /// spawned (once the broker's state exists) for the lane to publish.
    pub(super) async fn open(link: &Link) -> Result<(PublisherLane, LaneTask), BrokerError> {
        let channel = open_channel(link, true).await?;
        let (requests, received) = mpsc::channel(LANE_BACKLOG);
        let task = LaneTask {
            channel,
            requests: received,
            writing: VecDeque::new(),
            window: Window::default(),
        };
        Ok((PublisherLane { requests }, task))
    }

    /// Hands a message to the lane, after every publish handed to this lane
    /// before it; waits only while the lane's backlog is full.
    pub(super) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<Answer, BrokerError> {
        let (confirmed, answer) = oneshot::channel();
        let publish = Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            message,
            confirmed,
        };
        if self.requests.send(publish).await.is_err() {
            return Err(lane_gone());
        }
        Ok(answer)
    }
}

impl Inner {
    /// The lane of every publish with this key.
    pub(super) fn publisher(&self, order: OrderKey) -> &PublisherLane {
        let index = order.0 % self.publishers.len() as u64;
        &self.publishers[index as usize]
    }
}

/// Waits for a lane's answer to one publish.
pub(super) async fn confirmed(answer: Answer) -> Result<(), BrokerError> {
    answer.await.map_err(|_| lane_gone())?
}

/// The answer a lane that stopped gives.
pub(super) fn lane_gone() -> BrokerError {
    BrokerError::Unavailable {
        what: "publish (its publisher channel has stopped)",
        source: None,
    }
}

/// A publish queued on the connection: its confirm comes once lapin has
/// written it.
struct Writing {
    written: Pin<Box<dyn Future<Output = lapin::Result<PublisherConfirm>> + Send>>,
    answer: oneshot::Sender<Result<(), BrokerError>>,
}

/// The task that owns a lane's channel: it publishes, and answers
/// confirms in publish order.
pub(super) struct LaneTask {
    channel: Channel,
    requests: mpsc::Receiver<Publish>,
    /// Queued on the connection, oldest first (the order of their delivery
    /// tags); each joins the window once written.
    writing: VecDeque<Writing>,
    window: Window,
}

impl LaneTask {
    /// Runs until the broker is dropped, then answers what is outstanding.
    /// `inner` reopens the channel when RabbitMQ has closed it.
    pub(super) async fn run(mut self, inner: Weak<Inner>) {
        loop {
            let room = self.writing.len() + self.window.len() < MAX_UNCONFIRMED;
            tokio::select! {
                // Answers first, so that callers hear as soon as possible.
                biased;
                () = std::future::poll_fn(|cx| poll_progress(&mut self.writing, &mut self.window, cx)) => {
                    self.window.answer_resolved();
                }
                request = self.requests.recv(), if room => match request {
                    Some(publish) => {
                        self.publish(publish, &inner).await;
                        for _ in 1..TAKE_AT_ONCE {
                            let Ok(publish) = self.requests.try_recv() else {
                                break;
                            };
                            self.publish(publish, &inner).await;
                        }
                    }
                    None => break,
                },
            }
        }
        while !self.writing.is_empty() || !self.window.is_empty() {
            std::future::poll_fn(|cx| poll_progress(&mut self.writing, &mut self.window, cx)).await;
            self.window.answer_resolved();
        }
    }

    /// Queues a publish on the connection, behind every earlier one.
    async fn publish(&mut self, publish: Publish, inner: &Weak<Inner>) {
        if !self.channel.status().connected() {
            // After a lost connection, held back until it is restored (or
            // for the link's patience): the caller hears either way.
            let reopened = match inner.upgrade() {
                Some(inner) => match inner.link.until_up().await {
                    Ok(()) => open_channel(&inner.link, true).await,
                    Err(error) => Err(error),
                },
                None => Err(lane_gone()),
            };
            match reopened {
                Ok(channel) => self.channel = channel,
                Err(error) => {
                    let _ = publish.confirmed.send(Err(error));
                    return;
                }
            }
        }
        let channel = self.channel.clone();
        let (exchange, routing_key) = (publish.exchange, publish.routing_key);
        let options = BasicPublishOptions::default();
        let properties = properties::to_amqp(&publish.message.headers);
        let body = publish.message.body;
        let mut written: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
            channel
                .basic_publish(exchange, routing_key, options, &body, properties)
                .await
        });
        // Polled once now: that takes its delivery tag and queues its frames
        // on the connection, before the next publish's; lapin resolves it
        // once they are written.
        if let Poll::Ready(result) =
            std::future::poll_fn(|cx| Poll::Ready(written.as_mut().poll(cx))).await
        {
            written = Box::pin(std::future::ready(result));
        }
        self.writing.push_back(Writing {
            written,
            answer: publish.confirmed,
        });
    }
}

/// Moves the publishes written since the last call into the window, and
/// is ready once that moved any or the window's oldest confirm has
/// resolved.
fn poll_progress(
    writing: &mut VecDeque<Writing>,
    window: &mut Window,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let mut progressed = false;
    // lapin writes a connection's publishes in the order they were queued,
    // so the oldest is written first.
    while let Some(front) = writing.front_mut() {
        let Poll::Ready(written) = front.written.as_mut().poll(cx) else {
            break;
        };
        let Some(Writing { answer, .. }) = writing.pop_front() else {
            break;
        };
        match written {
            Ok(confirm) => window.push(Outstanding {
                confirm,
                outcome: None,
                answer,
            }),
            Err(error) => {
                let _ = answer.send(Err(unavailable("publish")(error)));
            }
        }
        progressed = true;
    }
    if window.poll_front_resolved(cx).is_ready() || progressed {
        Poll::Ready(())
    } else {
        Poll::Pending
    }
}

/// A publish whose confirm has not been answered yet.
struct Outstanding {
    confirm: PublisherConfirm,
    /// Its confirm, once resolved.
    outcome: Option<lapin::Result<Confirmation>>,
    answer: oneshot::Sender<Result<(), BrokerError>>,
}

/// A lane's outstanding publishes, oldest first: answered in publish
/// order, so that a caller that awaits a later confirm knows the earlier
/// ones have been answered.
#[derive(Default)]
struct Window {
    outstanding: VecDeque<Outstanding>,
}

impl Window {
    fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }

    fn push(&mut self, outstanding: Outstanding) {
        self.outstanding.push_back(outstanding);
    }

    fn len(&self) -> usize {
        self.outstanding.len()
    }

    /// Ready once the oldest outstanding confirm has resolved; pending while
    /// there is none.
    fn poll_front_resolved(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(front) = self.outstanding.front_mut() else {
            return Poll::Pending;
        };
        if front.outcome.is_some() {
            return Poll::Ready(());
        }
        match front.confirm.poll_unpin(cx) {
            Poll::Ready(result) => {
                front.outcome = Some(result);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Answers, oldest first, every resolved publish up to the first that
    /// is not resolved yet.
    fn answer_resolved(&mut self) {
        while let Some(front) = self.outstanding.front_mut() {
            let outcome = match front.outcome.take() {
                Some(outcome) => outcome,
                None => match (&mut front.confirm).now_or_never() {
                    Some(outcome) => outcome,
                    None => return,
                },
            };
            let Some(done) = self.outstanding.pop_front() else {
                return;
            };
            let answer = match outcome {
                Ok(confirmation) if confirmation.is_nack() => Err(BrokerError::refused(
                    "the message broker did not accept the message",
                )),
                Ok(_) => Ok(()),
                Err(error) => Err(unavailable("confirm a publish")(error)),
            };
            // A caller that stopped waiting needs no answer.
            let _ = done.answer.send(answer);
        }
    }
}
