//! STOMP headers <-> AMQP properties, as RabbitMQ's STOMP plugin maps them,
//! so that a message keeps its headers between a STOMP client and any AMQP
//! producer or consumer.
//!
//! | STOMP header | AMQP |
//! | --- | --- |
//! | `content-type`, `content-encoding` | the properties of those names |
//! | `persistent:true` | `delivery-mode` 2 |
//! | `priority`, `correlation-id`, `reply-to`, `expiration`, `type`, `app-id`, `timestamp` | the properties of those names |
//! | `amqp-message-id` | `message-id` |
//! | anything else | an entry of the `headers` table (a long string) |

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use stomp_parser::Headers;

use crate::broker::Message;

/// The AMQP properties for a STOMP message's headers.
pub fn to_amqp(headers: &Headers) -> BasicProperties {
    let mut properties = BasicProperties::default();
    let mut table = FieldTable::default();
    for (name, value) in headers.iter() {
        let short = || ShortString::from(value);
        properties = match name {
            "content-type" => properties.with_content_type(short()),
            "content-encoding" => properties.with_content_encoding(short()),
            "persistent" => properties.with_delivery_mode(if value == "true" { 2 } else { 1 }),
            "priority" => match value.parse() {
                Ok(priority) => properties.with_priority(priority),
                Err(_) => properties,
            },
            "correlation-id" => properties.with_correlation_id(short()),
            "reply-to" => properties.with_reply_to(short()),
            "expiration" => properties.with_expiration(short()),
            "amqp-message-id" => properties.with_message_id(short()),
            "type" => properties.with_type(short()),
            "app-id" => properties.with_app_id(short()),
            "timestamp" => match value.parse() {
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
    let mut headers = Headers::new();
    let mut text = |name: &str, value: &Option<ShortString>| {
        if let Some(value) = value {
            headers.push(name, value.as_str());
        }
    };
    text("content-type", properties.content_type());
    text("content-encoding", properties.content_encoding());
    text("correlation-id", properties.correlation_id());
    text("reply-to", properties.reply_to());
    text("expiration", properties.expiration());
    text("amqp-message-id", properties.message_id());
    text("type", properties.kind());
    text("app-id", properties.app_id());
    text("user-id", properties.user_id());
    if let Some(mode) = properties.delivery_mode() {
        headers.push("persistent", if *mode == 2 { "true" } else { "false" });
    }
    if let Some(priority) = properties.priority() {
        headers.push("priority", &priority.to_string());
    }
    if let Some(timestamp) = properties.timestamp() {
        headers.push("timestamp", &timestamp.to_string());
    }
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            if let Some(value) = header_text(value) {
                headers.push(name.as_str(), &value);
            }
        }
    }
    Message {
        headers,
        body: Bytes::from(body),
    }
}

/// A header-table value as text; nested tables and arrays are left out, as
/// RabbitMQ's plugin leaves them out.
fn header_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::ShortString(text) => text.as_str().to_owned(),
        AMQPValue::Boolean(flag) => flag.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
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
    fn plain_amqp_header_values_become_text() {
        let mut table = FieldTable::default();
        table.insert("count".into(), AMQPValue::LongInt(42));
        table.insert("flag".into(), AMQPValue::Boolean(true));
        let properties = BasicProperties::default().with_headers(table);
        let message = from_amqp(&properties, Vec::new());
        assert_eq!(message.headers.get("count"), Some("42"));
        assert_eq!(message.headers.get("flag"), Some("true"));
    }
}
