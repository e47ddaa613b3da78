//! STOMP headers <-> AMQP properties, as RabbitMQ's STOMP plugin maps them,
//! so that a message keeps its headers between a STOMP client and any AMQP
//! producer or consumer.
//!
//! | STOMP header | AMQP |
//! | --- | --- |
//! | `content-type`, `content-encoding` | the properties of those names |
//! | `persistent:true` | `delivery-mode` 2 (and back; `delivery-mode` 1 shows nothing) |
//! | `priority`, `correlation-id`, `reply-to`, `expiration`, `type`, `app-id`, `timestamp` | the properties of those names |
//! | `amqp-message-id` | `message-id` |
//! | `user-id` | the `user-id` property from AMQP; to AMQP an entry of the `headers` table (see below) |
//! | anything else | an entry of the `headers` table: a long string to AMQP; from AMQP, long strings and 32- and 64-bit integers, the rest left out |
//!
//! A `reply-to` from AMQP that is not a STOMP destination (an AMQP client's
//! reply queue) shows as `/reply-queue/{queue}`, which a STOMP client can
//! SEND its reply to.
//!
//! RabbitMQ checks the `user-id` property against the connection's user,
//! which for the relay is its own, not the client's: the session checks it
//! against the client's login instead, and it travels as a header.

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use stomp_parser::Headers;

use crate::broker::{FRAME_HEADERS, Message};

/// The AMQP properties for a STOMP message's headers.
pub fn to_amqp(headers: &Headers) -> BasicProperties {
    let mut properties = BasicProperties::default();
    let mut table = FieldTable::default();
    for (name, value) in headers.iter() {
        let short = || ShortString::from(value);
        properties = match name {
            "content-type" => properties.with_content_type(short()),
            "content-encoding" => properties.with_content_encoding(short()),
            "persistent" if matches!(value, "true" | "True") => properties.with_delivery_mode(2),
            "persistent" => properties,
            "priority" => match value.trim().parse() {
                Ok(priority) => properties.with_priority(priority),
                Err(_) => properties,
            },
            "correlation-id" => properties.with_correlation_id(short()),
            "reply-to" => properties.with_reply_to(short()),
            "expiration" => properties.with_expiration(short()),
            "amqp-message-id" => properties.with_message_id(short()),
            "type" => properties.with_type(short()),
            "app-id" => properties.with_app_id(short()),
            "timestamp" => match value.trim().parse() {
                Ok(timestamp) => properties.with_timestamp(timestamp),
                Err(_) => properties,
            },
            _ => {
                table.insert(
                    ShortString::from(name),
                    AMQPValue::LongString(LongString::from(value)),
                );
                properties
            }
        };
    }
    if table.inner().is_empty() {
        properties
    } else {
        properties.with_headers(table)
    }
}

/// The STOMP message for an AMQP delivery's properties and body.
pub fn from_amqp(properties: &BasicProperties, body: Vec<u8>) -> Message {
    Message {
        headers: headers_from_amqp(properties),
        body: Bytes::from(body),
    }
}

/// The headers a message has once carried as AMQP properties: what a
/// session sees of it whether it came in a message of its own or in an
/// envelope.
pub fn as_carried(headers: &Headers) -> Headers {
    headers_from_amqp(&to_amqp(headers))
}

/// The STOMP headers of AMQP properties.
fn headers_from_amqp(properties: &BasicProperties) -> Headers {
    let mut headers = Headers::new();
    let mut text = |name: &str, value: &Option<ShortString>| {
        if let Some(value) = value {
            headers.push(name, value.as_str());
        }
    };
    text("content-type", properties.content_type());
    text("content-encoding", properties.content_encoding());
    text("correlation-id", properties.correlation_id());
    text("expiration", properties.expiration());
    text("amqp-message-id", properties.message_id());
    text("type", properties.kind());
    text("app-id", properties.app_id());
    text("user-id", properties.user_id());
    if let Some(reply_to) = properties.reply_to() {
        let reply_to = reply_to.as_str();
        if STOMP_PREFIXES
            .iter()
            .any(|prefix| reply_to.starts_with(prefix))
        {
            headers.push("reply-to", reply_to);
        } else {
            headers.push("reply-to", &format!("/reply-queue/{reply_to}"));
        }
    }
    if properties.delivery_mode() == &Some(2) {
        headers.push("persistent", "true");
    }
    if let Some(priority) = properties.priority() {
        headers.push("priority", &priority.to_string());
    }
    if let Some(timestamp) = properties.timestamp() {
        headers.push("timestamp", &timestamp.to_string());
    }
    if let Some(table) = properties.headers() {
        // The relay writes those on each MESSAGE itself.
        let own = table
            .inner()
            .iter()
            .filter(|(name, _)| !FRAME_HEADERS.contains(&name.as_str()));
        for (name, value) in own {
            if let Some(value) = header_text(value) {
                headers.push(name.as_str(), &value);
            }
        }
    }
    headers
}

/// The destination prefixes a `reply-to` from AMQP may already have.
const STOMP_PREFIXES: &[&str] = &[
    "/exchange/",
    "/topic/",
    "/queue/",
    "/amq/queue/",
    "/temp-queue/",
    "/reply-queue/",
];

/// A header-table value as text, for the types RabbitMQ's plugin shows
/// (long strings, 32- and 64-bit signed integers); the rest are left out,
/// as it leaves them out.
fn header_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_survive_the_round_trip() {
        let headers: Headers = [
            ("content-type", "application/json"),
            ("persistent", "true"),
            ("priority", "5"),
            ("correlation-id", "c-1"),
            ("reply-to", "/temp-queue/x"),
            ("x-custom", "value"),
            ("user-name", "alice"),
        ]
        .into_iter()
        .collect();
        let properties = to_amqp(&headers);
        assert_eq!(
            properties.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(properties.delivery_mode(), &Some(2));
        let message = from_amqp(&properties, b"{}".to_vec());
        for (name, value) in headers.iter() {
            assert_eq!(message.headers.get(name), Some(value), "{name}");
        }
        assert_eq!(&message.body[..], b"{}");
    }

    #[test]
    fn amqp_header_values_show_as_rabbitmq_s_plugin_shows_them() {
        let mut table = FieldTable::default();
        table.insert("count".into(), AMQPValue::LongInt(42));
        table.insert("big".into(), AMQPValue::LongLongInt(1 << 40));
        table.insert("flag".into(), AMQPValue::Boolean(true));
        table.insert("ratio".into(), AMQPValue::Double(0.5));
        let properties = BasicProperties::default()
            .with_headers(table)
            .with_delivery_mode(1)
            .with_reply_to("amq.rabbitmq.reply-to.abc".into())
            .with_user_id("guest".into());
        let message = from_amqp(&properties, Vec::new());
        assert_eq!(message.headers.get("count"), Some("42"));
        let mut table = FieldTable::default();
        for own in ["content-length", "destination", "message-id", "ack"] {
            table.insert(own.into(), AMQPValue::LongString("forged".into()));
        }
        let forged = from_amqp(&BasicProperties::default().with_headers(table), Vec::new());
        assert!(
            forged.headers.is_empty(),
            "the relay's own headers are its own"
        );
        assert_eq!(message.headers.get("big"), Some("1099511627776"));
        assert_eq!(message.headers.get("flag"), None);
        assert_eq!(message.headers.get("ratio"), None);
        assert_eq!(message.headers.get("persistent"), None);
        assert_eq!(
            message.headers.get("reply-to"),
            Some("/reply-queue/amq.rabbitmq.reply-to.abc")
        );
        assert_eq!(message.headers.get("user-id"), Some("guest"));
        let stomp_reply: Headers = [("reply-to", "/topic/answers"), ("persistent", "false")]
            .into_iter()
            .collect();
        let properties = to_amqp(&stomp_reply);
        assert_eq!(properties.delivery_mode(), &None);
        let message = from_amqp(&properties, Vec::new());
        assert_eq!(message.headers.get("reply-to"), Some("/topic/answers"));
    }
}
