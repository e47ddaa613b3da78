//! `xhr_send` and `jsonp_send`: the client's messages, as a JSON array of
//! strings in the body (form-encoded as `d=` for `jsonp_send`), passed on
//! to the session's application.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;

use super::Context;
use super::frame;
use super::headers::insert;
use super::reply::{method_not_allowed, not_found, preflight, status_only, text};
use crate::transport::connection::{LINGER_BYTES, LINGER_TIME};
use crate::transport::{RequestBody, Response, form_value};

impl Context<'_> {
    /// `xhr_send` and `jsonp_send`: messages from the client.
    pub(super) async fn client_messages(
        &self,
        request: Request<RequestBody>,
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
        let body = match read_within(body, self.settings().max_send).await {
            Ok(body) => body,
            Err(unread) => {
                // The session ends with the ERROR that says why, as a
                // WebSocket's would; a body cut short leaves it as it was.
                if unread == Unread::TooLarge {
                    session.refuse_too_large();
                }
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain; charset=UTF-8",
                    "Payload too large.",
                );
            }
        };
        let payload = if transport == "jsonp_send" && is_form(request.headers()) {
            form_value(&body, "d").unwrap_or_default().into_bytes()
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
}

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unread {
    /// It is over the limit.
    TooLarge,
    /// It broke off (the client went away).
    Broken,
}

/// The request's body, if it is at most `max` bytes. One that is larger is
/// read on and dropped (for [`LINGER_TIME`] and [`LINGER_BYTES`] at most),
/// so that its client reads the answer rather than having its connection
/// reset under it.
async fn read_within(mut body: RequestBody, max: usize) -> Result<Bytes, Unread> {
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| Unread::Broken)?.into_data() else {
            continue;
        };
        if read.len() + data.len() > max {
            let mut left = LINGER_BYTES;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                while left > 0
                    && let Some(Ok(frame)) = body.frame().await
                {
                    let dropped = frame.data_ref().map_or(0, Bytes::len);
                    left = left.saturating_sub(dropped);
                }
            })
            .await;
            return Err(Unread::TooLarge);
        }
        read.extend_from_slice(&data);
    }
    Ok(read.freeze())
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}
