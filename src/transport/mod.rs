//! How clients reach the relay: raw WebSocket, SockJS, the HTTP API and the
//! web demo, all mounted on one listener.

pub mod admission;
pub mod http_api;
pub mod sockjs;
pub mod web_demo;
pub mod websocket;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

/// An error a response body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every answer the node gives: warp's replies, WebSocket
/// upgrades, and SockJS's streaming responses, which warp's own body type
/// cannot carry.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Every answer the node gives.
pub type Response = http::Response<Body>;

/// A whole body of bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A warp reply as one of the node's answers.
pub fn from_warp(response: warp::reply::Response) -> Response {
    response.map(|body| body.map_err(BoxError::from).boxed_unsync())
}
