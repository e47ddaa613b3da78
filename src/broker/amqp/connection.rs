//! The node's one AMQP connection, replaced when it is lost (see
//! `recovery`), and the few channels every session shares: channel slots
//! that reopen what RabbitMQ closes, on whichever connection is current.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use parking_lot::RwLock;
use tokio::sync::watch;

use super::{BrokerError, Inner, SessionId};
use crate::broker::OrderKey;
use crate::error::source_of;

/// How long an operation waits for a lost connection to come back before
/// it fails: a SEND in that time is published once the broker is back.
const PATIENCE: Duration = Duration::from_secs(10);

/// How long connecting to one broker may take.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// How long closing a replaced connection may take.
const CLOSE_PATIENCE: Duration = Duration::from_secs(1);

/// The node's connection to RabbitMQ: the current one, and whether the
/// relay's topology is in place on it.
pub(super) struct Link {
    /// The brokers to connect to, and which of them the current connection
    /// is to: a lost connection is replaced by one to the next that
    /// answers, so that a RabbitMQ node that went away is tried last.
    urls: Vec<String>,
    connected_to: AtomicUsize,
    name: String,
    current: RwLock<Arc<Connection>>,
    /// False from the moment the connection is found lost until a new one
    /// carries everything the old one did.
    up: watch::Sender<bool>,
    /// Set once the node shuts down: the closed connection is not replaced.
    closing: AtomicBool,
}

/// A connection's lifecycle events, watched for its loss.
pub(super) type Events = std::pin::Pin<Box<dyn Stream<Item = lapin::Event> + Send>>;

impl Link {
    /// Connects, naming the connection after the node (as RabbitMQ's
    /// management shows it).
    pub(super) async fn open(
        urls: &[String],
        node_id: &str,
    ) -> Result<(Link, Events), BrokerError> {
        let name = format!("stomp-relay {node_id}");
        let start = first_broker(node_id, urls.len());
        let (index, connection, events) = connect_to_any(urls, start, &name).await?;
        let link = Link {
            urls: urls.to_vec(),
            connected_to: AtomicUsize::new(index),
            name,
            current: RwLock::new(Arc::new(connection)),
            up: watch::Sender::new(true),
            closing: AtomicBool::new(false),
        };
        Ok((link, events))
    }

    /// Makes a new connection the current one (still marked down until its
    /// topology is restored).
    pub(super) async fn reconnect(&self) -> Result<Events, BrokerError> {
        let after = self.connected_to.load(Ordering::Acquire) + 1;
        let (index, connection, events) = connect_to_any(&self.urls, after, &self.name).await?;
        self.connected_to.store(index, Ordering::Release);
        let old = std::mem::replace(&mut *self.current.write(), Arc::new(connection));
        // Closing it ends its channels and consumers, if the broker had
        // not already; a connection that no longer answers is not waited
        // for.
        let _ = tokio::time::timeout(CLOSE_PATIENCE, old.close(200, "replaced".into())).await;
        Ok(events)
    }

    pub(super) fn connection(&self) -> Arc<Connection> {
        self.current.read().clone()
    }

    pub(super) fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    pub(super) fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// Waits, for a while, until the connection is up.
    pub(super) async fn until_up(&self) -> Result<(), BrokerError> {
        if self.is_up() {
            return Ok(());
        }
        let mut up = self.up.subscribe();
        match tokio::time::timeout(PATIENCE, up.wait_for(|up| *up)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(BrokerError::Unavailable {
                what: "reach RabbitMQ (the connection is lost and not yet back)",
                source: None,
            }),
        }
    }

    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub(super) async fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let _ = self
            .connection()
            .close(200, "stomp-relay shutting down".into())
            .await;
    }
}

/// Where in a list of `count` brokers the node `node_id` starts: a place
/// of its own, so that nodes given one list spread their node queues, and
/// the routing work that goes with them, over the brokers instead of all
/// landing on the first.
fn first_broker(node_id: &str, count: usize) -> usize {
    (OrderKey::of(&node_id).0 % count.max(1) as u64) as usize
}

/// A connection to the first of `urls` that answers, trying them in order
/// from `start` (round the list); its index in `urls` with it. The error is
/// the last one's.
async fn connect_to_any(
    urls: &[String],
    start: usize,
    name: &str,
) -> Result<(usize, Connection, Events), BrokerError> {
    let mut failure = BrokerError::Unavailable {
        what: "connect (no --amqp-url given)",
        source: None,
    };
    for index in (0..urls.len()).map(|offset| (start + offset) % urls.len()) {
        match connect(&urls[index], name).await {
            Ok((connection, events)) => {
                if urls.len() > 1 {
                    tracing::info!(broker = %address_of(&urls[index]), "connected to RabbitMQ");
                }
                return Ok((index, connection, events));
            }
            Err(error) => {
                if urls.len() > 1 {
                    tracing::warn!(broker = %address_of(&urls[index]), error = %crate::error::Chain(&error), "cannot connect to this RabbitMQ; trying the next");
                }
                failure = error;
            }
        }
    }
    Err(failure)
}

/// A broker URL's host and port, without its credentials, for the logs.
fn address_of(url: &str) -> String {
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(uri) => format!("{}:{}", uri.authority.host, uri.authority.port),
        Err(_) => "(an invalid URL)".to_owned(),
    }
}

async fn connect(url: &str, name: &str) -> Result<(Connection, Events), BrokerError> {
    // Each broker tried gets as long as the first did; a node that does not
    // answer at all must not hold up the next.
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let connection = tokio::time::timeout(CONNECT_PATIENCE, Connection::connect(url, properties))
        .await
        .map_err(|elapsed| BrokerError::Unavailable {
            what: "connect within 10 s",
            source: source_of(elapsed),
        })?
        .map_err(unavailable("connect"))?;
    let events = Box::pin(connection.events_listener());
    Ok((connection, events))
}

/// A channel that is replaced when RabbitMQ closes it (a refused declare or
/// publish closes the channel it ran on).
pub(super) struct ChannelSlot {
    channel: tokio::sync::Mutex<Channel>,
    confirms: bool,
}

impl ChannelSlot {
    pub(super) async fn open(link: &Link, confirms: bool) -> Result<ChannelSlot, BrokerError> {
        Ok(ChannelSlot {
            channel: tokio::sync::Mutex::new(open_channel(link, confirms).await?),
            confirms,
        })
    }

    /// The channel, reopened first (on the current connection) if it was
    /// closed. The lock is held while the caller works on it, so that
    /// consumers and their prefetch are set up one at a time per channel.
    pub(super) async fn lock(
        &self,
        link: &Link,
    ) -> Result<tokio::sync::MutexGuard<'_, Channel>, BrokerError> {
        let mut channel = self.channel.lock().await;
        if !channel.status().connected() {
            *channel = open_channel(link, self.confirms).await?;
        }
        Ok(channel)
    }

    pub(super) async fn get(&self, link: &Link) -> Result<Channel, BrokerError> {
        Ok(self.lock(link).await?.clone())
    }
}

/// A new channel on the current connection.
pub(super) async fn open_channel(link: &Link, confirms: bool) -> Result<Channel, BrokerError> {
    let channel = link
        .connection()
        .create_channel()
        .await
        .map_err(unavailable("open a channel"))?;
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable("put a channel in confirm mode"))?;
    }
    Ok(channel)
}

/// The error of an AMQP operation that failed while the broker tried to
/// `what`.
pub(super) fn unavailable(what: &'static str) -> impl FnOnce(lapin::Error) -> BrokerError {
    move |error| BrokerError::Unavailable {
        what,
        source: source_of(error),
    }
}

/// Waits until the connection these are the events of is lost, and says
/// why. A soft error closes one channel (a refused declare, say), which the
/// channel slots reopen; anything else ends the connection, and with it
/// the node's exclusive queues, its consumers and its unacknowledged
/// deliveries.
pub(super) async fn lost(events: &mut Events) -> String {
    while let Some(event) = events.next().await {
        match event {
            lapin::Event::Error(error) if error.is_amqp_soft_error() => {
                tracing::debug!(%error, "RabbitMQ closed a channel");
            }
            lapin::Event::Error(error) => return error.to_string(),
            lapin::Event::ConnectionBlocked(reason) => {
                tracing::warn!(%reason, "RabbitMQ blocks publishing (resource alarm)");
            }
            lapin::Event::ConnectionUnblocked => {
                tracing::info!("RabbitMQ accepts publishing again")
            }
            _ => {}
        }
    }
    "the connection ended".to_owned()
}

impl Inner {
    /// Spreads sessions over the consumer channels: all the consumers of a
    /// session are on the channel its id hashes to.
    pub(super) fn session_channel(&self, session: SessionId) -> usize {
        (OrderKey::of(&session).0 % self.consumers.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::first_broker;

    #[test]
    fn nodes_given_one_list_of_brokers_start_spread_over_it() {
        let mut starts = [0; 3];
        for n in 0..30 {
            starts[first_broker(&format!("relay-{n}"), 3)] += 1;
        }
        assert!(starts.iter().all(|&count| count >= 5), "{starts:?}");
        assert_eq!(first_broker("relay-1", 3), first_broker("relay-1", 3));
        assert_eq!(first_broker("relay-1", 1), 0);
    }
}
