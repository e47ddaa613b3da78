//! stomp-relay: a clustered STOMP-over-WebSocket relay.
//!
//! The binary (`main.rs`) reads a [`config::Config`] and hands it to
//! [`server::BoundServer`]. The layers, as `ARCHITECTURE.md` draws them:
//! [`transport`] (WebSocket) -> [`session`] (the STOMP state machine) ->
//! [`broker`] and [`registry`], with [`dispatch`] delivering to users.

pub mod auth;
pub mod broker;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod metrics;
pub mod registry;
pub mod relay;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod transport;
