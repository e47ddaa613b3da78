//! The receiving transports: the connections a client reads a session's
//! frames from (`xhr` polls; `xhr_streaming`, `eventsource` and `htmlfile`
//! streams; `jsonp` polls), how each wraps the frames in its response body,
//! and when a stream ends so that the client opens the next one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use warp::Reply;

use tokio::sync::mpsc;

use super::Context;
use super::frame;
use super::headers::insert;
use super::pages::htmlfile_prelude;
use super::reply::{method_not_allowed, preflight, text};
use super::session::{Attach, Session};
use crate::transport::http_api::PeerAddr;
use crate::transport::{RequestBody, Response, form_value, query_parameter};

/// How long a new receiving connection waits for the one before to be
/// noticed gone before it is told another connection is open.
const RECEIVER_GRACE: Duration = Duration::from_millis(250);

/// The receiving transports: how each writes frames into its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Receiver {
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
            Receiver::HtmlFile { callback } => Some(htmlfile_prelude(callback)),
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

impl Context<'_> {
    /// A receiving connection for the session `session_id`, opening the
    /// session if it is new.
    pub(super) fn receiving(
        &self,
        request: Request<RequestBody>,
        session_id: &str,
        receiver: Receiver,
    ) -> Response {
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
        let echo = self.settings().application.echoes();
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
                self.connections.metrics().error(&refusal.to_string());
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
        let mut response = warp::reply::stream(tokio_stream_of(body)).into_response();
        *response.status_mut() = StatusCode::OK;
        response
    }
}

/// The `c` query parameter of `htmlfile` and `jsonp`: a JavaScript name.
#[allow(clippy::result_large_err)]
pub(super) fn callback<B>(request: &Request<B>) -> Result<String, Response> {
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

/// A body made of the chunks a task sends, each its own HTTP chunk.
fn tokio_stream_of(
    mut chunks: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| chunks.poll_recv(cx).map(|chunk| chunk.map(Ok)))
}
