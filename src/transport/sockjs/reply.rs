//! The plain answers every SockJS handler builds on: a text body, a bare
//! status, 404, 405 and the CORS preflight.

use bytes::Bytes;
use http::{Request, StatusCode, header};

use super::headers::{CACHE_SECONDS, cacheable, cors, insert};
use crate::transport::{Response, full};

pub(super) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    insert(response.headers_mut(), header::CONTENT_TYPE, content_type);
    response
}

pub(super) fn status_only(status: StatusCode) -> Response {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

pub(super) fn not_found() -> Response {
    status_only(StatusCode::NOT_FOUND)
}

pub(super) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = status_only(StatusCode::METHOD_NOT_ALLOWED);
    insert(response.headers_mut(), header::ALLOW, allow);
    response
}

/// The answer to a CORS preflight (`OPTIONS`), cacheable for a year.
pub(super) fn preflight<B>(request: &Request<B>, methods: &'static str) -> Response {
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
