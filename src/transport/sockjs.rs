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
//! No maintained Rust crate serves SockJS, so this is written here, with
//! our protocol suite (`tests/js/sockjs-protocol.test.mjs`) to hold it to
//! the protocol: built
//! with the `sockjs-protocol-test` feature, the relay has a
//! `--sockjs-protocol-test` switch that mounts the services the suite
//! expects (`protocol_test`).
//!
//! This file holds an endpoint's settings and state, and `/info`. The rest,
//! one concern a file:
//! - `routing`: which handler answers a URL;
//! - `receiving`: the receiving transports (`xhr`, `xhr_streaming`,
//!   `eventsource`, `htmlfile`, `jsonp`), their bodies and limits;
//! - `sending`: `xhr_send` and `jsonp_send`, the client's messages;
//! - `websocket` and [`hixie76`]: sessions over a WebSocket, and the raw
//!   WebSocket;
//! - `pages`: the iframe page and the `htmlfile` prelude;
//! - `headers`: CORS and caching; `reply`: the plain answers;
//! - `protocol_test`: the suite's services, in test builds only;
//! - [`session`]: what outlives a request; [`frame`]: the frames.

pub mod frame;
mod headers;
pub mod hixie76;
mod pages;
#[cfg(feature = "sockjs-protocol-test")]
mod protocol_test;
mod receiving;
mod reply;
mod routing;
mod sending;
pub mod session;
mod websocket;

pub use websocket::{FrameSocket, Received};

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Method, Request, StatusCode};

use super::admission::Admission;
use super::connection::{self, ConnectionContext};
use super::{RequestBody, Response};
use crate::shutdown::Shutdown;
use headers::{cors, not_cached};
use reply::{method_not_allowed, preflight, text};
use session::{Channel, Sessions};

/// What a SockJS endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Application {
    /// STOMP sessions of the relay.
    Stomp,
    /// The test suite's `echo`: every message comes back.
    #[cfg(feature = "sockjs-protocol-test")]
    Echo,
    /// The test suite's `close`: every session is closed at once.
    #[cfg(feature = "sockjs-protocol-test")]
    Close,
}

impl Application {
    /// Whether the endpoint's sessions send back what their clients send,
    /// with no application behind them.
    fn echoes(self) -> bool {
        match self {
            Application::Stomp => false,
            #[cfg(feature = "sockjs-protocol-test")]
            Application::Echo => true,
            #[cfg(feature = "sockjs-protocol-test")]
            Application::Close => false,
        }
    }
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

/// How often sessions are checked for their disconnect delay.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl SockJsEndpoint {
    /// An endpoint; starts the task that closes abandoned sessions, which
    /// ends with the endpoint.
    pub fn start(settings: EndpointSettings) -> SockJsEndpoint {
        let sessions = Arc::new(Sessions::default());
        tokio::spawn(sweep(Arc::downgrade(&sessions), settings.disconnect_delay));
        let (iframe_page, iframe_etag) = pages::iframe_page(&settings.client_url);
        SockJsEndpoint {
            admission: Admission::new(settings.max_sessions, settings.max_sessions_per_address),
            settings,
            sessions,
            iframe_page,
            iframe_etag,
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
    connections: &'a Arc<ConnectionContext>,
    shutdown: &'a Shutdown,
}

impl Context<'_> {
    fn settings(&self) -> &EndpointSettings {
        &self.endpoint.settings
    }

    fn info(&self, request: &Request<RequestBody>) -> Response {
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

    fn start_application(&self, channel: Channel) {
        match self.settings().application {
            Application::Stomp => {
                tokio::spawn(connection::serve(
                    channel,
                    self.connections.clone(),
                    self.shutdown.clone(),
                ));
            }
            // Echo sessions answer as messages arrive (see Session::echo).
            #[cfg(feature = "sockjs-protocol-test")]
            Application::Echo => drop(channel),
            #[cfg(feature = "sockjs-protocol-test")]
            Application::Close => channel.close(),
        }
    }
}

/// A random number for `/info`'s `entropy`.
fn rand_u32() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
