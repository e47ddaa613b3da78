//! What RabbitMQ's STOMP SUBSCRIBE headers ask of a queue the relay
//! declares: `durable:true` (or `persistent:true`) for a subscription that
//! outlives its session, `x-queue-name`, and queue arguments such as
//! `x-max-length` and `x-message-ttl`, as RabbitMQ's plugin honours them.

use stomp_parser::Headers;

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
}

impl QueueOptions {
    /// Reads the SUBSCRIBE headers; the error names the header at fault.
    pub fn from_headers(headers: &Headers) -> Result<QueueOptions, (&'static str, String)> {
        let flag = |name| headers.get(name) == Some("true");
        let mut options = QueueOptions {
            durable: flag("durable") || flag("persistent"),
            name: headers.get("x-queue-name").map(str::to_owned),
            arguments: Vec::new(),
        };
        for &name in NUMBER_ARGUMENTS {
            if let Some(value) = headers.get(name) {
                let number = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or((name, value.to_owned()))?;
                options
                    .arguments
                    .push((name.to_owned(), QueueArgument::Number(number)));
            }
        }
        for &name in TEXT_ARGUMENTS {
            if let Some(value) = headers.get(name) {
                options
                    .arguments
                    .push((name.to_owned(), QueueArgument::Text(value.to_owned())));
            }
        }
        Ok(options)
    }
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
    fn a_bad_number_names_its_header() {
        let headers: Headers = [("x-message-ttl", "soon")].into_iter().collect();
        assert_eq!(
            QueueOptions::from_headers(&headers),
            Err(("x-message-ttl", "soon".to_owned()))
        );
    }
}
