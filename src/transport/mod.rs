//! How clients reach the relay: raw WebSocket and the HTTP API (and, later,
//! SockJS), all mounted on one listener.

pub mod http_api;
pub mod websocket;
