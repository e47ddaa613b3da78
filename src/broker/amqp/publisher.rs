//! Publishing on confirm-mode channels, pipelined and in order.
//!
//! Each publisher channel is a lane, owned by one task: publishes handed to
//! a lane are queued on the connection in the order they arrive, without
//! waiting for one to be written before the next is queued, so that the
//! connection writes many in one go; the caller gets the publisher confirm
//! to await later. Publishes with one [`OrderKey`](crate::broker::OrderKey)
//! always use one lane.
//!
//! A lane also answers what lapin cannot with many confirms outstanding:
//! which mandatory publish RabbitMQ returned as unroutable. lapin hands a
//! returned message to whichever confirm its acknowledgement resolves
//! first, and one `basic.ack` with `multiple` resolves many at once, in no
//! set order. RabbitMQ sends a message's `basic.return` before any
//! acknowledgement that covers it, so by the time every publish up to a
//! given one has been confirmed, its return (if any) has reached one of
//! the confirms resolved so far. The lane answers confirms in publish
//! order, and before answering one it collects the returns of every
//! confirm that has resolved, matching them to publishes by exchange and
//! routing key (two outstanding publishes to one key may swap answers,
//! which says the same thing of the same destination).

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
    mandatory: bool,
    message: Message,
    confirmed: oneshot::Sender<Result<bool, BrokerError>>,
}

/// RabbitMQ's answer to one publish, once it comes: whether a queue took
/// the message (always true when it was not mandatory).
pub(super) type Answer = oneshot::Receiver<Result<bool, BrokerError>>;

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
        mandatory: bool,
        message: Message,
    ) -> Result<Answer, BrokerError> {
        let (confirmed, answer) = oneshot::channel();
        let publish = Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory,
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
pub(super) async fn confirmed(answer: Answer) -> Result<bool, BrokerError> {
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
    returnable: Option<(ShortString, ShortString)>,
    answer: oneshot::Sender<Result<bool, BrokerError>>,
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
        let (exchange, routing_key) = (publish.exchange.clone(), publish.routing_key.clone());
        let options = BasicPublishOptions {
            mandatory: publish.mandatory,
            ..BasicPublishOptions::default()
        };
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
            returnable: publish
                .mandatory
                .then_some((publish.exchange, publish.routing_key)),
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
        let Some(Writing {
            returnable, answer, ..
        }) = writing.pop_front()
        else {
            break;
        };
        match written {
            Ok(confirm) => window.push(Outstanding {
                confirm,
                outcome: None,
                seen_by: 0,
                returnable,
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
    outcome: Option<Outcome>,
    /// The scan by the end of which it was seen resolved.
    seen_by: u64,
    /// Where a return of it would say it went: set for mandatory publishes.
    returnable: Option<(ShortString, ShortString)>,
    answer: oneshot::Sender<Result<bool, BrokerError>>,
}

enum Outcome {
    Ack,
    Nack,
    Failed(lapin::Error),
}

/// A lane's outstanding publishes, oldest first, and the returns not yet
/// matched to one of them.
#[derive(Default)]
struct Window {
    outstanding: VecDeque<Outstanding>,
    /// Exchange and routing key of each returned message not yet matched.
    returned: Vec<(ShortString, ShortString)>,
    /// Scans of the window completed.
    scans: u64,
    /// The latest scan by which every publish answered so far (and the one
    /// to answer next) was seen resolved.
    horizon: u64,
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
                // Resolved before the next scan starts.
                front.seen_by = self.scans;
                front.outcome = Some(outcome_of(result, &mut self.returned));
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Answers, oldest first, every resolved publish that can be answered.
    fn answer_resolved(&mut self) {
        loop {
            let Some(front) = self.outstanding.front() else {
                if !self.returned.is_empty() {
                    // Every return belongs to a publish of the window: one
                    // left over would wrongly answer a later publish.
                    tracing::debug!(
                        left = self.returned.len(),
                        "returned messages matched no publish"
                    );
                    self.returned.clear();
                }
                return;
            };
            if front.outcome.is_none() {
                return;
            }
            self.horizon = self.horizon.max(front.seen_by);
            if self.scans <= self.horizon {
                // A scan that starts after this publish and every earlier
                // one resolved sees every return that can be theirs.
                self.scan();
            }
            let Some(done) = self.outstanding.pop_front() else {
                return;
            };
            let answer = match done.outcome {
                Some(Outcome::Ack) => Ok(match &done.returnable {
                    Some(target) => !self.take_returned(target),
                    None => true,
                }),
                Some(Outcome::Nack) => Err(BrokerError::refused(
                    "the message broker did not accept the message",
                )),
                Some(Outcome::Failed(error)) => Err(unavailable("confirm a publish")(error)),
                None => Err(lane_gone()),
            };
            // A caller that stopped waiting needs no answer.
            let _ = done.answer.send(answer);
        }
    }

    /// Records every outstanding confirm that has resolved since the last
    /// scan, with its return.
    fn scan(&mut self) {
        self.scans += 1;
        for entry in self.outstanding.iter_mut() {
            if entry.outcome.is_some() {
                continue;
            }
            if let Some(result) = (&mut entry.confirm).now_or_never() {
                entry.seen_by = self.scans;
                entry.outcome = Some(outcome_of(result, &mut self.returned));
            }
        }
    }

    fn take_returned(&mut self, target: &(ShortString, ShortString)) -> bool {
        match self.returned.iter().position(|returned| returned == target) {
            Some(index) => {
                self.returned.swap_remove(index);
                true
            }
            None => false,
        }
    }
}

/// A resolved confirm, whose returned message (whoever it belongs to) goes
/// to `returned`.
fn outcome_of(
    result: lapin::Result<Confirmation>,
    returned: &mut Vec<(ShortString, ShortString)>,
) -> Outcome {
    match result {
        Ok(confirmation) => {
            let acked = !confirmation.is_nack();
            if let Some(message) = confirmation.take_message() {
                returned.push((message.delivery.exchange, message.delivery.routing_key));
            }
            if acked { Outcome::Ack } else { Outcome::Nack }
        }
        Err(error) => Outcome::Failed(error),
    }
}
