//! The relay as STOMP.js (`@stomp/stompjs` under Node) sees it: runs
//! `tests/js/stompjs.test.mjs` against a relay started here.
//!
//! Needs Node.js; installs the locked npm packages of `tests/js` when they
//! are missing. Fails loudly without them rather than skipping.

use crate::support::{self, Mode, RelayAddress, TestRelay};

#[test]
fn stompjs_clients_speak_to_an_embedded_relay() {
    run_stompjs(Mode::Embedded);
}

#[test]
fn stompjs_clients_speak_to_a_cluster_relay() {
    run_stompjs(Mode::Cluster);
}

fn run_stompjs(mode: Mode) {
    let relay = TestRelay::start(mode);
    let work_queue = relay.queue("js.work");
    support::run_node_tests(
        "stompjs.test.mjs",
        &[
            ("RELAY_WS_URL", relay.ws_url()),
            ("RELAY_WORK_QUEUE", work_queue),
        ],
    );
}
