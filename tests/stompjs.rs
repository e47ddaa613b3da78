//! The relay as STOMP.js (`@stomp/stompjs` under Node) sees it: runs
//! `tests/js/stompjs.test.mjs` against a relay started here.
//!
//! Needs Node.js; installs the locked npm packages of `tests/js` when they
//! are missing. Fails loudly without them rather than skipping.

mod support;

use std::process::Command;

use support::{Mode, RelayAddress, TestRelay};

#[test]
fn stompjs_clients_speak_to_an_embedded_relay() {
    run_stompjs(Mode::Embedded);
}

#[test]
fn stompjs_clients_speak_to_a_cluster_relay() {
    run_stompjs(Mode::Cluster);
}

fn run_stompjs(mode: Mode) {
    let js = support::js_packages();
    let relay = TestRelay::start(mode);
    let work_queue = relay.queue("js.work");
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "stompjs.test.mjs"])
        .current_dir(&js)
        .env("RELAY_WS_URL", relay.ws_url())
        .env("RELAY_WORK_QUEUE", &work_queue)
        .output()
        .expect("node runs (install Node.js 20 or later)");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "STOMP.js tests failed:\n{report}");
    assert!(report.contains("# fail 0"), "{report}");
}
