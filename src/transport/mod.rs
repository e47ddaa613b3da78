//! How clients reach the relay: raw WebSocket (and, later, SockJS and the
//! HTTP API), all mounted on one listener.

pub mod websocket;
