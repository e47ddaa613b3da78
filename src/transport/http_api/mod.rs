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

mod access;
mod body;
mod errors;
mod messages;
mod presence;

use std::sync::Arc;

use http::Method;
use warp::Reply;

pub use self::access::{Access, ApiAccess, PeerAddr};
use self::errors::{ApiError, Methods};
use super::{RequestBody, Response};
use crate::auth::check_user_name;
use crate::broker::Broker;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// The OpenAPI description of these routes, served at
/// `/api/v1/openapi.json` (a test checks it against [`ROUTES`]).
const OPENAPI: &str = include_str!("../openapi.json");

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

/// What the API works with, and nothing more of the node: it sends through
/// the dispatcher and the broker, reads presence from the registry, and
/// renders the node's counters at `/metrics`.
#[derive(Clone)]
pub struct ApiServices {
    pub dispatcher: Dispatcher,
    pub registry: Arc<dyn Registry>,
    pub broker: Arc<dyn Broker>,
    pub metrics: Metrics,
}

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

    fn methods(&self) -> Methods {
        match self {
            Route::UserMessages(_) | Route::Messages | Route::TopicMessages(_) => Methods::Post,
            _ => Methods::GetOrHead,
        }
    }

    fn answers(&self, method: &Method) -> bool {
        match self.methods() {
            Methods::Post => method == Method::POST,
            Methods::GetOrHead => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// Answers every request under `/api` and `/metrics`.
pub async fn respond(
    request: http::Request<RequestBody>,
    services: ApiServices,
    access: ApiAccess,
) -> Response {
    answer(request, &services, &access)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn answer(
    request: http::Request<RequestBody>,
    services: &ApiServices,
    access: &ApiAccess,
) -> Result<Response, ApiError> {
    let route = Route::of(request.uri().path()).ok_or(ApiError::NoRoute)??;
    if route != Route::OpenApi {
        let peer = request.extensions().get::<PeerAddr>().map(|peer| peer.0);
        match access.check(peer, request.headers()).await {
            Access::Granted => {}
            Access::Unauthenticated => return Err(ApiError::Unauthenticated),
            Access::CrossSite => return Err(ApiError::CrossSite),
        }
    }
    if !route.answers(request.method()) {
        return Err(ApiError::MethodNotAllowed(route.methods()));
    }
    let body = match route.methods() {
        Methods::Post => body::json_body(request).await?,
        Methods::GetOrHead => bytes::Bytes::new(),
    };
    match route {
        Route::UserMessages(user) => messages::to_user(user, body, services).await,
        Route::Messages => messages::to_many(body, services).await,
        Route::TopicMessages(key) => messages::to_topic(key, body, services).await,
        Route::UserSessions(user) => presence::user_sessions(user, services).await,
        Route::Users => presence::online_users(services).await,
        Route::Nodes => presence::live_nodes(services).await,
        Route::OpenApi => Ok(
            warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response(),
        ),
        Route::Metrics => Ok(warp::reply::with_header(
            services.metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
        .into_response()),
    }
}

/// A path segment as the client meant it (`alice%40example.com` is
/// `alice@example.com`).
fn decoded(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| ApiError::BadPathSegment)
}

/// A user name from the path or a body, checked by the one rule every
/// user name follows.
fn user_name(name: &str) -> Result<(), ApiError> {
    check_user_name(name).map_err(|invalid| ApiError::BadUserName(name.to_owned(), invalid))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(route.answers(method), "{path}");
        }
    }
}
