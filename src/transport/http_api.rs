//! The HTTP API (`/api/v1/...`): how services send to users and topics and
//! ask who is online, without speaking STOMP.
//!
//! | route | what it does |
//! | --- | --- |
//! | `POST /api/v1/users/{user}/messages` | a message to every live session of a user |
//! | `POST /api/v1/messages` | the same to `"users": [...]`, or to everyone with `"all": true` (one publish that every node fans out: answered `{"published": true}`, uncounted) |
//! | `POST /api/v1/topics/{key}/messages` | a message to `/topic/{key}` |
//! | `GET /api/v1/users` | who is online: every user with a live session, and how many |
//! | `GET /api/v1/users/{user}/sessions` | the user's live sessions, with node and connect time |
//! | `GET /api/v1/nodes` | the live nodes, with address, start time and session count |
//! | `GET /api/v1/openapi.json` | the OpenAPI description of all this |
//!
//! A request is let in with `Authorization: Bearer <--api-token>`
//! (compared in constant time), or, with `--auth users|jwt`, as a user
//! holding the API role (`--api-role`): `Authorization: Bearer <JWT>` or
//! `Authorization: Basic` with a users-file login. With no `--api-token`,
//! loopback clients are let in too. Bodies are JSON, at most 64 KiB;
//! unknown fields are refused.
//!
//! The routes are declared with every other route of the node in
//! [`super::routes`]; this file answers them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use stomp_parser::Headers;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::{Authenticator, Credentials};
use crate::broker::destination::Destination;
use crate::broker::{Message, OrderKey};
use crate::dispatch::{DispatchError, DispatchReport, WhenOffline, user_destination};
use crate::error::{Chain, ClientText};
use crate::relay::Relay;

/// The OpenAPI description of these routes, served at
/// `/api/v1/openapi.json` (a test checks it against the routes).
const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body the API reads.
const MAX_BODY: u64 = 64 * 1024;

/// The address of the client that sent a request, put in the request's
/// extensions by the server for the API's loopback rule.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Who may use the API.
#[derive(Clone)]
pub struct ApiAccess {
    /// `--api-token`; without one, loopback clients are let in.
    token: Option<Arc<str>>,
    /// With authentication on: how logins are checked, and the role that
    /// opens the API.
    logins: Option<(Authenticator, Arc<str>)>,
}

impl ApiAccess {
    pub fn new(token: Option<&str>, logins: Option<(Authenticator, String)>) -> ApiAccess {
        ApiAccess {
            token: token.map(Arc::from),
            logins: logins.map(|(auth, role)| (auth, Arc::from(role))),
        }
    }

    /// Whether a request with this peer and `Authorization` header is let in.
    pub async fn allows(&self, peer: Option<SocketAddr>, authorization: Option<&str>) -> bool {
        let bearer = authorization.and_then(|value| value.strip_prefix("Bearer "));
        if let (Some(token), Some(offered)) = (&self.token, bearer)
            && constant_time_eq::constant_time_eq(offered.trim().as_bytes(), token.as_bytes())
        {
            return true;
        }
        if let (Some((auth, role)), Some(value)) = (&self.logins, authorization) {
            let basic = basic_credentials(value);
            let credentials = match &basic {
                Some((login, passcode)) => Credentials {
                    login: Some(login),
                    passcode: Some(passcode),
                    ..Credentials::default()
                },
                None => Credentials {
                    authorization: Some(value),
                    ..Credentials::default()
                },
            };
            if let Ok(Some(identity)) = auth.authenticate(credentials).await
                && identity.has_role(role)
            {
                return true;
            }
        }
        self.token.is_none() && peer.is_some_and(|peer| peer.ip().is_loopback())
    }
}

/// The user and password of `Authorization: Basic ...`.
fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

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

/// The most users one `POST /api/v1/messages` may name.
const MAX_USERS: usize = 10_000;

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

#[derive(Debug, Serialize)]
struct SessionView {
    session: String,
    node: String,
    /// Milliseconds since the Unix epoch.
    connected_at: u64,
}

/// A refusal, answered as `{"error": "..."}` with its status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl warp::reject::Reject for ApiError {}

/// The refusal when the registry or the broker cannot answer: the caller
/// is told the error's client text, the log the whole chain of causes.
fn unavailable<E: std::error::Error + ClientText + 'static>(error: E) -> Rejection {
    tracing::warn!(error = %Chain(&error), "an API request could not be served");
    refuse(StatusCode::SERVICE_UNAVAILABLE, error.client_text())
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiError {
        status,
        message: message.into(),
    })
}

fn json_error(status: StatusCode, message: &str) -> Response {
    warp::reply::with_status(
        warp::reply::json(&serde_json::json!({ "error": message })),
        status,
    )
    .into_response()
}

/// A request's JSON body, read whole, at most [`MAX_BODY`] bytes.
pub(super) fn json_body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY).and(warp::body::bytes())
}

/// `GET /api/v1/openapi.json`.
pub(super) fn openapi() -> Response {
    warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response()
}

/// A path segment as the client meant it (`alice%40example.com` is
/// `alice@example.com`).
fn decoded(segment: &str) -> Result<String, Rejection> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                "the path is not valid percent-encoded UTF-8",
            )
        })
}

/// Lets a request through only if `access` allows its client.
pub(super) fn access_guard(
    access: ApiAccess,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::ext::optional::<PeerAddr>()
        .and(warp::header::optional::<String>("authorization"))
        .and_then(move |peer: Option<PeerAddr>, authorization: Option<String>| {
            let access = access.clone();
            async move {
                if access.allows(peer.map(|p| p.0), authorization.as_deref()).await {
                    Ok(())
                } else {
                    Err(refuse(
                        StatusCode::UNAUTHORIZED,
                        "a valid 'Authorization' is required: Bearer with the API token, or a login holding the API role (with no --api-token, loopback clients need none)",
                    ))
                }
            }
        })
        .untuple_one()
}

/// `/metrics`: the node's counters as Prometheus text.
pub(super) fn metrics(relay: &Relay) -> Response {
    warp::reply::with_header(
        relay.metrics.render(),
        "content-type",
        "text/plain; version=0.0.4",
    )
    .into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|error| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {error}"),
        )
    })
}

/// The STOMP message for an API body: a JSON string is sent as its text,
/// any other JSON value as its JSON text with `content-type: application/json`.
fn message(
    body: serde_json::Value,
    headers: BTreeMap<String, String>,
) -> Result<Message, Rejection> {
    let mut stomp_headers = Headers::new();
    for (name, value) in &headers {
        if name.is_empty() || name.contains(['\n', '\r']) || value.contains(['\n', '\r']) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("header {name:?} cannot be sent"),
            ));
        }
        stomp_headers.push(name, value);
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
    Ok(Message {
        headers: stomp_headers,
        body,
    })
}

/// The user-destination name an API `destination` names.
fn user_destination_name(destination: &str) -> Result<String, Rejection> {
    user_destination(destination).map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("destination {destination:?} is not /user/queue/{{name}}, /user/topic/{{name}} or {{name}}"),
        )
    })
}

/// The user-destination name and the message a user-message body asks for.
fn user_message(
    destination: &str,
    body: serde_json::Value,
    headers: BTreeMap<String, String>,
) -> Result<(String, Message), Rejection> {
    Ok((user_destination_name(destination)?, message(body, headers)?))
}

/// A dispatch's answer, or why it could not be made.
fn sent(report: Result<DispatchReport, DispatchError>) -> Result<Response, Rejection> {
    let report = report.map_err(unavailable)?;
    let sent = Sent {
        sessions: report.sessions,
        offline_users: report.offline_users,
        kept: report.kept,
    };
    Ok(warp::reply::json(&sent).into_response())
}

pub(super) async fn send_to_user(
    user: String,
    relay: Arc<Relay>,
    body: Bytes,
) -> Result<Response, Rejection> {
    let user = decoded(&user)?;
    let request: UserMessage = parse(&body)?;
    let (name, message) = user_message(&request.destination, request.body, request.headers)?;
    let when_offline = WhenOffline::from_persist(request.persist);
    sent(
        relay
            .dispatcher
            .to_user(&user, &name, message, when_offline)
            .await,
    )
}

pub(super) async fn send_to_many(relay: Arc<Relay>, body: Bytes) -> Result<Response, Rejection> {
    let request: BulkMessage = parse(&body)?;
    let (name, message) = user_message(&request.destination, request.body, request.headers)?;
    let when_offline = WhenOffline::from_persist(request.persist);
    let report = match (request.users, request.all) {
        (Some(users), false) if users.len() <= MAX_USERS => {
            let users = decoded_users(users)?;
            relay
                .dispatcher
                .to_users(&users, &name, message, when_offline)
                .await
        }
        (Some(_), false) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("at most {MAX_USERS} users at a time"),
            ));
        }
        (None, true) if request.persist => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "persist keeps messages for named users; \"all\" means those connected now",
            ));
        }
        (None, true) => {
            // Every node gives it to its own sessions: this one cannot count
            // the others', so the answer says only that it was published.
            relay
                .dispatcher
                .to_everyone(&name, message)
                .await
                .map_err(unavailable)?;
            return Ok(published());
        }
        _ => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "give either \"users\": [...] or \"all\": true",
            ));
        }
    };
    sent(report)
}

/// User names from a JSON body, checked as the registry keys them.
fn decoded_users(users: Vec<String>) -> Result<Vec<String>, Rejection> {
    match users
        .iter()
        .find(|user| user.is_empty() || user.chars().any(char::is_control))
    {
        Some(bad) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("{bad:?} is not a user name"),
        )),
        None => Ok(users),
    }
}

pub(super) async fn send_to_topic(
    key: String,
    relay: Arc<Relay>,
    body: Bytes,
) -> Result<Response, Rejection> {
    let key = decoded(&key)?;
    let request: TopicMessage = parse(&body)?;
    let destination = format!("/topic/{key}");
    let invalid = |reason: String| refuse(StatusCode::BAD_REQUEST, reason);
    let parsed = Destination::parse(&destination).map_err(|error| invalid(error.to_string()))?;
    parsed
        .check_send(&destination)
        .map_err(|error| invalid(error.to_string()))?;
    let target = parsed
        .publish_target()
        .ok_or_else(|| invalid(format!("{destination} is not a topic")))?;
    let message = message(request.body, request.headers)?;
    // Publishes to one topic keep their order among themselves.
    relay
        .broker
        .publish(OrderKey::of(&destination), target, message)
        .await
        .map_err(unavailable)?
        .await
        .map_err(unavailable)?;
    Ok(published())
}

/// The answer to a publish whose receivers no node counts (a topic, everyone).
fn published() -> Response {
    warp::reply::json(&serde_json::json!({ "published": true })).into_response()
}

pub(super) async fn user_sessions(user: String, relay: Arc<Relay>) -> Result<Response, Rejection> {
    let user = decoded(&user)?;
    let sessions = relay
        .registry
        .sessions_of(&user)
        .await
        .map_err(unavailable)?;
    let view: Vec<SessionView> = sessions
        .into_iter()
        .map(|record| SessionView {
            session: record.session.to_string(),
            node: record.node,
            connected_at: record.connected_at,
        })
        .collect();
    Ok(warp::reply::json(&serde_json::json!({ "user": user, "sessions": view })).into_response())
}

/// Who is online: every user with a live session, and how many.
pub(super) async fn online_users(relay: Arc<Relay>) -> Result<Response, Rejection> {
    let sessions = relay.registry.all_sessions().await.map_err(unavailable)?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in sessions {
        *counts.entry(record.user).or_default() += 1;
    }
    let users: Vec<serde_json::Value> = counts
        .into_iter()
        .map(|(user, sessions)| serde_json::json!({ "user": user, "sessions": sessions }))
        .collect();
    Ok(warp::reply::json(&serde_json::json!({ "users": users })).into_response())
}

pub(super) async fn live_nodes(relay: Arc<Relay>) -> Result<Response, Rejection> {
    let nodes = relay.registry.nodes().await.map_err(unavailable)?;
    Ok(warp::reply::json(&serde_json::json!({ "nodes": nodes })).into_response())
}

/// Every refusal under `/api` as JSON with a fitting status.
pub(super) async fn answer_rejection(rejection: Rejection) -> Result<Response, Rejection> {
    if let Some(error) = rejection.find::<ApiError>() {
        return Ok(json_error(error.status, &error.message));
    }
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {MAX_BODY} bytes"),
        ));
    }
    if rejection.find::<warp::reject::LengthRequired>().is_some() {
        return Ok(json_error(
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length is required",
        ));
    }
    if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        return Ok(json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed here",
        ));
    }
    if rejection.is_not_found() {
        return Ok(json_error(StatusCode::NOT_FOUND, "no such API route"));
    }
    Err(rejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_is_required_when_one_is_set() {
        let access = ApiAccess::new(Some("s3cret"), None);
        let peer = Some("127.0.0.1:1".parse().unwrap());
        assert!(access.allows(peer, Some("Bearer s3cret")).await);
        assert!(!access.allows(peer, Some("Bearer wrong")).await);
        assert!(!access.allows(peer, Some("s3cret")).await);
        assert!(!access.allows(peer, None).await);
    }

    #[tokio::test]
    async fn without_a_token_only_loopback_clients_are_answered() {
        let access = ApiAccess::new(None, None);
        assert!(
            access
                .allows(Some("127.0.0.1:1".parse().unwrap()), None)
                .await
        );
        assert!(access.allows(Some("[::1]:1".parse().unwrap()), None).await);
        assert!(
            !access
                .allows(Some("192.0.2.7:1".parse().unwrap()), None)
                .await
        );
        assert!(!access.allows(None, None).await);
    }

    #[test]
    fn basic_credentials_are_read_from_base64() {
        assert_eq!(
            basic_credentials("Basic YWxpY2U6cGE6c3M="),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Basic !!"), None);
        assert_eq!(basic_credentials("Bearer x"), None);
    }

    #[test]
    fn json_bodies_get_their_content_type() {
        let text = message(serde_json::json!("hello"), BTreeMap::new()).unwrap();
        assert_eq!(&text.body[..], b"hello");
        assert_eq!(text.headers.get("content-type"), None);
        let json = message(serde_json::json!({"n": 1}), BTreeMap::new()).unwrap();
        assert_eq!(&json.body[..], br#"{"n":1}"#);
        assert_eq!(json.headers.get("content-type"), Some("application/json"));
    }
}
