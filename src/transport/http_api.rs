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
//! loopback clients are let in too, unless a web page sent the request (an
//! `Origin` that `--allowed-origins` does not list): no page open in a
//! browser on the relay's machine may drive the API. `/metrics` has the
//! same rule.
//!
//! A request is answered in this order: an unknown path 404; no access 401
//! (with `WWW-Authenticate`); a method the route does not answer 405 (with
//! `Allow`; HEAD wherever GET); a body that is not `application/json` 415,
//! larger than 64 KiB 413 (chunked or not), not a JSON object, with unknown
//! fields or with headers no STOMP version can carry, 400. A message's
//! recipients are counted only once it was handed to them: nothing is
//! refused after it was sent.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};
use stomp_parser::Headers;
use warp::Reply;

use super::{RequestBody, Response};
use crate::auth::{Authenticator, Credentials, bearer_token, check_user_name, credentials_of};
use crate::broker::destination::Destination;
use crate::broker::{Message, OrderKey, is_relay_header};
use crate::dispatch::{DispatchError, DispatchReport, WhenOffline, user_destination};
use crate::error::{Chain, ClientText};
use crate::relay::Node;

/// The OpenAPI description of these routes, served at
/// `/api/v1/openapi.json` (a test checks it against [`ROUTES`]).
const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

/// The API's routes as its OpenAPI document writes them, with the method
/// each answers (and HEAD wherever GET).
pub const ROUTES: &[(&str, Method)] = &[
    ("/api/v1/users/{user}/messages", Method::POST),
    ("/api/v1/messages", Method::POST),
    ("/api/v1/topics/{key}/messages", Method::POST),
    ("/api/v1/users/{user}/sessions", Method::GET),
    ("/api/v1/users", Method::GET),
    ("/api/v1/nodes", Method::GET),
    ("/api/v1/openapi.json", Method::GET),
];

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
    /// `--allowed-origins`: the pages that may use the loopback rule.
    origins: Arc<[String]>,
}

/// Whether a request may use the API, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// No credentials the API takes, and not a loopback client.
    Unauthenticated,
    /// A loopback client, but sent by a web page whose origin is not listed.
    CrossSite,
}

impl ApiAccess {
    pub fn new(
        token: Option<&str>,
        logins: Option<(Authenticator, String)>,
        origins: &[String],
    ) -> ApiAccess {
        ApiAccess {
            token: token.map(Arc::from),
            logins: logins.map(|(auth, role)| (auth, Arc::from(role))),
            origins: origins.into(),
        }
    }

    /// Whether a request from `peer` with these headers is let in.
    pub async fn check(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Access {
        let text = |name| {
            headers
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
        };
        let authorization = text(header::AUTHORIZATION);
        if let (Some(token), Some(offered)) = (&self.token, authorization.and_then(bearer_token))
            && constant_time_eq::constant_time_eq(offered.as_bytes(), token.as_bytes())
        {
            return Access::Granted;
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
                return Access::Granted;
            }
        }
        if self.token.is_some() || !peer.is_some_and(|peer| peer.ip().is_loopback()) {
            return Access::Unauthenticated;
        }
        // A page's request carries its Origin: the relay's own pages (the
        // demo) and listed origins, which the operator trusts, may use it.
        match text(header::ORIGIN) {
            Some(origin)
                if !self.origins.iter().any(|allowed| allowed == origin)
                    && !is_own_loopback_origin(origin, text(header::HOST)) =>
            {
                Access::CrossSite
            }
            _ => Access::Granted,
        }
    }
}

/// Whether `origin` is the relay itself, reached on a loopback name: a page
/// it served. A name that only resolves to loopback (DNS rebinding) is
/// another site, however it reached the relay.
fn is_own_loopback_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    if !host.is_some_and(|host| host.eq_ignore_ascii_case(authority)) {
        return false;
    }
    let name = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The user and password of `Authorization: Basic ...`.
fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = credentials_of("basic", authorization)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
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

/// A refusal, answered as `{"error": "..."}` with its status and headers.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    /// `Allow` on a 405, `WWW-Authenticate` on a 401.
    header: Option<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    fn into_response(self) -> Response {
        let mut response = warp::reply::with_status(
            warp::reply::json(&serde_json::json!({ "error": self.message })),
            self.status,
        )
        .into_response();
        if let Some((name, value)) = self.header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The refusal when the registry or the broker cannot answer: the caller
/// is told the error's client text, the log the whole chain of causes.
fn unavailable<E: std::error::Error + ClientText + 'static>(error: E) -> ApiError {
    tracing::warn!(error = %Chain(&error), "an API request could not be served");
    refuse(StatusCode::SERVICE_UNAVAILABLE, error.client_text())
}

fn refuse(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
        header: None,
    }
}

type Answer = Result<Response, ApiError>;

/// What a request under `/api` (or `/metrics`) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    UserMessages(String),
    Messages,
    TopicMessages(String),
    UserSessions(String),
    Users,
    Nodes,
    OpenApi,
    Metrics,
}

impl Route {
    /// The route of a path, its segments percent-decoded; `None` for a path
    /// the API does not have.
    fn of(path: &str) -> Option<Result<Route, ApiError>> {
        if path == "/metrics" {
            return Some(Ok(Route::Metrics));
        }
        let segments: Vec<&str> = path.strip_prefix("/api/v1/")?.split('/').collect();
        let named = |segment: &str, route: fn(String) -> Route| decoded(segment).map(route);
        Some(match segments[..] {
            ["users", user, "messages"] => named(user, Route::UserMessages),
            ["messages"] => Ok(Route::Messages),
            ["topics", key, "messages"] => named(key, Route::TopicMessages),
            ["users", user, "sessions"] => named(user, Route::UserSessions),
            ["users"] => Ok(Route::Users),
            ["nodes"] => Ok(Route::Nodes),
            ["openapi.json"] => Ok(Route::OpenApi),
            _ => return None,
        })
    }

    fn method(&self) -> Method {
        match self {
            Route::UserMessages(_) | Route::Messages | Route::TopicMessages(_) => Method::POST,
            _ => Method::GET,
        }
    }

    fn answers(&self, method: &Method) -> bool {
        let own = self.method();
        *method == own || (own == Method::GET && *method == Method::HEAD)
    }
}

/// Answers every request under `/api` and `/metrics`.
pub async fn respond(
    request: http::Request<RequestBody>,
    node: Arc<Node>,
    access: ApiAccess,
) -> Response {
    answer(request, &node, &access)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn answer(request: http::Request<RequestBody>, node: &Node, access: &ApiAccess) -> Answer {
    let route = Route::of(request.uri().path())
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "no such API route"))??;
    if route != Route::OpenApi {
        let peer = request.extensions().get::<PeerAddr>().map(|peer| peer.0);
        match access.check(peer, request.headers()).await {
            Access::Granted => {}
            Access::Unauthenticated => {
                return Err(ApiError {
                    header: Some((
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"stomp-relay\""),
                    )),
                    ..refuse(
                        StatusCode::UNAUTHORIZED,
                        "a valid 'Authorization' is required: Bearer with the API token, or a login holding the API role (with no --api-token, loopback clients need none)",
                    )
                });
            }
            Access::CrossSite => {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "a web page may not use the API unless its origin is in --allowed-origins or it holds a token",
                ));
            }
        }
    }
    if !route.answers(request.method()) {
        let allow = match route.method() {
            Method::GET => "GET, HEAD",
            _ => "POST",
        };
        return Err(ApiError {
            header: Some((header::ALLOW, HeaderValue::from_static(allow))),
            ..refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("this route answers {allow}"),
            )
        });
    }
    let body = match route.method() {
        Method::POST => json_body(request).await?,
        _ => Bytes::new(),
    };
    match route {
        Route::UserMessages(user) => send_to_user(&user, node, &body).await,
        Route::Messages => send_to_many(node, &body).await,
        Route::TopicMessages(key) => send_to_topic(&key, node, &body).await,
        Route::UserSessions(user) => user_sessions(user, node).await,
        Route::Users => online_users(node).await,
        Route::Nodes => live_nodes(node).await,
        Route::OpenApi => Ok(
            warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response(),
        ),
        Route::Metrics => Ok(warp::reply::with_header(
            node.metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
        .into_response()),
    }
}

/// A request's body: `application/json`, at most [`MAX_BODY`] bytes,
/// whether its length was given or it came chunked.
async fn json_body(request: http::Request<RequestBody>) -> Result<Bytes, ApiError> {
    let headers = request.headers();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be sent as 'Content-Type: application/json'",
        ));
    }
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(refuse(
            StatusCode::BAD_REQUEST,
            "the body could not be read whole",
        )),
    }
}

/// A path segment as the client meant it (`alice%40example.com` is
/// `alice@example.com`).
fn decoded(segment: &str) -> Result<String, ApiError> {
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

/// A body as `T`: a JSON object, nothing else (serde would read a struct
/// from an array by position).
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let first = body
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid JSON body: expected an object",
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {error}"),
        )
    })
}

/// A user name from the path or a body, checked by the one rule every
/// user name follows.
fn user_name(name: &str) -> Result<(), ApiError> {
    check_user_name(name).map_err(|invalid| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is not a user name: {invalid}"),
        )
    })
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
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("header {name:?} cannot be sent: {reason}"),
        ));
    }
    Ok(message)
}

/// The user-destination name an API `destination` names.
fn user_destination_name(destination: &str) -> Result<String, ApiError> {
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
) -> Result<(String, Message), ApiError> {
    Ok((user_destination_name(destination)?, message(body, headers)?))
}

/// A dispatch's answer, or why it could not be made.
fn sent(report: Result<DispatchReport, DispatchError>) -> Answer {
    let report = report.map_err(unavailable)?;
    let sent = Sent {
        sessions: report.sessions,
        offline_users: report.offline_users,
        kept: report.kept,
    };
    Ok(warp::reply::json(&sent).into_response())
}

async fn send_to_user(user: &str, node: &Node, body: &Bytes) -> Answer {
    user_name(user)?;
    let request: UserMessage = parse(body)?;
    let (name, message) = user_message(&request.destination, request.body, request.headers)?;
    let when_offline = WhenOffline::from_persist(request.persist);
    sent(
        node.dispatcher
            .to_user(user, &name, message, when_offline)
            .await,
    )
}

async fn send_to_many(node: &Node, body: &Bytes) -> Answer {
    let request: BulkMessage = parse(body)?;
    let (name, message) = user_message(&request.destination, request.body, request.headers)?;
    let when_offline = WhenOffline::from_persist(request.persist);
    let report = match (request.users, request.all) {
        (Some(users), false) if users.len() <= MAX_USERS => {
            let users = distinct_users(users)?;
            node.dispatcher
                .to_users(&users, &name, message, when_offline, None)
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
            node.dispatcher
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

async fn send_to_topic(key: &str, node: &Node, body: &Bytes) -> Answer {
    let request: TopicMessage = parse(body)?;
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
    node.broker
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

async fn user_sessions(user: String, node: &Node) -> Answer {
    user_name(&user)?;
    let sessions = node
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
async fn online_users(node: &Node) -> Answer {
    let sessions = node.registry.all_sessions().await.map_err(unavailable)?;
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

async fn live_nodes(node: &Node) -> Answer {
    let nodes = node.registry.nodes().await.map_err(unavailable)?;
    Ok(warp::reply::json(&serde_json::json!({ "nodes": nodes })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn a_token_is_required_when_one_is_set() {
        let access = ApiAccess::new(Some("s3cret"), None, &[]);
        let peer = Some("127.0.0.1:1".parse().unwrap());
        let with = |value: &str| headers(&[(header::AUTHORIZATION, value)]);
        assert_eq!(
            access.check(peer, &with("Bearer s3cret")).await,
            Access::Granted
        );
        assert_eq!(
            access.check(peer, &with("bearer  s3cret")).await,
            Access::Granted
        );
        for refused in ["Bearer wrong", "s3cret", "Basic s3cret"] {
            assert_eq!(
                access.check(peer, &with(refused)).await,
                Access::Unauthenticated,
                "{refused}"
            );
        }
        assert_eq!(
            access.check(peer, &HeaderMap::new()).await,
            Access::Unauthenticated
        );
    }

    #[tokio::test]
    async fn without_a_token_only_loopback_clients_not_sent_by_a_web_page_are_answered() {
        let access = ApiAccess::new(None, None, &["https://ops.example".to_owned()]);
        let none = HeaderMap::new();
        let loopback = Some("127.0.0.1:1".parse().unwrap());
        assert_eq!(access.check(loopback, &none).await, Access::Granted);
        assert_eq!(
            access.check(Some("[::1]:1".parse().unwrap()), &none).await,
            Access::Granted
        );
        assert_eq!(
            access
                .check(Some("192.0.2.7:1".parse().unwrap()), &none)
                .await,
            Access::Unauthenticated
        );
        assert_eq!(access.check(None, &none).await, Access::Unauthenticated);
        let page = |origin: &str| headers(&[(header::ORIGIN, origin)]);
        assert_eq!(
            access.check(loopback, &page("https://evil.example")).await,
            Access::CrossSite
        );
        assert_eq!(
            access.check(loopback, &page("https://ops.example")).await,
            Access::Granted
        );
        // The relay's own pages (the demo), reached on a loopback name.
        let own =
            |origin: &str, host: &str| headers(&[(header::ORIGIN, origin), (header::HOST, host)]);
        for (origin, host) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://localhost:8080", "localhost:8080"),
            ("http://[::1]:8080", "[::1]:8080"),
        ] {
            assert_eq!(
                access.check(loopback, &own(origin, host)).await,
                Access::Granted
            );
        }
        for (origin, host) in [
            ("http://rebound.example:8080", "rebound.example:8080"),
            ("http://localhost:9999", "localhost:8080"),
        ] {
            assert_eq!(
                access.check(loopback, &own(origin, host)).await,
                Access::CrossSite,
                "{origin}"
            );
        }
    }

    #[test]
    fn credentials_are_read_whatever_the_scheme_s_case() {
        assert_eq!(
            basic_credentials("Basic YWxpY2U6cGE6c3M="),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(
            basic_credentials("BASIC YWxpY2U6cGE6c3M="),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Basic !!"), None);
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(bearer_token("BeArEr abc "), Some("abc"));
        assert_eq!(bearer_token("Bearerabc"), None);
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
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{name:?}");
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
    fn only_json_objects_are_bodies() {
        for body in [
            r#"["notifications","hi",{},true]"#,
            "[null]",
            "1",
            r#""x""#,
            "",
        ] {
            let parsed: Result<TopicMessage, ApiError> = parse(&Bytes::from(body));
            assert!(parsed.is_err(), "{body}");
        }
        let parsed: Result<TopicMessage, ApiError> = parse(&Bytes::from(r#" {"body": 1}"#));
        assert!(parsed.is_ok());
    }

    #[test]
    fn repeated_users_are_named_once_and_every_name_is_checked() {
        let users = ["zed", "amy", "zed", "zed"].map(String::from).to_vec();
        assert_eq!(distinct_users(users).unwrap(), ["zed", "amy"]);
        for bad in ["", "a\nb", "nul\0", &"x".repeat(257)] {
            assert!(distinct_users(vec![bad.to_owned()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_name_their_routes() {
        assert_eq!(
            Route::of("/api/v1/users/alice%40example.com/messages").map(Result::unwrap),
            Some(Route::UserMessages("alice@example.com".into()))
        );
        assert_eq!(
            Route::of("/api/v1/topics/chat.general/messages").map(Result::unwrap),
            Some(Route::TopicMessages("chat.general".into()))
        );
        assert_eq!(Route::of("/api/v1/users/").map(|r| r.is_ok()), None);
        assert_eq!(Route::of("/api/v2/users").map(|r| r.is_ok()), None);
        assert!(Route::Users.answers(&Method::HEAD));
        assert!(!Route::Messages.answers(&Method::GET));
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, operations) in document["paths"].as_object().unwrap() {
            for method in operations.as_object().unwrap().keys() {
                documented.push((path.clone(), method.to_uppercase()));
            }
        }
        documented.sort();
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, method)| {
                let mut methods = vec![(path.to_string(), method.to_string())];
                if *method == Method::GET {
                    methods.push((path.to_string(), "HEAD".to_owned()));
                }
                methods
            })
            .collect();
        routed.sort();
        assert_eq!(documented, routed);
        // And each route's path reaches the route that answers it.
        for (path, method) in ROUTES {
            let concrete = path.replace("{user}", "u").replace("{key}", "k");
            let route = Route::of(&concrete).unwrap().unwrap();
            assert_eq!(&route.method(), method, "{path}");
        }
    }
}
