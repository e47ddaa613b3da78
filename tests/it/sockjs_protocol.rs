//! SockJS protocol 0.3.3, every transport and its corner cases, as our own
//! suite `tests/js/sockjs-protocol.test.mjs` checks it from outside with raw
//! HTTP and WebSocket requests, against a relay started with
//! `--sockjs-protocol-test`.
//!
//! The flag and the echo services it mounts (`/echo`,
//! `/disabled_websocket_echo`, `/cookie_needed_echo`, `/close`) are built
//! only with the `sockjs-protocol-test` feature, without which this module
//! is left out (`main.rs`): `./test.sh` builds with it. Needs Node.js;
//! fails loudly without it.

use crate::support::{self, Mode, RelayAddress, TestRelay};

#[test]
fn the_sockjs_protocol_holds_on_every_transport() {
    let relay = TestRelay::start_with(Mode::Embedded, &["--sockjs-protocol-test"]);
    support::run_node_tests(
        "sockjs-protocol.test.mjs",
        &[("SOCKJS_URL", format!("http://{}", relay.addr()))],
    );
}
