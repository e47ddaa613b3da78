//! What RabbitMQ's STOMP SUBSCRIBE headers ask of a queue the relay
//! declares: `durable:true` (or `persistent:true`) for a subscription that
//! outlives its session, `x-queue-name`, and queue arguments such as
//! `x-max-length` and `x-message-ttl`, as RabbitMQ's plugin honours them on
//! SUBSCRIBE and on a SEND to a queue it declares; and `x-stream-offset`,
//! where a consumer of a stream queue starts.

use stomp_parser::Headers;

/// Queue name prefixes clients may not name: `stomp.` is the relay's own
/// (session, node and dispatch queues; another session's queue named here
/// would hand its private messages to the client), `amq.` RabbitMQ's.
pub const RESERVED_QUEUE_PREFIXES: &[&str] = &["stomp.", "amq."];

/// Whether a client may not name this queue.
pub fn is_reserved_queue(name: &str) -> bool {
    RESERVED_QUEUE_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The numeric queue arguments a SUBSCRIBE may set.
const NUMBER_ARGUMENTS: &[&str] = &[
    "x-max-length",
    "x-max-length-bytes",
    "x-message-ttl",
    "x-expires",
    "x-max-priority",
];
/// The textual queue arguments a SUBSCRIBE may set.
const TEXT_ARGUMENTS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
];

/// One queue argument's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueArgument {
    Number(i64),
    Text(String),
}

/// How to declare the queue behind a subscription, when the relay
/// declares one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// A queue of the subscription's own, kept across disconnects and
    /// deleted by an UNSUBSCRIBE with `durable:true`.
    pub durable: bool,
    /// The queue's name (`x-queue-name`, or the session's choice for a
    /// durable subscription).
    pub name: Option<String>,
    pub arguments: Vec<(String, QueueArgument)>,
    /// Where a consumer of a stream queue starts reading.
    pub stream_offset: Option<StreamOffset>,
}

/// `x-stream-offset` on SUBSCRIBE, as RabbitMQ's plugin reads it; other
/// values are ignored, as it ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOffset {
    First,
    Last,
    Next,
    /// `offset=N`
    Offset(i64),
    /// `timestamp=T`, in seconds since the epoch.
    Timestamp(u64),
}

impl StreamOffset {
    fn parse(value: &str) -> Option<StreamOffset> {
        match value {
            "first" => Some(StreamOffset::First),
            "last" => Some(StreamOffset::Last),
            "next" => Some(StreamOffset::Next),
            _ => {
                if let Some(offset) = value.strip_prefix("offset=") {
                    offset.parse().ok().map(StreamOffset::Offset)
                } else {
                    let timestamp = value.strip_prefix("timestamp=")?;
                    timestamp.parse().ok().map(StreamOffset::Timestamp)
                }
            }
        }
    }
}

/// A SUBSCRIBE header the queue cannot be declared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidQueueHeader {
    pub header: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl QueueOptions {
    /// The queue of subscription `id` of `owner` (`None`: anonymous), as
    /// its SUBSCRIBE headers ask: a durable one without `x-queue-name` is
    /// named from its owner and id, so that the owner finds it again, and a
    /// client may not name the relay's or RabbitMQ's own queues.
    pub fn for_subscription(
        headers: &Headers,
        owner: Option<&str>,
        id: &str,
    ) -> Result<QueueOptions, InvalidQueueHeader> {
        let mut options = QueueOptions::from_headers(headers)?;
        if let Some(name) = options
            .name
            .as_deref()
            .filter(|name| is_reserved_queue(name))
        {
            return Err(InvalidQueueHeader {
                header: "x-queue-name",
                value: name.to_owned(),
                reason: "names starting with stomp. or amq. are reserved",
            });
        }
        if options.durable && options.name.is_none() {
            // The owner's length keeps "a.b" + "c" apart from "a" + "b.c".
            let owner = owner.unwrap_or("anonymous");
            options.name = Some(format!("stomp.durable.{}.{owner}.{id}", owner.len()));
        }
        Ok(options)
    }

    /// The queue a SEND to `/queue/{name}` declares when it is absent: with
    /// the queue arguments among the SEND's headers, as RabbitMQ's plugin
    /// declares it, so that a client declaring it later with the same
    /// arguments is not refused.
    pub fn for_send(headers: &Headers) -> Result<QueueOptions, InvalidQueueHeader> {
        Ok(QueueOptions {
            arguments: arguments(headers)?,
            ..QueueOptions::default()
        })
    }

    /// Reads the SUBSCRIBE headers.
    fn from_headers(headers: &Headers) -> Result<QueueOptions, InvalidQueueHeader> {
        Ok(QueueOptions {
            durable: asks_durable(headers),
            name: headers.get("x-queue-name").map(str::to_owned),
            arguments: arguments(headers)?,
            stream_offset: headers.get("x-stream-offset").and_then(StreamOffset::parse),
        })
    }
}

/// `durable:true` (or STOMP 1.0's `persistent:true`) on a SUBSCRIBE or
/// UNSUBSCRIBE.
pub fn asks_durable(headers: &Headers) -> bool {
    headers.boolean("durable") == Some(true) || headers.boolean("persistent") == Some(true)
}

/// The queue arguments among a frame's headers.
fn arguments(headers: &Headers) -> Result<Vec<(String, QueueArgument)>, InvalidQueueHeader> {
    let mut arguments = Vec::new();
    for &header in NUMBER_ARGUMENTS {
        if let Some(value) = headers.get(header) {
            let number = value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| InvalidQueueHeader {
                    header,
                    value: value.to_owned(),
                    reason: "expected a non-negative number",
                })?;
            arguments.push((header.to_owned(), QueueArgument::Number(number)));
        }
    }
    for &header in TEXT_ARGUMENTS {
        if let Some(value) = headers.get(header) {
            arguments.push((header.to_owned(), QueueArgument::Text(value.to_owned())));
        }
    }
    Ok(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_subscribe_headers_are_read() {
        let headers: Headers = [
            ("durable", "true"),
            ("x-queue-name", "mine"),
            ("x-max-length", "10"),
            ("x-dead-letter-exchange", "dlx"),
            ("x-unknown", "ignored"),
        ]
        .into_iter()
        .collect();
        let options = QueueOptions::from_headers(&headers).unwrap();
        assert!(options.durable);
        assert_eq!(options.name.as_deref(), Some("mine"));
        assert_eq!(
            options.arguments,
            [
                ("x-max-length".to_owned(), QueueArgument::Number(10)),
                (
                    "x-dead-letter-exchange".to_owned(),
                    QueueArgument::Text("dlx".into())
                ),
            ]
        );
        let persistent: Headers = [("persistent", "true")].into_iter().collect();
        assert!(QueueOptions::from_headers(&persistent).unwrap().durable);
    }

    #[test]
    fn durable_queues_are_named_by_owner_and_id_and_reserved_names_refused() {
        let durable: Headers = [("durable", "true")].into_iter().collect();
        let named = |owner, id| {
            QueueOptions::for_subscription(&durable, owner, id)
                .unwrap()
                .name
                .unwrap()
        };
        assert_eq!(named(Some("a.b"), "c"), "stomp.durable.3.a.b.c");
        assert_ne!(named(Some("a.b"), "c"), named(Some("a"), "b.c"));
        assert_eq!(named(None, "x"), "stomp.durable.9.anonymous.x");
        let reserved: Headers = [("x-queue-name", "stomp.session.x")].into_iter().collect();
        let refused = QueueOptions::for_subscription(&reserved, None, "x").unwrap_err();
        assert_eq!(refused.header, "x-queue-name");
    }

    #[test]
    fn stream_offsets_are_read_as_rabbitmq_reads_them() {
        for (value, expected) in [
            ("first", Some(StreamOffset::First)),
            ("last", Some(StreamOffset::Last)),
            ("next", Some(StreamOffset::Next)),
            ("offset=5000", Some(StreamOffset::Offset(5000))),
            ("timestamp=1000", Some(StreamOffset::Timestamp(1000))),
            ("foo", None),
            ("offset=x", None),
        ] {
            assert_eq!(StreamOffset::parse(value), expected, "{value}");
        }
    }

    #[test]
    fn a_bad_number_names_its_header() {
        let headers: Headers = [("x-message-ttl", "soon")].into_iter().collect();
        let invalid = QueueOptions::for_send(&headers).unwrap_err();
        assert_eq!(
            (invalid.header, invalid.value.as_str()),
            ("x-message-ttl", "soon")
        );
    }
}
