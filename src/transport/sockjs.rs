//! SockJS (protocol 0.3.3, what `sockjs-client` 1.x speaks), at `/sockjs`:
//! STOMP for browsers and proxies where a plain WebSocket does not get
//! through, as Spring's STOMP endpoints offer it.
//!
//! | path under the prefix | what it is |
//! | --- | --- |
//! | `/`, `` | the greeting |
//! | `/info` | `{"websocket", "cookie_needed", "origins", "entropy"}` |
//! | `/iframe.html`, `/iframe-{version}.html` | the page for iframe-based transports |
//! | `/websocket` | a raw WebSocket, no SockJS framing (STOMP as on `/ws`) |
//! | `/{server}/{session}/websocket` | a session over WebSocket |
//! | `/{server}/{session}/xhr`, `xhr_streaming`, `eventsource`, `htmlfile`, `jsonp` | a session's receiving connection |
//! | `/{server}/{session}/xhr_send`, `jsonp_send` | a session's messages from the client |
//!
//! No maintained Rust crate serves SockJS, so this is written here, with the
//! protocol's own test suite (`sockjs-protocol.py`) as the reference: the
//! `--sockjs-protocol-test` switch mounts the services it expects (`/echo`,
//! `/disabled_websocket_echo`, `/cookie_needed_echo`, `/close`).
//! [`session`] keeps what outlives a request; [`frame`] writes and reads
//! the frames; this file answers the requests.

pub mod frame;
pub mod hixie76;
pub mod session;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::admission::Admission;
use super::connection;
use super::http_api::PeerAddr;
use super::websocket::{self, Socket};
use super::{Response, full};
use super::{form_value, query_parameter};
use crate::relay::Relay;
use crate::shutdown::Shutdown;
use session::{Attach, Channel, Session, Sessions};

/// What a SockJS endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Application {
    /// STOMP sessions of the relay.
    Stomp,
    /// The test suite's `echo`: every message comes back.
    Echo,
    /// The test suite's `close`: every session is closed at once.
    Close,
}

/// How an endpoint behaves; the defaults are SockJS's own.
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    /// Where it is mounted, without a trailing slash.
    pub prefix: String,
    pub application: Application,
    pub websocket: bool,
    /// Sends `JSESSIONID` cookies, for load balancers with sticky sessions.
    pub cookie_needed: bool,
    /// Bytes a streaming response carries before it ends and the client
    /// opens the next one (so that proxies and browsers free memory).
    pub response_limit: usize,
    /// How long a receiving connection stays silent before an `h` frame.
    pub heartbeat: Duration,
    /// How long a session waits for a receiving connection before it is
    /// closed; and how long a closed one keeps answering its close frame.
    pub disconnect_delay: Duration,
    /// The `sockjs-client` script the iframe page loads.
    pub client_url: String,
    /// Largest body `xhr_send` and `jsonp_send` accept.
    pub max_send: usize,
    /// Sessions the endpoint keeps in all and per client address (0: no
    /// limit); past them a new session gets a 503.
    pub max_sessions: usize,
    pub max_sessions_per_address: usize,
}

impl EndpointSettings {
    pub fn new(prefix: &str, application: Application) -> EndpointSettings {
        EndpointSettings {
            prefix: prefix.trim_end_matches('/').to_owned(),
            application,
            websocket: true,
            cookie_needed: false,
            response_limit: 128 * 1024,
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            client_url: "/vendor/sockjs.min.js".to_owned(),
            max_send: 1024 * 1024,
            max_sessions: 100_000,
            max_sessions_per_address: 1_000,
        }
    }

    /// The four services `sockjs-protocol.py` expects, with its 4096-byte
    /// streaming limit.
    pub fn protocol_test_services() -> Vec<EndpointSettings> {
        let service = |prefix: &str, application| EndpointSettings {
            response_limit: 4096,
            ..EndpointSettings::new(prefix, application)
        };
        vec![
            service("/echo", Application::Echo),
            EndpointSettings {
                websocket: false,
                ..service("/disabled_websocket_echo", Application::Echo)
            },
            EndpointSettings {
                cookie_needed: true,
                ..service("/cookie_needed_echo", Application::Echo)
            },
            service("/close", Application::Close),
        ]
    }
}

/// One mounted SockJS endpoint and its sessions.
pub struct SockJsEndpoint {
    settings: EndpointSettings,
    sessions: Arc<Sessions>,
    /// Places for sessions: polling clients hold a session without holding
    /// a connection, so connections alone do not bound them.
    admission: Arc<Admission>,
    /// The iframe page, which names `client_url`, and its ETag.
    iframe_page: String,
    iframe_etag: String,
}

/// How long a new receiving connection waits for the one before to be
/// noticed gone before it is told another connection is open.
const RECEIVER_GRACE: Duration = Duration::from_millis(250);

/// How often sessions are checked for their disconnect delay.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl SockJsEndpoint {
    /// An endpoint; starts the task that closes abandoned sessions, which
    /// ends with the endpoint.
    pub fn start(settings: EndpointSettings) -> SockJsEndpoint {
        let sessions = Arc::new(Sessions::default());
        tokio::spawn(sweep(Arc::downgrade(&sessions), settings.disconnect_delay));
        let iframe_page = IFRAME_PAGE.replace("{client_url}", &settings.client_url);
        let iframe_etag = format!("\"{:016x}\"", fnv1a(iframe_page.as_bytes()));
        SockJsEndpoint {
            admission: Admission::new(settings.max_sessions, settings.max_sessions_per_address),
            settings,
            sessions,
            iframe_page,
            iframe_etag,
        }
    }

    /// Whether `request` is for this endpoint.
    pub fn serves<B>(&self, request: &Request<B>) -> bool {
        let path = request.uri().path();
        path.strip_prefix(self.settings.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Answers a request for this endpoint.
    pub async fn respond(
        &self,
        request: Request<Incoming>,
        relay: &Arc<Relay>,
        shutdown: &Shutdown,
    ) -> Response {
        let path = request.uri().path().to_owned();
        let rest = &path[self.settings.prefix.len()..];
        let context = Context {
            endpoint: self,
            relay,
            shutdown,
        };
        match rest {
            "" | "/" if request.method() == Method::GET => greeting(),
            "" | "/" => method_not_allowed("GET"),
            "/info" => context.info(&request),
            "/websocket" => context.raw_websocket(request),
            _ if is_iframe_path(rest) => context.iframe(&request),
            _ => match session_path(rest) {
                Some((session_id, transport)) => {
                    let session_id = session_id.to_owned();
                    context
                        .session_request(request, &session_id, transport)
                        .await
                }
                None => not_found(),
            },
        }
    }
}

/// Closes abandoned sessions until the endpoint is gone.
async fn sweep(sessions: Weak<Sessions>, delay: Duration) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(sessions) = sessions.upgrade() else {
            return;
        };
        sessions.sweep(delay);
    }
}

/// What answering one request needs.
struct Context<'a> {
    endpoint: &'a SockJsEndpoint,
    relay: &'a Arc<Relay>,
    shutdown: &'a Shutdown,
}

/// The receiving transports: how each writes frames into its response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Receiver {
    Xhr,
    XhrStreaming,
    EventSource,
    HtmlFile { callback: String },
    Jsonp { callback: String },
}

impl Receiver {
    fn streams(&self) -> bool {
        matches!(
            self,
            Receiver::XhrStreaming | Receiver::EventSource | Receiver::HtmlFile { .. }
        )
    }

    fn content_type(&self) -> &'static str {
        match self {
            Receiver::Xhr | Receiver::XhrStreaming | Receiver::Jsonp { .. } => {
                "application/javascript; charset=UTF-8"
            }
            Receiver::EventSource => "text/event-stream",
            Receiver::HtmlFile { .. } => "text/html; charset=UTF-8",
        }
    }

    /// What a streaming response starts with, so that browsers and proxies
    /// pass the stream on at once rather than buffer it.
    fn prelude(&self) -> Option<String> {
        match self {
            Receiver::XhrStreaming => Some(format!("{}\n", "h".repeat(2048))),
            Receiver::EventSource => Some("\r\n".to_owned()),
            Receiver::HtmlFile { callback } => {
                let page = HTMLFILE_PAGE.replace("{callback}", callback);
                // Browsers render an HTML stream only past 1 KiB.
                let padding = " ".repeat(1024usize.saturating_sub(page.len()) + 14);
                Some(format!("{page}{padding}\r\n\r\n"))
            }
            Receiver::Xhr | Receiver::Jsonp { .. } => None,
        }
    }

    /// One frame as this transport writes it.
    fn wrap(&self, frame: &str) -> String {
        match self {
            Receiver::Xhr | Receiver::XhrStreaming => format!("{frame}\n"),
            Receiver::EventSource => format!("data: {frame}\r\n\r\n"),
            Receiver::HtmlFile { .. } => {
                let mut script = String::from("<script>\np(");
                frame::push_json_string(&mut script, frame);
                script.push_str(");\n</script>\r\n");
                script
            }
            Receiver::Jsonp { callback } => {
                let mut call = format!("/**/{callback}(");
                frame::push_json_string(&mut call, frame);
                call.push_str(");\r\n");
                call
            }
        }
    }
}

/// The page of the `htmlfile` transport, before its frames.
const HTMLFILE_PAGE: &str = r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"#;

/// The page iframe-based transports load.
const IFRAME_PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{client_url}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#;

/// A year, for what may be cached.
const CACHE_SECONDS: u32 = 31_536_000;
const NOT_CACHED: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

impl Context<'_> {
    fn settings(&self) -> &EndpointSettings {
        &self.endpoint.settings
    }

    fn info(&self, request: &Request<Incoming>) -> Response {
        match *request.method() {
            Method::OPTIONS => preflight(request, "OPTIONS, GET"),
            Method::GET => {
                let info = serde_json::json!({
                    "websocket": self.settings().websocket,
                    "cookie_needed": self.settings().cookie_needed,
                    "origins": ["*:*"],
                    "entropy": rand_u32(),
                });
                let mut response = text(
                    StatusCode::OK,
                    "application/json; charset=UTF-8",
                    info.to_string(),
                );
                not_cached(response.headers_mut());
                cors(request.headers(), response.headers_mut());
                response
            }
            _ => method_not_allowed("OPTIONS, GET"),
        }
    }

    fn iframe(&self, request: &Request<Incoming>) -> Response {
        if request.method() != Method::GET {
            return method_not_allowed("GET");
        }
        let etag = &self.endpoint.iframe_etag;
        let mut response = if request
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tag| tag.as_bytes() == etag.as_bytes())
        {
            status_only(StatusCode::NOT_MODIFIED)
        } else {
            let page = self.endpoint.iframe_page.clone();
            text(StatusCode::OK, "text/html; charset=UTF-8", page)
        };
        cacheable(response.headers_mut());
        insert(response.headers_mut(), header::ETAG, etag);
        response
    }

    fn raw_websocket(&self, request: Request<Incoming>) -> Response {
        if !self.settings().websocket {
            return not_found();
        }
        if let Some(refusal) = websocket_refusal(&request) {
            return refusal;
        }
        match self.settings().application {
            Application::Stomp => websocket::upgrade(
                request,
                self.relay.connections.clone(),
                self.shutdown.clone(),
            ),
            application => {
                websocket::accept(request, self.settings().max_send, None, move |socket| {
                    raw_test_service(socket, application)
                })
            }
        }
    }

    async fn session_request(
        &self,
        request: Request<Incoming>,
        session_id: &str,
        transport: &str,
    ) -> Response {
        let receiver = match transport {
            "websocket" => return self.session_websocket(request),
            "xhr_send" | "jsonp_send" => {
                return self.client_messages(request, session_id, transport).await;
            }
            "xhr" => Receiver::Xhr,
            "xhr_streaming" => Receiver::XhrStreaming,
            "eventsource" => Receiver::EventSource,
            "htmlfile" | "jsonp" => match callback(&request) {
                Ok(callback) if transport == "htmlfile" => Receiver::HtmlFile { callback },
                Ok(callback) => Receiver::Jsonp { callback },
                Err(refusal) => return refusal,
            },
            _ => return not_found(),
        };
        let allowed = match receiver {
            Receiver::Xhr | Receiver::XhrStreaming => Method::POST,
            _ => Method::GET,
        };
        if request.method() == Method::OPTIONS && allowed == Method::POST {
            return preflight(&request, "OPTIONS, POST");
        }
        if request.method() != allowed {
            return method_not_allowed(if allowed == Method::POST {
                "OPTIONS, POST"
            } else {
                "GET"
            });
        }
        let echo = self.settings().application == Application::Echo;
        let peer = request
            .extensions()
            .get::<PeerAddr>()
            .map(|peer| peer.0.ip());
        let admission = &self.endpoint.admission;
        let opening = self.endpoint.sessions.get_or_open(session_id, echo, || {
            peer.map(|address| admission.admit(address)).transpose()
        });
        let (session, channel) = match opening {
            Ok(opening) => opening,
            Err(refusal) => {
                self.relay.metrics.error(&refusal.to_string());
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=UTF-8",
                    format!("{refusal}\n"),
                );
            }
        };
        let opened = channel.is_some();
        if let Some(channel) = channel {
            let access_token = query_parameter(request.uri().query(), "access_token");
            self.start_application(channel.with_access_token(access_token));
        }
        let mut response = self.receive(session, receiver.clone(), opened);
        self.session_headers(request.headers(), response.headers_mut());
        insert(
            response.headers_mut(),
            header::CONTENT_TYPE,
            receiver.content_type(),
        );
        response
    }

    fn start_application(&self, channel: Channel) {
        match self.settings().application {
            Application::Stomp => {
                tokio::spawn(connection::serve(
                    channel,
                    self.relay.connections.clone(),
                    self.shutdown.clone(),
                ));
            }
            // Echo sessions answer as messages arrive (see Session::echo).
            Application::Echo => drop(channel),
            Application::Close => channel.close(),
        }
    }

    /// A receiving connection's response: its frames as they come.
    fn receive(&self, session: Arc<Session>, receiver: Receiver, opened: bool) -> Response {
        let (chunks, body) = mpsc::channel::<Bytes>(16);
        let settings = self.settings().clone();
        tokio::spawn(async move {
            let send = |text: String| chunks.send(Bytes::from(text));
            if let Some(prelude) = receiver.prelude()
                && send(prelude).await.is_err()
            {
                return;
            }
            let attached = match session.attach_within(opened, RECEIVER_GRACE).await {
                Attach::Receiving => true,
                Attach::Busy(reason) | Attach::Closed(reason) => {
                    let _ = send(receiver.wrap(&frame::close(&reason))).await;
                    false
                }
            };
            if !attached {
                return;
            }
            let mut written = 0;
            if opened {
                let open = receiver.wrap(frame::OPEN);
                written += open.len();
                if send(open).await.is_err() {
                    session.detach(true);
                    return;
                }
                if !receiver.streams() {
                    session.detach(false);
                    return;
                }
            }
            loop {
                let (frame, last) = tokio::select! {
                    () = chunks.closed() => {
                        session.detach(true);
                        return;
                    }
                    next = session.next_frame(settings.heartbeat) => next,
                };
                let wrapped = receiver.wrap(&frame);
                written += wrapped.len();
                if send(wrapped).await.is_err() {
                    session.detach(true);
                    return;
                }
                if last || !receiver.streams() || written >= settings.response_limit {
                    session.detach(false);
                    return;
                }
            }
        });
        let stream = tokio_stream_of(body);
        let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        *response.status_mut() = StatusCode::OK;
        response
    }

    /// `xhr_send` and `jsonp_send`: messages from the client.
    async fn client_messages(
        &self,
        request: Request<Incoming>,
        session_id: &str,
        transport: &str,
    ) -> Response {
        if request.method() == Method::OPTIONS && transport == "xhr_send" {
            return preflight(&request, "OPTIONS, POST");
        }
        if request.method() != Method::POST {
            return method_not_allowed("OPTIONS, POST");
        }
        let Some(session) = self.endpoint.sessions.get(session_id) else {
            return not_found();
        };
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, ());
        let body = match Limited::new(body, self.settings().max_send).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain; charset=UTF-8",
                    "Payload too large.",
                );
            }
        };
        let payload = if transport == "jsonp_send" && is_form(request.headers()) {
            form_value(&body, "d").unwrap_or_default()
        } else {
            body.to_vec()
        };
        let messages = match frame::decode_messages(&payload) {
            Ok(messages) => messages,
            Err(error) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=UTF-8",
                    error.to_string(),
                );
            }
        };
        if !session.receive_from_client(messages).await {
            return not_found();
        }
        let mut response = if transport == "xhr_send" {
            status_only(StatusCode::NO_CONTENT)
        } else {
            text(StatusCode::OK, "text/plain; charset=UTF-8", "ok")
        };
        let headers = response.headers_mut();
        insert(headers, header::CONTENT_TYPE, "text/plain; charset=UTF-8");
        self.session_headers(request.headers(), headers);
        response
    }

    /// CORS, no caching and, where wanted, the sticky-session cookie.
    fn session_headers(&self, request: &HeaderMap, headers: &mut HeaderMap) {
        not_cached(headers);
        cors(request, headers);
        if self.settings().cookie_needed {
            let value = jsessionid(request).unwrap_or_else(|| "dummy".to_owned());
            insert(
                headers,
                header::SET_COOKIE,
                &format!("JSESSIONID={value}; path=/"),
            );
        }
    }

    /// `/{server}/{session}/websocket`: a session of its own, carried by
    /// one WebSocket, with SockJS framing.
    fn session_websocket(&self, request: Request<Incoming>) -> Response {
        if !self.settings().websocket {
            return not_found();
        }
        if let Some(refusal) = websocket_refusal(&request) {
            return refusal;
        }
        let echo = self.settings().application == Application::Echo;
        let (session, channel) = Session::open(echo, None);
        let access_token = query_parameter(request.uri().query(), "access_token");
        self.start_application(channel.with_access_token(access_token));
        let heartbeat = self.settings().heartbeat;
        if hixie76::is_hixie76(&request) {
            return hixie76::accept(request, move |socket| {
                carry_session(socket, session, heartbeat)
            });
        }
        websocket::accept(request, self.settings().max_send, None, move |socket| {
            carry_session(socket, session, heartbeat)
        })
    }
}

/// A connection that carries text frames: a WebSocket, or its 2010 draft.
pub trait FrameSocket: Send {
    fn send_text(&mut self, text: String) -> impl Future<Output = std::io::Result<()>> + Send;

    /// The next text frame; `None` once the connection is closed or broken.
    fn receive_text(&mut self) -> impl Future<Output = Option<String>> + Send;

    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

impl FrameSocket for Socket {
    async fn send_text(&mut self, text: String) -> std::io::Result<()> {
        self.send(Message::text(text))
            .await
            .map_err(std::io::Error::other)
    }

    async fn receive_text(&mut self) -> Option<String> {
        loop {
            match self.next().await?.ok()? {
                Message::Text(text) => return Some(text.as_str().to_owned()),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    async fn close(&mut self) {
        if SinkExt::close(self).await.is_ok() {
            await_close_reply(self).await;
        }
    }
}

/// After sending a close frame, waits (briefly) for the client's before
/// the TCP close, so that the client reads the code and reason rather than
/// a reset connection.
async fn await_close_reply(socket: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_PATIENCE, async {
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                return;
            }
        }
    })
    .await;
}

/// How long a closing WebSocket waits for the client's close frame.
const CLOSE_PATIENCE: Duration = Duration::from_secs(1);

/// Runs a SockJS session over a WebSocket: `o`, then frames both ways; a
/// message that is not a JSON array of strings ends it.
async fn carry_session(mut socket: impl FrameSocket, session: Arc<Session>, heartbeat: Duration) {
    if socket.send_text(frame::OPEN.to_owned()).await.is_err() {
        session.close(frame::INTERRUPTED);
        return;
    }
    loop {
        tokio::select! {
            (frame, last) = session.next_frame(heartbeat) => {
                if socket.send_text(frame).await.is_err() {
                    session.close(frame::INTERRUPTED);
                    return;
                }
                if last {
                    socket.close().await;
                    return;
                }
            }
            text = socket.receive_text() => match text {
                Some(text) if text.is_empty() => {}
                Some(text) => match frame::decode_messages(text.as_bytes()) {
                    Ok(messages) => {
                        session.receive_from_client(messages).await;
                    }
                    Err(_) => {
                        session.close(frame::INTERRUPTED);
                        socket.close().await;
                        return;
                    }
                },
                None => {
                    session.close(frame::INTERRUPTED);
                    return;
                }
            },
        }
    }
}

/// The test suite's services on a raw WebSocket.
async fn raw_test_service(mut socket: Socket, application: Application) {
    if application == Application::Close {
        let close = CloseFrame {
            code: CloseCode::from(frame::GO_AWAY.code),
            reason: frame::GO_AWAY.reason.into(),
        };
        if socket.close(Some(close)).await.is_ok() {
            await_close_reply(&mut socket).await;
        }
        return;
    }
    while let Some(Ok(message)) = socket.next().await {
        if message.is_close() {
            return;
        }
        let echoed = message.is_text() || message.is_binary();
        if echoed && socket.send(message).await.is_err() {
            return;
        }
    }
}

/// Why a request to a WebSocket path cannot be upgraded, as SockJS servers
/// answer it.
fn websocket_refusal<B>(request: &Request<B>) -> Option<Response> {
    if request.method() != Method::GET {
        return Some(method_not_allowed("GET"));
    }
    if !websocket::is_upgrade(request) {
        return Some(text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=UTF-8",
            "Can \"Upgrade\" only to \"WebSocket\".",
        ));
    }
    None
}

/// `/{server}/{session}/{transport}`, each part non-empty and without dots.
fn session_path(rest: &str) -> Option<(&str, &str)> {
    let mut parts = rest.strip_prefix('/')?.split('/');
    let (server, session, transport) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = |part: &str| !part.is_empty() && !part.contains('.');
    (parts.next().is_none() && valid(server) && valid(session) && !transport.is_empty())
        .then_some((session, transport))
}

/// `/iframe.html` or `/iframe-{version}.html`.
fn is_iframe_path(rest: &str) -> bool {
    rest.strip_prefix("/iframe")
        .and_then(|tail| tail.strip_suffix(".html"))
        .is_some_and(|version| {
            version.is_empty()
                || version.starts_with('-')
                    && version
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        })
}

/// The `c` query parameter of `htmlfile` and `jsonp`: a JavaScript name.
#[allow(clippy::result_large_err)]
fn callback<B>(request: &Request<B>) -> Result<String, Response> {
    let refuse = |reason: &'static str| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=UTF-8",
            reason,
        )
    };
    let query = request.uri().query().unwrap_or_default();
    let Some(value) = form_value(query.as_bytes(), "c") else {
        return Err(refuse("\"callback\" parameter required"));
    };
    let value = String::from_utf8(value).unwrap_or_default();
    let valid = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value)
    } else {
        Err(refuse("invalid \"callback\" parameter"))
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}

/// The client's `JSESSIONID` cookie, echoed back for sticky sessions.
fn jsessionid(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|cookie| cookie.trim().strip_prefix("JSESSIONID="))
        .map(str::to_owned)
}

/// CORS as SockJS answers it: the request's origin with credentials, or
/// any origin without.
fn cors(request: &HeaderMap, headers: &mut HeaderMap) {
    match request.get(header::ORIGIN) {
        Some(origin) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            insert(headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
        }
        None => insert(headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    }
}

/// The answer to a CORS preflight (`OPTIONS`), cacheable for a year.
fn preflight<B>(request: &Request<B>, methods: &'static str) -> Response {
    let mut response = status_only(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    cacheable(headers);
    insert(headers, header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    insert(
        headers,
        header::ACCESS_CONTROL_MAX_AGE,
        &CACHE_SECONDS.to_string(),
    );
    if let Some(asked) = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|asked| !asked.is_empty())
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    cors(request.headers(), headers);
    response
}

fn cacheable(headers: &mut HeaderMap) {
    insert(
        headers,
        header::CACHE_CONTROL,
        &format!("public, max-age={CACHE_SECONDS}"),
    );
    let expires = std::time::SystemTime::now() + Duration::from_secs(u64::from(CACHE_SECONDS));
    insert(headers, header::EXPIRES, &httpdate(expires));
}

fn not_cached(headers: &mut HeaderMap) {
    insert(headers, header::CACHE_CONTROL, NOT_CACHED);
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn greeting() -> Response {
    text(
        StatusCode::OK,
        "text/plain; charset=UTF-8",
        "Welcome to SockJS!\n",
    )
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    insert(response.headers_mut(), header::CONTENT_TYPE, content_type);
    response
}

fn status_only(status: StatusCode) -> Response {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn not_found() -> Response {
    status_only(StatusCode::NOT_FOUND)
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = status_only(StatusCode::METHOD_NOT_ALLOWED);
    insert(response.headers_mut(), header::ALLOW, allow);
    response
}

/// A body made of the chunks a task sends, each its own HTTP chunk.
fn tokio_stream_of(
    mut chunks: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, super::BoxError>> + Send + 'static
{
    futures_util::stream::poll_fn(move |cx| {
        chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(http_body::Frame::data(bytes))))
    })
}

/// A random number for `/info`'s `entropy`.
fn rand_u32() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A stable hash of the iframe page, for its ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An HTTP date (`Expires`).
fn httpdate(time: std::time::SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_have_three_parts_without_dots() {
        assert_eq!(session_path("/000/abc/xhr"), Some(("abc", "xhr")));
        assert_eq!(
            session_path("/a/a%20b/xhr_send"),
            Some(("a%20b", "xhr_send"))
        );
        for bad in [
            "//xhr",
            "/a./a/xhr",
            "/a/a./xhr",
            "/./././xhr",
            "/xhr",
            "///xhr",
            "/a/a/xhr/x",
        ] {
            assert_eq!(session_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn iframe_paths_may_carry_a_version() {
        for good in [
            "/iframe.html",
            "/iframe-a.html",
            "/iframe-.html",
            "/iframe-0.1.2abc-dirty.2144.html",
        ] {
            assert!(is_iframe_path(good), "{good}");
        }
        for bad in [
            "/iframe.htm",
            "/iframe",
            "/IFRAME.HTML",
            "/iframe.xml",
            "/iframe-/.html",
        ] {
            assert!(!is_iframe_path(bad), "{bad}");
        }
    }
}
