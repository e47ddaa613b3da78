//! Every integration test, as one test binary: the relay and `support` are
//! compiled and linked once, not once per area. An area is a module here;
//! a new area is a new module, not a new file directly under `tests/`.
//!
//! `cargo test --test it sessions::` runs one area, and
//! `cargo test --test it embedded::` every scenario run in embedded mode.

/// Makes a test of each scenario in each module named, calling the scenario
/// with that module's argument, so that a suite is written once for every
/// mode: given `embedded: Mode::Embedded` and `cluster: Mode::Cluster`, the
/// scenario `async fn connects(mode: Mode)` runs as the tests
/// `embedded::connects` and `cluster::connects`. A scenario missing from the
/// list is never called, which the dead-code lint reports.
macro_rules! scenario_tests {
    ($($module:ident: $argument:expr),+; $scenarios:tt) => {
        $(scenario_tests!(@module $module, $argument, $scenarios);)+
    };
    (@module $module:ident, $argument:expr, [$($scenario:ident),+ $(,)?]) => {
        mod $module {
            use super::*;

            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($argument).await;
                }
            )+
        }
    };
}

mod support;

mod architecture;
mod auth;
mod browser;
mod cli;
mod cluster;
mod dispatch;
mod history;
mod http_api;
mod limits;
mod local_cluster;
mod openapi;
mod rabbitmq_cluster;
mod redis_registry;
mod reliability;
mod routes;
mod security;
mod sessions;
mod soak;
mod sockjs;
// Only a relay built with the feature has the echo services it talks to;
// ./test.sh builds with it.
#[cfg(feature = "sockjs-protocol-test")]
mod sockjs_protocol;
mod stompjs;
mod three_nodes;
