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
//! A request is answered in this order: an unknown path 404, a path
//! segment that is not percent-encoded UTF-8 400; no access 401 (with
//! `WWW-Authenticate`), or 403 for a web page; a method the route does not answer 405 (with
//! `Allow`; HEAD wherever GET); a body that is not `application/json` 415,
//! larger than 64 KiB 413 (chunked or not), not a JSON object, with unknown
//! fields or with headers no STOMP version can carry, 400. A message's
//! recipients are counted only once it was handed to them: nothing is
//! refused after it was sent.
//!
//! Each route is a warp filter, its checks in that order: the path
//! (`warp::path!`, `{user}` and `{key}` percent-decoded), access
//! ([`ApiAccess`]), the method, the body ([`body`]). A check that fails
//! rejects with an [`ApiError`]; one `recover` answers it, and answers 404
//! for a path no route took. Where warp's filters alone would answer
//! otherwise than the API always has (which paths are the API's, a
//! trailing slash, an empty name, the media type, a chunked body), a small
//! filter of ours keeps the answer and says why.

mod access;
mod body;
mod errors;
mod messages;
mod presence;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::str::{FromStr, Utf8Error};
use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::filters::path::{FullPath, Tail};
use warp::{Filter, Rejection, Reply};

pub use self::access::{ApiAccess, PeerAddr};
use self::errors::{ApiError, Methods};
use super::Response;
use crate::auth::check_user_name;
use crate::broker::Broker;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// The OpenAPI description of these routes, served at
/// `/api/v1/openapi.json` (a test checks that it lists exactly the
/// routes).
const OPENAPI: &str = include_str!("../openapi.json");

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

/// The API's routes and `/metrics`, for the node's route table: answers
/// every request under `/api/` (a path it lacks with its own 404) and at
/// `/metrics`, and leaves every other path to the node's other routes.
pub fn routes(services: ApiServices, access: ApiAccess) -> BoxedFilter<(Response,)> {
    let services = Arc::new(services);
    let services = warp::any().map(move || services.clone());
    let admitted = access.admits();

    let to_user = warp::path!("api" / "v1" / "users" / ..)
        .and(named("messages"))
        .and(admitted.clone())
        .and(post())
        .and(body::json())
        .and(services.clone())
        .then(|user, body, services: Arc<ApiServices>| async move {
            messages::to_user(user, body, &services)
                .await
                .into_response()
        });
    let to_many = warp::path!("api" / "v1" / "messages")
        .and(admitted.clone())
        .and(post())
        .and(body::json())
        .and(services.clone())
        .then(|body, services: Arc<ApiServices>| async move {
            messages::to_many(body, &services).await.into_response()
        });
    let to_topic = warp::path!("api" / "v1" / "topics" / ..)
        .and(named("messages"))
        .and(admitted.clone())
        .and(post())
        .and(body::json())
        .and(services.clone())
        .then(|key, body, services: Arc<ApiServices>| async move {
            messages::to_topic(key, body, &services)
                .await
                .into_response()
        });
    let user_sessions = warp::path!("api" / "v1" / "users" / ..)
        .and(named("sessions"))
        .and(admitted.clone())
        .and(get_or_head())
        .and(services.clone())
        .then(|user, services: Arc<ApiServices>| async move {
            presence::user_sessions(user, &services)
                .await
                .into_response()
        });
    let users = warp::path!("api" / "v1" / "users")
        .and(admitted.clone())
        .and(get_or_head())
        .and(services.clone())
        .then(|services: Arc<ApiServices>| async move {
            presence::online_users(&services).await.into_response()
        });
    let nodes = warp::path!("api" / "v1" / "nodes")
        .and(admitted.clone())
        .and(get_or_head())
        .and(services.clone())
        .then(|services: Arc<ApiServices>| async move {
            presence::live_nodes(&services).await.into_response()
        });
    // The description is public: a client reads it before it has
    // credentials.
    let openapi = warp::path!("api" / "v1" / "openapi.json")
        .and(get_or_head())
        .map(|| {
            warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response()
        });
    let metrics = warp::path!("metrics")
        .and(admitted)
        .and(get_or_head())
        .and(services)
        .map(|services: Arc<ApiServices>| {
            warp::reply::with_header(
                services.metrics.render(),
                "content-type",
                "text/plain; version=0.0.4",
            )
            .into_response()
        });

    let api = to_user
        .or(to_many)
        .unify()
        .or(to_topic)
        .unify()
        .or(user_sessions)
        .unify()
        .or(users)
        .unify()
        .or(nodes)
        .unify()
        .or(openapi)
        .unify()
        .or(metrics)
        .unify();
    in_scope()
        .and(no_trailing_slash().and(api).recover(refused).unify())
        .boxed()
}

/// The answer to a request that a check refused, or that no route took.
async fn refused(rejection: Rejection) -> Result<Response, Infallible> {
    // Every check of ours refuses with an ApiError, at most one of them per
    // request (a path matches one route); what is left is warp's own "no
    // path matched".
    Ok(match rejection.find::<ApiError>() {
        Some(error) => error.answer(),
        None => ApiError::NoRoute.answer(),
    })
}

/// Requests for the API's paths: everything under `/api/`, and `/metrics`.
/// Decided on the whole path, which warp's segment filters cannot do:
/// they take `/api` for `/api/` and `/metrics/` for `/metrics`, and those
/// two belong to the node's other routes.
fn in_scope() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(|path: FullPath| {
            let path = path.as_str();
            ready(if path.starts_with("/api/") || path == "/metrics" {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            })
        })
        .untuple_one()
}

/// Refuses a path that ends in `/` as one no route has: warp's path
/// matching takes `/api/v1/users/` for `/api/v1/users` (the slash leaves
/// an empty rest, which `path::end` accepts), and no API path ends so.
fn no_trailing_slash() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(|path: FullPath| {
            ready(if path.as_str().ends_with('/') {
                Err(warp::reject::not_found())
            } else {
                Ok(())
            })
        })
        .untuple_one()
}

/// A `{user}` or `{key}` segment, then the segment `last` that ends the
/// path: the name as the client meant it (`alice%40example.com` is
/// `alice@example.com`), or, once the path is known to be this route's, a
/// 400 for a segment that is not valid percent-encoded UTF-8.
///
/// An empty segment is a name too (`/api/v1/users//sessions` names the
/// user "", refused like any bad name once the request is let in), which
/// warp's `param` does not match: for it, the rest of the path is compared.
fn named(last: &'static str) -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    let segment = warp::path::param::<PathSegment>()
        .and(warp::path(last))
        .and(warp::path::end());
    let empty = warp::path::tail().and_then(move |rest: Tail| {
        ready(if rest.as_str().strip_prefix('/') == Some(last) {
            Ok(PathSegment(Ok(String::new())))
        } else {
            Err(warp::reject::not_found())
        })
    });
    segment.or(empty).unify().and_then(|segment: PathSegment| {
        ready(
            segment
                .0
                .map_err(|_| warp::reject::custom(ApiError::BadPathSegment)),
        )
    })
}

/// A path segment percent-decoded, or why it could not be. Parsing it
/// never fails, so that the whole path is matched first: warp takes a
/// failed parse for a path no route has (404), where the API answers a
/// route's bad segment with 400.
struct PathSegment(Result<String, Utf8Error>);

impl FromStr for PathSegment {
    type Err = Infallible;

    fn from_str(segment: &str) -> Result<PathSegment, Infallible> {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8();
        Ok(PathSegment(decoded.map(|text| text.into_owned())))
    }
}

/// POST, or a 405 that says so.
fn post() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::post().or_else(|_| refuse(ApiError::MethodNotAllowed(Methods::Post)))
}

/// GET or HEAD (answered alike; the server leaves out HEAD's body), or a
/// 405 that says so.
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get()
        .or(warp::head())
        .unify()
        .or_else(|_| refuse(ApiError::MethodNotAllowed(Methods::GetOrHead)))
}

/// A check's refusal, for the `recover` of [`routes`] to answer.
fn refuse<T>(error: ApiError) -> Ready<Result<T, Rejection>> {
    ready(Err(warp::reject::custom(error)))
}

/// A user name from the path or a body, checked by the one rule every
/// user name follows.
fn user_name(name: &str) -> Result<(), ApiError> {
    check_user_name(name).map_err(|invalid| ApiError::BadUserName(name.to_owned(), invalid))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::{Method, StatusCode};

    use super::*;
    use crate::broker::embedded::{EmbeddedBroker, EmbeddedLimits};
    use crate::dispatch::offline::OfflineLimits;
    use crate::dispatch::offline::memory::MemoryOfflineStore;
    use crate::registry::memory::MemoryRegistry;

    /// The API's routes as its OpenAPI document writes them, with the
    /// method each answers (and HEAD wherever GET).
    const ROUTES: &[(&str, Method)] = &[
        ("/api/v1/users/{user}/messages", Method::POST),
        ("/api/v1/messages", Method::POST),
        ("/api/v1/topics/{key}/messages", Method::POST),
        ("/api/v1/users/{user}/sessions", Method::GET),
        ("/api/v1/users", Method::GET),
        ("/api/v1/nodes", Method::GET),
        ("/api/v1/openapi.json", Method::GET),
    ];

    /// The API of an embedded node nobody is connected to.
    fn api(access: ApiAccess) -> BoxedFilter<(Response,)> {
        let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new("test", "127.0.0.1:0"));
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new(
            EmbeddedLimits::default(),
            Default::default(),
        ));
        let metrics = Metrics::default();
        let offline = MemoryOfflineStore::new(OfflineLimits::default(), Default::default());
        let dispatcher = Dispatcher::new(
            registry.clone(),
            broker.clone(),
            Arc::new(offline),
            None,
            metrics.clone(),
        );
        let services = ApiServices {
            dispatcher,
            registry,
            broker,
            metrics,
        };
        routes(services, access)
    }

    /// What a client on the node's own machine is answered: its status,
    /// its `Allow` or `WWW-Authenticate`, and its JSON `error`.
    struct Answer {
        status: StatusCode,
        header: Option<String>,
        json: serde_json::Value,
    }

    async fn ask(
        api: &BoxedFilter<(Response,)>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut request = warp::test::request()
            .method(method)
            .path(path)
            .extension(PeerAddr(peer))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.reply(api).await;
        let header = ["allow", "www-authenticate"]
            .iter()
            .find_map(|name| response.headers().get(*name))
            .map(|value| value.to_str().unwrap().to_owned());
        Answer {
            status: response.status(),
            header,
            json: serde_json::from_slice(response.body()).unwrap_or_default(),
        }
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[tokio::test]
    async fn paths_name_their_routes_their_segments_percent_decoded() {
        let api = api(ApiAccess::new(None, None, &[]));
        let sessions = ask(
            &api,
            "GET",
            "/api/v1/users/alice%40example.com/sessions",
            &[],
            "",
        )
        .await;
        assert_eq!(sessions.status, StatusCode::OK);
        assert_eq!(sessions.json["user"], "alice@example.com");
        let topic = ask(
            &api,
            "POST",
            "/api/v1/topics/chat.general/messages",
            &[JSON],
            r#"{"body": 1}"#,
        )
        .await;
        assert_eq!(topic.json, serde_json::json!({"published": true}));
        for path in [
            "/api/v1/users/",
            "/api/v2/users",
            "/api/",
            "/api/v1/users/a/sessions/x",
        ] {
            let answer = ask(&api, "GET", path, &[], "").await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(answer.json["error"], "no such API route", "{path}");
        }
        // An empty segment is a name, and not a user's.
        let empty = ask(&api, "GET", "/api/v1/users//sessions", &[], "").await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
        assert!(
            empty.json["error"]
                .as_str()
                .unwrap()
                .contains("not a user name")
        );
        let empty = ask(
            &api,
            "POST",
            "/api/v1/topics//messages",
            &[JSON],
            r#"{"body": 1}"#,
        )
        .await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
        // Paths of the node's other routes are not the API's to answer.
        for path in ["/api", "/metrics/", "/healthz", "/"] {
            let request = warp::test::request().path(path);
            assert!(!request.matches(&api).await, "{path}");
        }
    }

    #[tokio::test]
    async fn checks_come_in_their_order() {
        let api = api(ApiAccess::new(Some("s3cret"), None, &[]));
        let token = ("authorization", "Bearer s3cret");
        // The path first: a route the API lacks, or a bad segment of one it
        // has, whoever asks.
        let unknown = ask(&api, "GET", "/api/v1/nowhere", &[], "").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let bad = ask(&api, "GET", "/api/v1/users/%FF/sessions", &[], "").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            bad.json["error"],
            "the path is not valid percent-encoded UTF-8"
        );
        // Then access, saying how to get it.
        let anonymous = ask(&api, "DELETE", "/api/v1/users", &[], "").await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            anonymous.header.as_deref(),
            Some("Bearer realm=\"stomp-relay\"")
        );
        // Then the method, saying which the route answers.
        let delete = ask(&api, "DELETE", "/api/v1/users", &[token], "").await;
        assert_eq!(delete.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(delete.header.as_deref(), Some("GET, HEAD"));
        assert_eq!(delete.json["error"], "this route answers GET, HEAD");
        let get = ask(&api, "GET", "/api/v1/messages", &[token], "").await;
        assert_eq!(get.header.as_deref(), Some("POST"));
        let head = ask(&api, "HEAD", "/api/v1/users", &[token], "").await;
        assert_eq!(head.status, StatusCode::OK);
        // Then the body: its media type, its size, its content.
        let huge = "x".repeat(body::MAX_BODY + 1);
        let path = "/api/v1/topics/t/messages";
        let text = ask(
            &api,
            "POST",
            path,
            &[token, ("content-type", "text/plain")],
            &huge,
        )
        .await;
        assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let untyped = ask(&api, "POST", path, &[token], r#"{"body": 1}"#).await;
        assert_eq!(untyped.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let large = ask(&api, "POST", path, &[token, JSON], &huge).await;
        assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(large.json["error"], "the body is larger than 65536 bytes");
        let array = ask(&api, "POST", path, &[token, JSON], "[1]").await;
        assert_eq!(array.status, StatusCode::BAD_REQUEST);
        let sent = ask(&api, "POST", path, &[token, JSON], r#"{"body": 1}"#).await;
        assert_eq!(sent.status, StatusCode::OK);
        // The description needs no credentials; the counters do.
        let openapi = ask(&api, "GET", "/api/v1/openapi.json", &[], "").await;
        assert_eq!(openapi.json["openapi"], "3.1.0");
        let metrics = ask(&api, "GET", "/metrics", &[], "").await;
        assert_eq!(metrics.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_openapi_document_lists_exactly_the_routes() {
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
        let api = api(ApiAccess::new(None, None, &[]));
        for (path, method) in ROUTES {
            let concrete = path.replace("{user}", "u").replace("{key}", "k");
            let answer = ask(&api, method.as_str(), &concrete, &[JSON], "{}").await;
            assert!(
                ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&answer.status),
                "{method} {path}: {}",
                answer.status
            );
        }
    }
}
