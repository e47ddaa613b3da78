//! What a client writes in `destination` (and `reply-to`), read into what it
//! means, following RabbitMQ's STOMP plugin so that existing STOMP.js and
//! Spring code works unchanged. The table is in `docs/clients.md`
//! (Destinations).

use uuid::Uuid;

mod session_key;

use super::queue_options::{QueueOptions, is_reserved_queue};
pub use session_key::{SESSION_KEYS, SessionKey, USERS_EXCHANGE};

/// The exchange of `/topic/` destinations.
pub const TOPIC_EXCHANGE: &str = "amq.topic";
/// Where `/app/...` SENDs go, for backend services to consume.
pub const INBOUND_EXCHANGE: &str = "stomp.inbound";
/// Where a message to everyone goes: one publish, with the user-destination
/// name as its routing key, that every node receives (a fanout exchange its
/// node queue is bound to) and gives to each of its sessions subscribed to
/// that user destination. Only dispatch publishes here; no client may name
/// it, or any client could write to every user.
pub const EVERYONE_EXCHANGE: &str = "stomp.everyone";

/// The destination a MESSAGE names for what was published to `exchange`
/// with `routing_key`, as RabbitMQ's STOMP plugin names it: a topic for
/// `amq.topic`, a queue for the default exchange, and the bare exchange when
/// there is no routing key.
pub fn published_destination(exchange: &str, routing_key: &str) -> String {
    if exchange.is_empty() {
        format!("/queue/{routing_key}")
    } else if exchange == TOPIC_EXCHANGE {
        format!("/topic/{routing_key}")
    } else if routing_key.is_empty() {
        format!("/exchange/{exchange}")
    } else {
        format!("/exchange/{exchange}/{routing_key}")
    }
}

/// RabbitMQ's direct reply-to pseudo-queues, which an AMQP client names as
/// its `reply-to`.
pub const DIRECT_REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to";

/// Longest name or routing key AMQP allows (a short string).
pub const MAX_NAME_LEN: usize = 255;

/// Longest node id (`--node-id`).
pub const MAX_NODE_ID_LEN: usize = 64;

/// Longest user-destination name: its routing key,
/// `stomp.{node}.{session}.{name}` ([`SessionKey`]), must fit in
/// [`MAX_NAME_LEN`] whatever the node's id.
pub const MAX_USER_DESTINATION_LEN: usize =
    MAX_NAME_LEN - "stomp.".len() - MAX_NODE_ID_LEN - ".".len() - 36 - ".".len();

/// The destination kinds, as RabbitMQ's plugin names them in errors, and
/// their prefixes.
const KINDS: &[(&str, &str)] = &[
    ("topic", "/topic/"),
    ("exchange", "/exchange/"),
    ("queue", "/queue/"),
    ("amqqueue", "/amq/queue/"),
    ("app", "/app/"),
    ("reply_queue", "/reply-queue/"),
    ("user", "/user/"),
];

/// A parsed destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `/topic/{key}`: `amq.topic` with routing key `key` (wildcards allowed
    /// when subscribing).
    Topic { key: String },
    /// `/exchange/{exchange}/{key}`; the key may be empty (fanout exchanges).
    Exchange { exchange: String, key: String },
    /// `/queue/{name}`: a shared queue whose subscribers compete.
    Queue { name: String },
    /// `/amq/queue/{name}`: an existing queue, not declared by the relay.
    AmqQueue { name: String },
    /// `/user/queue/{name}` or `/user/topic/{name}` (SUBSCRIBE): messages for
    /// this session only.
    OwnUser { name: String },
    /// `/user/{user}/queue/{name}` (SEND): every live session of `user`.
    User { user: String, name: String },
    /// `/app/{key}` (SEND): to backend services on `stomp.inbound`.
    App { key: String },
    /// `/reply-queue/{key}` (SEND): a reply to a session that sent with
    /// `reply-to:/temp-queue/...` (`key` is the session key the relay gave it),
    /// or to the queue an AMQP client named as its `reply-to`.
    ReplyQueue { key: String },
}

/// The user-destination name prefix of temporary reply queues, so that a
/// reply address can reach a temp queue and nothing else of its session.
pub const TEMP_QUEUE_PREFIX: &str = "temp-queue.";

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// RabbitMQ's words, with the relay's own kinds added.
    #[error(
        "'{0}' is not a valid destination.\nValid destination types are: /temp-queue, /exchange, /topic, /queue, /amq/queue, /reply-queue/, /user/, /app/."
    )]
    Unknown(String),
    /// An empty name, or one nested below its kind (`/queue/a/b`): RabbitMQ's
    /// words, naming what follows the kind (`/a/b`) and the kind.
    #[error("'{rest}' is not a valid {kind} destination")]
    Invalid { kind: &'static str, rest: String },
    #[error("destination {0:?} has a name longer than AMQP allows")]
    TooLong(String),
    #[error("destination {0:?} contains a control character")]
    ControlCharacter(String),
    #[error("destination {0:?} cannot be used with {1}")]
    WrongCommand(String, &'static str),
    #[error("routing key {0:?} is reserved for the relay's sessions (stomp.#)")]
    SessionKey(String),
    #[error(
        "destination {0:?} names a queue or exchange reserved for the relay or RabbitMQ (stomp.*, amq.*, amq.default)"
    )]
    Reserved(String),
}

impl Destination {
    pub fn parse(text: &str) -> Result<Destination, DestinationError> {
        // A kind with nothing after it, not even its slash, is an empty
        // name of that kind, as RabbitMQ reads it.
        if let Some(&(kind, _)) = KINDS
            .iter()
            .find(|(_, prefix)| prefix.strip_suffix('/') == Some(text))
        {
            return Err(DestinationError::Invalid {
                kind,
                rest: String::new(),
            });
        }
        let Some((kind, rest)) = KINDS
            .iter()
            .find_map(|&(kind, prefix)| Some((kind, text.strip_prefix(prefix)?)))
        else {
            return Err(DestinationError::Unknown(text.to_owned()));
        };
        let invalid = || DestinationError::Invalid {
            kind,
            rest: format!("/{rest}"),
        };
        let named = |name: &str| -> Result<String, DestinationError> {
            if name.is_empty() {
                Err(invalid())
            } else if name.len() > MAX_NAME_LEN {
                Err(DestinationError::TooLong(text.to_owned()))
            } else if name.chars().any(char::is_control) {
                Err(DestinationError::ControlCharacter(text.to_owned()))
            } else {
                Ok(name.to_owned())
            }
        };
        // One level below the kind, as RabbitMQ's STOMP plugin reads them:
        // `/queue/a/b`, `/topic/a/b`, `/exchange/a/b/c` are refused.
        let unnested = |name: &str| -> Result<String, DestinationError> {
            if name.contains('/') {
                Err(invalid())
            } else {
                named(name)
            }
        };
        let queue = |name: &str| -> Result<String, DestinationError> {
            if is_reserved_queue(name) {
                Err(DestinationError::Reserved(text.to_owned()))
            } else {
                unnested(name)
            }
        };
        match kind {
            "topic" => Ok(Destination::Topic {
                key: unnested(rest)?,
            }),
            "exchange" => {
                let (exchange, key) = rest.split_once('/').unwrap_or((rest, ""));
                let key = if key.is_empty() {
                    String::new()
                } else {
                    unnested(key)?
                };
                // The default exchange would reach any queue by name; the
                // relay's own (stomp.everyone, stomp.dispatch, stomp.inbound)
                // every user, or everything sent to /app/.
                if exchange == "amq.default" || exchange.starts_with("stomp.") {
                    return Err(DestinationError::Reserved(text.to_owned()));
                }
                Ok(Destination::Exchange {
                    exchange: named(exchange)?,
                    key,
                })
            }
            "queue" => Ok(Destination::Queue { name: queue(rest)? }),
            "amqqueue" => Ok(Destination::AmqQueue { name: queue(rest)? }),
            "app" => Ok(Destination::App { key: named(rest)? }),
            "reply_queue" => Ok(Destination::ReplyQueue { key: named(rest)? }),
            _ => {
                let user_named = |name: &str| {
                    if name.len() > MAX_USER_DESTINATION_LEN {
                        Err(DestinationError::TooLong(text.to_owned()))
                    } else {
                        named(name)
                    }
                };
                if let Some(name) = user_kind_suffix(rest) {
                    return Ok(Destination::OwnUser {
                        name: user_named(name)?,
                    });
                }
                if let Some((user, rest)) = rest.split_once('/')
                    && let Some(name) = user_kind_suffix(rest)
                {
                    return Ok(Destination::User {
                        user: named(user)?,
                        name: user_named(name)?,
                    });
                }
                Err(DestinationError::Unknown(text.to_owned()))
            }
        }
    }

    /// Whether a client may SUBSCRIBE here, and if not, why.
    pub fn check_subscribe(&self, text: &str) -> Result<(), DestinationError> {
        match self {
            Destination::User { .. } | Destination::App { .. } | Destination::ReplyQueue { .. } => {
                Err(DestinationError::WrongCommand(text.to_owned(), "SUBSCRIBE"))
            }
            Destination::Topic { key } | Destination::Exchange { key, .. }
                if SessionKey::is_reserved(key) =>
            {
                Err(DestinationError::SessionKey(key.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Whether a client may SEND here, and if not, why.
    pub fn check_send(&self, text: &str) -> Result<(), DestinationError> {
        match self {
            Destination::OwnUser { .. } => Err(DestinationError::WrongCommand(
                text.to_owned(),
                "SEND (send to /user/{username}/queue/{name})",
            )),
            Destination::Topic { key } | Destination::Exchange { key, .. }
                if SessionKey::is_reserved(key) =>
            {
                Err(DestinationError::SessionKey(key.clone()))
            }
            // A session key only as the reply address of a temp queue; a queue
            // of the relay's or RabbitMQ's only as RabbitMQ's direct
            // reply-to address.
            Destination::ReplyQueue { key } => match SessionKey::parse(key) {
                Some(session_key) if !session_key.name.starts_with(TEMP_QUEUE_PREFIX) => {
                    Err(DestinationError::Unknown(text.to_owned()))
                }
                None if is_reserved_queue(key) && !key.starts_with(DIRECT_REPLY_TO_PREFIX) => {
                    Err(DestinationError::Reserved(text.to_owned()))
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl Destination {
    /// Where a SEND to this destination publishes; `None` for user
    /// destinations, which go through dispatch.
    pub fn publish_target(&self) -> Option<super::PublishTarget> {
        use super::PublishTarget;
        let exchange = |exchange: &str, key: &str| PublishTarget::Exchange {
            exchange: exchange.to_owned(),
            routing_key: key.to_owned(),
        };
        match self {
            Destination::Topic { key } => Some(exchange(TOPIC_EXCHANGE, key)),
            Destination::Exchange {
                exchange: name,
                key,
            } => Some(exchange(name, key)),
            Destination::App { key } => Some(exchange(INBOUND_EXCHANGE, key)),
            // A temp queue's reply address is its session's key; any
            // other names the queue an AMQP client asked replies on, which
            // the default exchange reaches, as with RabbitMQ.
            Destination::ReplyQueue { key } if SessionKey::parse(key).is_some() => {
                Some(exchange(USERS_EXCHANGE, key))
            }
            Destination::ReplyQueue { key } => Some(exchange("", key)),
            Destination::Queue { name } => Some(PublishTarget::Queue {
                name: name.clone(),
                declare: Some(QueueOptions::default()),
            }),
            Destination::AmqQueue { name } => Some(PublishTarget::Queue {
                name: name.clone(),
                declare: None,
            }),
            Destination::OwnUser { .. } | Destination::User { .. } => None,
        }
    }
}

/// `queue/{name}` or `topic/{name}` -> `name`.
fn user_kind_suffix(rest: &str) -> Option<&str> {
    rest.strip_prefix("queue/")
        .or_else(|| rest.strip_prefix("topic/"))
}

/// The temporary reply queue `name` of a session (`reply-to:/temp-queue/{name}`
/// on a SEND): a user destination of the session, and the address a
/// responder replies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempQueue {
    /// `/temp-queue/{name}`: the subscription id and destination its
    /// replies arrive with, as with RabbitMQ.
    pub text: String,
    /// The user-destination name it listens on.
    pub user_name: String,
    /// `/reply-queue/{session key}`: what the responder sees in `reply-to`.
    pub reply_address: String,
}

impl TempQueue {
    /// `None` when `name` cannot name a queue. `node` is the session's.
    pub fn new(name: &str, node: &str, session: Uuid) -> Option<TempQueue> {
        let user_name = format!("{TEMP_QUEUE_PREFIX}{name}");
        Destination::parse(&format!("/user/queue/{user_name}")).ok()?;
        let key = SessionKey::new(node, session, &user_name);
        Some(TempQueue {
            text: format!("/temp-queue/{name}"),
            reply_address: format!("/reply-queue/{key}"),
            user_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Destination {
        Destination::parse(text).unwrap()
    }

    #[test]
    fn every_destination_of_the_table() {
        assert_eq!(
            parse("/topic/chat.general"),
            Destination::Topic {
                key: "chat.general".into()
            }
        );
        assert_eq!(
            parse("/exchange/amq.direct/key.x"),
            Destination::Exchange {
                exchange: "amq.direct".into(),
                key: "key.x".into()
            }
        );
        assert_eq!(
            parse("/exchange/amq.fanout"),
            Destination::Exchange {
                exchange: "amq.fanout".into(),
                key: String::new()
            }
        );
        assert_eq!(
            parse("/queue/jobs"),
            Destination::Queue {
                name: "jobs".into()
            }
        );
        assert_eq!(
            parse("/amq/queue/legacy"),
            Destination::AmqQueue {
                name: "legacy".into()
            }
        );
        assert_eq!(
            parse("/user/queue/notes"),
            Destination::OwnUser {
                name: "notes".into()
            }
        );
        assert_eq!(
            parse("/user/topic/notes"),
            Destination::OwnUser {
                name: "notes".into()
            }
        );
        assert_eq!(
            parse("/user/alice/queue/private"),
            Destination::User {
                user: "alice".into(),
                name: "private".into()
            }
        );
        assert_eq!(
            parse("/app/orders.new"),
            Destination::App {
                key: "orders.new".into()
            }
        );
    }

    fn invalid(kind: &'static str, rest: &str) -> DestinationError {
        DestinationError::Invalid {
            kind,
            rest: rest.to_owned(),
        }
    }

    #[test]
    fn refusals_are_told_in_rabbitmq_s_words() {
        let refused = |text| Destination::parse(text).unwrap_err().to_string();
        assert_eq!(
            refused("/queue/a/b"),
            "'/a/b' is not a valid queue destination"
        );
        assert_eq!(
            refused("/amq/queue/"),
            "'/' is not a valid amqqueue destination"
        );
        assert!(refused("/nowhere").starts_with(
            "'/nowhere' is not a valid destination.\nValid destination types are: /temp-queue, /exchange, /topic, /queue, /amq/queue, /reply-queue/"
        ));
    }

    #[test]
    fn bad_destinations_say_why() {
        for (text, expected) in [
            ("/nowhere/x", DestinationError::Unknown("/nowhere/x".into())),
            ("/topic/", invalid("topic", "/")),
            ("queue/x", DestinationError::Unknown("queue/x".into())),
            (
                "/user/alice/inbox",
                DestinationError::Unknown("/user/alice/inbox".into()),
            ),
            (
                "/queue/a\u{7}",
                DestinationError::ControlCharacter("/queue/a\u{7}".into()),
            ),
            (
                "/exchange/stomp.everyone/news",
                DestinationError::Reserved("/exchange/stomp.everyone/news".into()),
            ),
            (
                "/exchange/stomp.dispatch/x",
                DestinationError::Reserved("/exchange/stomp.dispatch/x".into()),
            ),
            ("/queue/a/b", invalid("queue", "/a/b")),
            ("/topic/a/b", invalid("topic", "/a/b")),
            ("/exchange/a/b/c", invalid("exchange", "/a/b/c")),
            ("/exchange/", invalid("exchange", "/")),
            ("/queue/", invalid("queue", "/")),
            ("/queue", invalid("queue", "")),
            ("/topic", invalid("topic", "")),
        ] {
            assert_eq!(Destination::parse(text), Err(expected));
        }
        let long = format!("/queue/{}", "x".repeat(256));
        assert_eq!(
            Destination::parse(&long),
            Err(DestinationError::TooLong(long))
        );
        // A user destination's routing key adds its node and session.
        let name = "x".repeat(MAX_USER_DESTINATION_LEN);
        assert!(Destination::parse(&format!("/user/queue/{name}")).is_ok());
        let long = format!("/user/queue/{name}x");
        assert_eq!(
            Destination::parse(&long),
            Err(DestinationError::TooLong(long))
        );
    }

    #[test]
    fn no_one_subscribes_to_or_forges_a_session_key() {
        let key = SessionKey::new("n1", Uuid::new_v4(), "notes").to_string();
        let text = format!("/topic/{key}");
        let destination = parse(&text);
        assert!(matches!(
            destination.check_subscribe(&text),
            Err(DestinationError::SessionKey(_))
        ));
        assert!(matches!(
            destination.check_send(&text),
            Err(DestinationError::SessionKey(_))
        ));
        for reserved in [
            "/topic/stomp",
            "/topic/stomp.n1",
            "/exchange/amq.topic/stomp.x",
        ] {
            assert!(parse(reserved).check_send(reserved).is_err(), "{reserved}");
            assert!(
                parse(reserved).check_subscribe(reserved).is_err(),
                "{reserved}"
            );
        }
        for free in ["/topic/stompy", "/topic/x.stomp"] {
            assert!(parse(free).check_send(free).is_ok(), "{free}");
        }
        let own_exchange = format!("/exchange/{USERS_EXCHANGE}/{key}");
        assert_eq!(
            Destination::parse(&own_exchange),
            Err(DestinationError::Reserved(own_exchange.clone()))
        );
    }

    #[test]
    fn reply_queues_reach_temp_queues_and_amqp_reply_queues_only() {
        let session = Uuid::new_v4();
        let temp = TempQueue::new("answers", "n1", session).unwrap();
        let reply = temp.reply_address;
        assert_eq!(
            reply,
            format!("/reply-queue/stomp.n1.{session}.temp-queue.answers")
        );
        assert!(parse(&reply).check_send(&reply).is_ok());
        assert!(parse(&reply).check_subscribe(&reply).is_err());
        assert_eq!(
            parse(&reply).publish_target(),
            Some(crate::broker::PublishTarget::Exchange {
                exchange: USERS_EXCHANGE.into(),
                routing_key: reply["/reply-queue/".len()..].into()
            })
        );
        let user = format!("/reply-queue/stomp.n1.{session}.private");
        assert!(parse(&user).check_send(&user).is_err());
        for (text, allowed) in [
            ("/reply-queue/amq.rabbitmq.reply-to.g1h2", true),
            ("/reply-queue/billing.replies", true),
            ("/reply-queue/stomp.node.n1", false),
            ("/reply-queue/amq.gen-abc", false),
        ] {
            assert_eq!(parse(text).check_send(text).is_ok(), allowed, "{text}");
        }
        assert_eq!(
            parse("/reply-queue/billing.replies").publish_target(),
            Some(crate::broker::PublishTarget::Exchange {
                exchange: String::new(),
                routing_key: "billing.replies".into()
            })
        );
    }

    #[test]
    fn each_command_has_its_destinations() {
        assert!(parse("/user/bob/queue/x").check_subscribe("").is_err());
        assert!(parse("/app/x").check_subscribe("").is_err());
        assert!(parse("/user/queue/x").check_send("").is_err());
        assert!(parse("/topic/a.*").check_subscribe("").is_ok());
    }
}
