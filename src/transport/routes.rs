//! Every route the node serves, in one table ([`table`]), tried in order:
//!
//! | route | answered by |
//! | --- | --- |
//! | `--ws-path` (`/ws`) | STOMP over WebSocket: [`super::websocket`] |
//! | `--sockjs-path` (`/sockjs`) and below | STOMP over SockJS: [`super::sockjs`] (its own paths in `sockjs/routing.rs`) |
//! | `/api/...`, `/metrics` | the HTTP API and Prometheus text, under the API's access rule: [`super::http_api`] |
//! | `/healthz`, `/readyz` | the process serves; the broker is usable |
//! | `/`, the demo's files, `/config.json` | the web demo: [`super::web_demo`] |
//!
//! A test build started with `--sockjs-protocol-test` adds SockJS's test
//! services (`/echo`, `/disabled_websocket_echo`, `/cookie_needed_echo`,
//! `/close`) after `--sockjs-path`.
//!
//! Every route is a warp filter; the server's own accept loop serves the
//! table through [`warp::service`], which keeps per-connection admission,
//! the header-read timeout and graceful shutdown in its hands. The
//! WebSocket upgrade and SockJS are answered by our own code, handed the
//! request whole (`whole_request`): warp's `ws` filter answers no
//! subprotocol and costs 136 KiB per idle connection (see [`super::websocket`]),
//! and SockJS reads its bodies and streams its answers itself.

use std::future::Future;
use std::sync::Arc;

use bytes::Buf;
use futures_util::StreamExt;
use futures_util::future::Either;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, StreamBody};
use hyper::upgrade::OnUpgrade;
use warp::filters::BoxedFilter;
use warp::filters::path::FullPath;
use warp::{Filter, Rejection, Reply};

use super::admission::{AllowedOrigins, ForwardedTicket, Ticket};
use super::connection::ConnectionContext;
use super::http_api::{self, ApiAccess, ApiServices, PeerAddr};
use super::sockjs::{Application, EndpointSettings, SockJsEndpoint};
use super::web_demo::WebDemo;
use super::{RequestBody, Response, websocket};
use crate::broker::Broker;
use crate::shutdown::Shutdown;

/// Where the routes are, and what they admit, from the configuration.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// `--ws-path`.
    pub ws_path: String,
    /// `--sockjs-path`.
    pub sockjs_path: String,
    /// `--allowed-origins`: the pages that may open sessions.
    pub allowed_origins: Vec<String>,
    /// SockJS sessions at once, in all and per client address.
    pub max_sockjs_sessions: usize,
    pub max_connections_per_ip: usize,
    /// The largest frame, and so the largest SockJS send.
    pub max_frame_size: usize,
    /// `--sockjs-protocol-test`, which only test builds have.
    #[cfg(feature = "sockjs-protocol-test")]
    pub sockjs_protocol_test: bool,
}

/// The node's routes, in the order they are tried.
pub fn table(
    settings: &RouteSettings,
    connections: Arc<ConnectionContext>,
    api: ApiServices,
    access: ApiAccess,
    shutdown: Shutdown,
) -> BoxedFilter<(Response,)> {
    let sessions = SessionRoutes {
        connections,
        shutdown,
        origins: AllowedOrigins::new(&settings.allowed_origins),
    };

    // STOMP over WebSocket at --ws-path.
    let websocket = at(&settings.ws_path).and(sessions.answer(|request, connections, shutdown| {
        std::future::ready(stomp_over_websocket(request, connections, shutdown))
    }));

    // STOMP over SockJS at --sockjs-path and below.
    let sockjs = sockjs(
        EndpointSettings {
            max_sessions: settings.max_sockjs_sessions,
            max_sessions_per_address: settings.max_connections_per_ip,
            max_send: settings.max_frame_size,
            ..EndpointSettings::new(&settings.sockjs_path, Application::Stomp)
        },
        &sessions,
    );
    #[cfg(feature = "sockjs-protocol-test")]
    let sockjs = with_protocol_test_services(sockjs, settings, &sessions);

    // For load balancers and supervisors: serving, and ready.
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| "ok".into_response());
    let broker = api.broker.clone();
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .map(move || ready(broker.as_ref()));

    // The HTTP API at /api/..., and the node's counters at /metrics, each
    // behind the API's access rule.
    let api = http_api::routes(api, access);

    // The web demo: /, its files, and /config.json.
    let demo = web_demo(WebDemo::new(&settings.ws_path, &settings.sockjs_path));

    websocket
        .or(sockjs)
        .unify()
        .or(api)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(demo)
        .unify()
        .boxed()
}

/// What the routes that open STOMP sessions share: what their connections
/// run with, and the origins whose pages may use them.
#[derive(Clone)]
struct SessionRoutes {
    connections: Arc<ConnectionContext>,
    shutdown: Shutdown,
    origins: AllowedOrigins,
}

impl SessionRoutes {
    /// Hands the request whole to `handler`, unless it comes from a page
    /// whose origin may not open sessions: that gets a 403. Only for a
    /// route whose path has matched: it takes the body.
    fn answer<H, F>(
        &self,
        handler: H,
    ) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<H, F>
    where
        H: Fn(http::Request<RequestBody>, Arc<ConnectionContext>, Shutdown) -> F
            + Clone
            + Send
            + Sync
            + 'static,
        F: Future<Output = Response> + Send + 'static,
    {
        let sessions = self.clone();
        whole_request().then(move |request: http::Request<RequestBody>| {
            match sessions.origins.refusal(request.headers()) {
                Some(refusal) => Either::Left(std::future::ready(refusal)),
                None => Either::Right(handler(
                    request,
                    sessions.connections.clone(),
                    sessions.shutdown.clone(),
                )),
            }
        })
    }
}

/// `--ws-path`: STOMP over a WebSocket; anything but an upgrade is told
/// to upgrade.
fn stomp_over_websocket(
    request: http::Request<RequestBody>,
    connections: Arc<ConnectionContext>,
    shutdown: Shutdown,
) -> Response {
    if websocket::is_upgrade(&request) {
        return websocket::upgrade(request, connections, shutdown);
    }
    warp::reply::with_status(
        "this endpoint speaks STOMP over WebSocket",
        StatusCode::UPGRADE_REQUIRED,
    )
    .into_response()
}

/// A SockJS endpoint: its prefix and every path below it.
fn sockjs(settings: EndpointSettings, sessions: &SessionRoutes) -> BoxedFilter<(Response,)> {
    let endpoint = Arc::new(SockJsEndpoint::start(settings));
    let serves = endpoint.clone();
    path_where(move |path| serves.serves(path))
        .and(sessions.answer(move |request, connections, shutdown| {
            let endpoint = endpoint.clone();
            async move { endpoint.respond(request, &connections, &shutdown).await }
        }))
        .boxed()
}

/// `sockjs` and, when `--sockjs-protocol-test` asks for them, the SockJS
/// protocol suite's services.
#[cfg(feature = "sockjs-protocol-test")]
fn with_protocol_test_services(
    sockjs: BoxedFilter<(Response,)>,
    settings: &RouteSettings,
    sessions: &SessionRoutes,
) -> BoxedFilter<(Response,)> {
    if !settings.sockjs_protocol_test {
        return sockjs;
    }
    tracing::warn!(
        "--sockjs-protocol-test: serving the SockJS test services /echo, /disabled_websocket_echo, /cookie_needed_echo and /close"
    );
    EndpointSettings::protocol_test_services()
        .into_iter()
        .fold(sockjs, |routes, service| {
            routes.or(self::sockjs(service, sessions)).unify().boxed()
        })
}

/// `/readyz`: whether the broker can take messages.
fn ready(broker: &dyn Broker) -> Response {
    if broker.is_ready() {
        "ready".into_response()
    } else {
        warp::reply::with_status(
            "the message broker is unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response()
    }
}

/// `/`, the demo's files and `/config.json`; other paths are not the
/// demo's.
fn web_demo(demo: WebDemo) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let demo = Arc::new(demo);
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and_then(move |method: Method, path: FullPath, headers: HeaderMap| {
            let answer = demo.respond(&method, path.as_str(), &headers);
            async move { answer.ok_or_else(warp::reject::not_found) }
        })
}

/// Requests for exactly `path`, a configured path that may span several
/// segments.
fn at(path: &str) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
    let path: Arc<str> = Arc::from(path);
    path_where(move |requested| requested == &*path)
}

/// Requests whose whole path `matches` accepts: for the paths the flags
/// configure, which warp's segment-by-segment filters cannot express.
fn path_where<M>(matches: M) -> impl Filter<Extract = (), Error = Rejection> + Clone
where
    M: Fn(&str) -> bool + Clone + Send + Sync + 'static,
{
    warp::path::full()
        .and_then(move |path: FullPath| {
            let matched = matches(path.as_str());
            std::future::ready(if matched {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            })
        })
        .untuple_one()
}

/// The request whole, for the handlers that answer it themselves (the
/// WebSocket upgrade, SockJS): warp's filters take a request apart, these
/// need it together. Of its extensions, those these handlers read are
/// carried over: the client's address and the connection's place, which
/// the accept loop put there (an upgraded connection keeps the place), and
/// hyper's pending upgrade. Takes the body, so it belongs after a path
/// filter, on a route that answers whatever follows.
fn whole_request() -> impl Filter<Extract = (http::Request<RequestBody>,), Error = Rejection> + Clone
{
    let query = warp::query::raw()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::ext::optional::<Arc<Ticket>>())
        .and(warp::ext::optional::<Arc<ForwardedTicket>>())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::body::stream().map(request_body))
        .and_then(
            |method: Method,
             path: FullPath,
             query: Option<String>,
             headers: HeaderMap,
             peer: Option<PeerAddr>,
             ticket: Option<Arc<Ticket>>,
             forwarded: Option<Arc<ForwardedTicket>>,
             upgrade: Option<OnUpgrade>,
             body: RequestBody| async move {
                let uri = match query {
                    Some(query) => format!("{}?{query}", path.as_str()),
                    None => path.as_str().to_owned(),
                };
                // hyper parsed this URI already: parsing it again fails
                // only if that one was not one.
                let uri: Uri = uri.parse().map_err(|_| warp::reject::not_found())?;
                let mut request = http::Request::new(body);
                *request.method_mut() = method;
                *request.uri_mut() = uri;
                *request.headers_mut() = headers;
                let extensions = request.extensions_mut();
                if let Some(peer) = peer {
                    extensions.insert(peer);
                }
                if let Some(ticket) = ticket {
                    extensions.insert(ticket);
                }
                if let Some(forwarded) = forwarded {
                    extensions.insert(forwarded);
                }
                if let Some(upgrade) = upgrade {
                    extensions.insert(upgrade);
                }
                Ok::<_, Rejection>(request)
            },
        )
}

/// A request's body as warp hands it over, as a body a handler can read.
fn request_body<S, B>(chunks: S) -> RequestBody
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    let frames = chunks.map(|chunk| {
        chunk.map(|mut data| http_body::Frame::data(data.copy_to_bytes(data.remaining())))
    });
    BodyExt::boxed_unsync(StreamBody::new(frames))
}
