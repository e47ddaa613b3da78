//! stomp-relay: a clustered STOMP-over-WebSocket relay.
//!
//! The binary (`main.rs`) reads a [`config::Config`] and hands it to
//! [`server::BoundServer`]. The layers, as `docs/architecture.md` draws them:
//! [`transport`] (routes, WebSocket, SockJS, the HTTP API, and the driver of
//! each connection) runs a [`session`] (the STOMP state machine, without
//! I/O) and carries out its commands on the [`broker`], the [`registry`]
//! and [`dispatch`], which delivers to users.

pub mod auth;
pub mod broker;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod history;
pub mod metrics;
pub mod registry;
pub mod relay;
pub mod retry;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod transport;
