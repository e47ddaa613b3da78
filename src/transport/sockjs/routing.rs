//! Which handler answers a URL under an endpoint's prefix: the greeting,
//! `/info`, the iframe page, the raw WebSocket, and a session's transports
//! at `/{server}/{session}/{transport}`.

use std::sync::Arc;

use http::{Method, Request, StatusCode};

use super::receiving::{Receiver, callback};
use super::reply::{method_not_allowed, not_found, text};
use super::{Context, SockJsEndpoint};
use crate::shutdown::Shutdown;
use crate::transport::connection::ConnectionContext;
use crate::transport::{RequestBody, Response};

impl SockJsEndpoint {
    /// Whether a request for `path` is for this endpoint: its prefix, or
    /// anything below it.
    pub fn serves(&self, path: &str) -> bool {
        path.strip_prefix(self.settings.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Answers a request for this endpoint.
    pub async fn respond(
        &self,
        request: Request<RequestBody>,
        connections: &Arc<ConnectionContext>,
        shutdown: &Shutdown,
    ) -> Response {
        let path = request.uri().path().to_owned();
        let Some(rest) = path.strip_prefix(self.settings.prefix.as_str()) else {
            return not_found();
        };
        let context = Context {
            endpoint: self,
            connections,
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

impl Context<'_> {
    /// A request on a session URL, by the transport its last part names.
    async fn session_request(
        &self,
        request: Request<RequestBody>,
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
        self.receiving(request, session_id, receiver)
    }
}

/// The answer at the prefix itself, which `sockjs-client` never asks for:
/// it tells a person that the endpoint is there.
fn greeting() -> Response {
    text(
        StatusCode::OK,
        "text/plain; charset=UTF-8",
        "Welcome to SockJS!\n",
    )
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
