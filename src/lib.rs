//! stomp-relay: a clustered STOMP-over-WebSocket relay.
//!
//! The binary (`main.rs`) reads a [`config::Config`] and hands it to
//! [`server::run`]. See `ARCHITECTURE.md` in the shared folder for the design.

pub mod config;
pub mod server;
