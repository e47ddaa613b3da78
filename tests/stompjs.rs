//! The relay as STOMP.js (`@stomp/stompjs` under Node) sees it: runs
//! `tests/js/stompjs.test.mjs` against a relay started here.
//!
//! Needs Node.js and `npm ci --prefix tests/js` (`.ci/run` does it); fails
//! loudly without them rather than skipping.

mod support;

use std::path::Path;
use std::process::Command;

use support::TestRelay;

#[test]
fn stompjs_clients_speak_to_the_relay() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/@stomp/stompjs").is_dir(),
        "STOMP.js is not installed: run `npm ci --prefix tests/js` (bash .ci/run does)"
    );
    let relay = TestRelay::start();
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "stompjs.test.mjs"])
        .current_dir(&js)
        .env("RELAY_WS_URL", relay.ws_url())
        .output()
        .expect("node runs (install Node.js 20 or later)");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "STOMP.js tests failed:\n{report}");
    assert!(report.contains("# fail 0"), "{report}");
}
