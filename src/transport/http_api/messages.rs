//! Sending through the API: to one user, to several or everyone, to a
//! topic. A message's recipients are counted only once it was handed to
//! them: nothing is refused after it was sent.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use stomp_parser::Headers;
use warp::Reply;

use super::body::parse;
use super::errors::ApiError;
use super::{ApiServices, user_name};
use crate::broker::destination::Destination;
use crate::broker::{Message, OrderKey, is_relay_header};
use crate::dispatch::{DispatchError, DispatchReport, WhenOffline, user_destination};
use crate::transport::Response;

/// The most users one `POST /api/v1/messages` may name.
pub const MAX_USERS: usize = 10_000;

/// `POST /api/v1/users/{user}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserMessage {
    /// `/user/queue/{name}`, `/user/topic/{name}` or just `{name}`.
    destination: String,
    body: serde_json::Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    persist: bool,
}

/// `POST /api/v1/messages`: to a list of users, or to everyone connected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkMessage {
    destination: String,
    body: serde_json::Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    persist: bool,
    #[serde(default)]
    users: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

/// `POST /api/v1/topics/{key}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicMessage {
    body: serde_json::Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What a send did.
#[derive(Debug, Serialize)]
struct Sent {
    /// Sessions the message was published to.
    sessions: usize,
    /// Users addressed who had no live session.
    offline_users: usize,
    /// Offline users for whom the message was kept (`persist`).
    kept: usize,
}

/// `POST /api/v1/users/{user}/messages`: to every live session of `user`.
pub async fn to_user(
    user: String,
    body: Bytes,
    services: &ApiServices,
) -> Result<Response, ApiError> {
    user_name(&user)?;
    let request: UserMessage = parse(&body)?;
    let (name, message) = user_message(&request.destination, request.body, request.headers)?;
    let when_offline = WhenOffline::from_persist(request.persist);
    sent(
        services
            .dispatcher
            .to_user(&user, &name, message, when_offline)
            .await,
    )
}

/// `POST /api/v1/messages`: to the users named, or to everyone connected.
pub async fn to_many(body: Bytes, services: &ApiServices) -> Result<Response, ApiError> {
    let request: BulkMessage = parse(&body)?;
    let (name, message) = user_message(&request.destination, request.body, request.headers)?;
    let when_offline = WhenOffline::from_persist(request.persist);
    let report = match (request.users, request.all) {
        (Some(users), false) if users.len() <= MAX_USERS => {
            let users = distinct_users(users)?;
            services
                .dispatcher
                .to_users(&users, &name, message, when_offline, None)
                .await
        }
        (Some(_), false) => return Err(ApiError::TooManyUsers(MAX_USERS)),
        (None, true) if request.persist => return Err(ApiError::PersistForEveryone),
        (None, true) => {
            // Every node gives it to its own sessions: this one cannot count
            // the others', so the answer says only that it was published.
            services
                .dispatcher
                .to_everyone(&name, message)
                .await
                .map_err(ApiError::unavailable)?;
            return Ok(published());
        }
        _ => return Err(ApiError::NoRecipients),
    };
    sent(report)
}

/// `POST /api/v1/topics/{key}/messages`: to `/topic/{key}`, as a STOMP SEND
/// there would.
pub async fn to_topic(
    key: String,
    body: Bytes,
    services: &ApiServices,
) -> Result<Response, ApiError> {
    let request: TopicMessage = parse(&body)?;
    let destination = format!("/topic/{key}");
    let parsed = Destination::parse(&destination).map_err(ApiError::BadTopic)?;
    parsed
        .check_send(&destination)
        .map_err(ApiError::BadTopic)?;
    let target = parsed
        .publish_target()
        .ok_or_else(|| ApiError::NotATopic(destination.clone()))?;
    let mut message = message(request.body, request.headers)?;
    services
        .dispatcher
        .record_topics([(&target, &mut message)])
        .await
        .map_err(ApiError::unavailable)?;
    // Publishes to one topic keep their order among themselves.
    services
        .broker
        .publish(OrderKey::of(&destination), target, message)
        .await
        .map_err(ApiError::unavailable)?
        .await
        .map_err(ApiError::unavailable)?;
    Ok(published())
}

/// The users a body names, each checked and each once, in the order given.
fn distinct_users(users: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut seen = HashSet::with_capacity(users.len());
    let mut distinct = Vec::with_capacity(users.len());
    for user in users {
        user_name(&user)?;
        if seen.insert(user.clone()) {
            distinct.push(user);
        }
    }
    Ok(distinct)
}

/// The STOMP message for an API body: a JSON string is sent as its text,
/// any other JSON value as its JSON text with `content-type: application/json`.
/// Headers that a STOMP version could not carry are refused here, before
/// anything is sent; those the relay sets (`content-length`, `destination`,
/// ...) are left for it to set.
fn message(
    body: serde_json::Value,
    headers: BTreeMap<String, String>,
) -> Result<Message, ApiError> {
    let mut stomp_headers = Headers::new();
    for (name, value) in &headers {
        if !is_relay_header(name) {
            stomp_headers.push(name, value);
        }
    }
    let body = match body {
        serde_json::Value::String(text) => Bytes::from(text),
        other => {
            if !stomp_headers.contains("content-type") {
                stomp_headers.push("content-type", "application/json");
            }
            Bytes::from(other.to_string())
        }
    };
    let message = Message {
        headers: stomp_headers,
        body,
    };
    if let Some((name, reason)) = message.unportable_header() {
        return Err(ApiError::UnportableHeader(name.to_owned(), reason));
    }
    Ok(message)
}

/// The user-destination name and the message a user-message body asks for.
fn user_message(
    destination: &str,
    body: serde_json::Value,
    headers: BTreeMap<String, String>,
) -> Result<(String, Message), ApiError> {
    let name = user_destination(destination)
        .map_err(|_| ApiError::NotAUserDestination(destination.to_owned()))?;
    Ok((name, message(body, headers)?))
}

/// A dispatch's answer, or why it could not be made.
fn sent(report: Result<DispatchReport, DispatchError>) -> Result<Response, ApiError> {
    let report = report.map_err(ApiError::unavailable)?;
    let sent = Sent {
        sessions: report.sessions,
        offline_users: report.offline_users,
        kept: report.kept,
    };
    Ok(warp::reply::json(&sent).into_response())
}

/// The answer to a publish whose receivers no node counts (a topic, everyone).
fn published() -> Response {
    warp::reply::json(&serde_json::json!({ "published": true })).into_response()
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn json_bodies_get_their_content_type() {
        let text = message(serde_json::json!("hello"), BTreeMap::new()).unwrap();
        assert_eq!(&text.body[..], b"hello");
        assert_eq!(text.headers.get("content-type"), None);
        let json = message(serde_json::json!({"n": 1}), BTreeMap::new()).unwrap();
        assert_eq!(&json.body[..], br#"{"n":1}"#);
        assert_eq!(json.headers.get("content-type"), Some("application/json"));
    }

    #[test]
    fn headers_stomp_cannot_carry_are_refused_and_the_relay_s_own_left_to_it() {
        for (name, value) in [
            ("a:b", "c"),
            ("x", "line\nbreak"),
            ("x", "trailing\r"),
            ("\rx", "leading CR"),
            ("x", "nul\0"),
            ("", "empty"),
        ] {
            let headers = BTreeMap::from([(name.to_owned(), value.to_owned())]);
            let refused = message(serde_json::json!("x"), headers).unwrap_err();
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{name:?}");
        }
        let headers: BTreeMap<String, String> = [
            ("content-length", "2"),
            ("destination", "/topic/x"),
            ("message-id", "m"),
            ("x-kind", "a:b\\c"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let message = message(serde_json::json!("hello"), headers).unwrap();
        assert_eq!(
            message.headers.iter().collect::<Vec<_>>(),
            [("x-kind", "a:b\\c")]
        );
    }

    #[test]
    fn repeated_users_are_named_once_and_every_name_is_checked() {
        let users = ["zed", "amy", "zed", "zed"].map(String::from).to_vec();
        assert_eq!(distinct_users(users).unwrap(), ["zed", "amy"]);
        for bad in ["", "a\nb", "nul\0", &"x".repeat(257)] {
            assert!(distinct_users(vec![bad.to_owned()]).is_err(), "{bad:?}");
        }
    }
}
