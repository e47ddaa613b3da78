//! The plain answers every SockJS handler builds on: a text body, a bare
//! status, 404 and 405.

use bytes::Bytes;
use http::{StatusCode, header};

use super::headers::insert;
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
