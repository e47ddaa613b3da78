//! The web demo in headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`): runs `tests/js/browser.test.mjs` against two relay
//! nodes of one cluster. Screenshots go to `tests/artifacts/`.
//!
//! Needs Node.js and `/usr/bin/chromium` (`.ci/run` installs both); fails
//! loudly without them.

mod support;

use std::process::Command;

use support::{Mode, TestRelay};

#[test]
fn two_browsers_on_two_nodes_use_the_demo() {
    let js = support::js_packages();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "no Chromium at {chromium}: install Debian's `chromium` package (or set CHROMIUM)"
    );
    let node_a = TestRelay::start(Mode::Cluster);
    let node_b = TestRelay::start_beside(&node_a);
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "browser.test.mjs"])
        .current_dir(&js)
        .env("RELAY_A_URL", format!("http://{}", node_a.addr))
        .env("RELAY_B_URL", format!("http://{}", node_b.addr))
        .env("ARTIFACTS_DIR", &artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs (install Node.js 20 or later)");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "browser tests failed:\n{report}");
    assert!(report.contains("# fail 0"), "{report}");
    assert!(
        artifacts.join("demo-websocket.png").is_file(),
        "a screenshot was saved"
    );
}
