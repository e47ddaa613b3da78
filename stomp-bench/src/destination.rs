//! Where a run's messages go on each kind of server: the relay's user
//! destinations, or RabbitMQ Web-STOMP's transient queues, which are the
//! nearest thing it has to one private destination per receiver.

use clap::ValueEnum;
use serde::Serialize;

/// The kind of server under test, which decides the destinations' shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// stomp-relay: per-user delivery through `/user/...` destinations.
    Relay,
    /// Plain RabbitMQ Web-STOMP: a transient `/queue/...` per receiver.
    Rabbitmq,
}

/// Headers that make RabbitMQ's `/queue/...` a transient queue, deleted
/// when its subscriber goes. RabbitMQ declares the queue on SUBSCRIBE and
/// again on every SEND, and refuses a declaration that differs from the
/// queue's, so SUBSCRIBE and SEND carry the same three. `exclusive:false`
/// must be said: a non-durable queue is exclusive to the subscriber's
/// connection unless told otherwise, and the sender's declaration of it is
/// then refused (RESOURCE_LOCKED).
const TRANSIENT_QUEUE: &str = "durable:false\nauto-delete:true\nexclusive:false\n";

/// One receiver's private destination in a run.
#[derive(Debug, Clone)]
pub struct PrivateDestination {
    /// Who the receiver logs in as (`None`: the `--login` given).
    pub login: Option<String>,
    /// What the receiver subscribes to.
    pub subscribe_to: String,
    /// What a sender sends to so that only this receiver gets it.
    pub send_to: String,
    /// Header lines (each ending in `\n`) that SUBSCRIBE and SEND carry.
    pub extra_headers: &'static str,
}

impl ServerKind {
    /// Receiver `n`'s own destination in run `run`, named `name`
    /// (`bench`, `x`, ...).
    pub fn private_destination(self, run: &str, n: usize, name: &str) -> PrivateDestination {
        match self {
            ServerKind::Relay => {
                let user = format!("u{n}-{run}");
                PrivateDestination {
                    send_to: format!("/user/{user}/queue/{name}"),
                    subscribe_to: format!("/user/queue/{name}"),
                    login: Some(user),
                    extra_headers: "",
                }
            }
            ServerKind::Rabbitmq => {
                let queue = format!("/queue/{name}-{run}-{n}");
                PrivateDestination {
                    login: None,
                    subscribe_to: queue.clone(),
                    send_to: queue,
                    extra_headers: TRANSIENT_QUEUE,
                }
            }
        }
    }

    /// The topic every subscriber of a fan-out run shares.
    pub fn topic(run: &str) -> String {
        format!("/topic/bench.{run}")
    }
}
