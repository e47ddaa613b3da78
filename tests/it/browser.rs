//! The web demo in headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`): runs `tests/js/browser.test.mjs` against two relay
//! nodes of one cluster. Screenshots go to `tests/artifacts/`.
//!
//! Needs Node.js and `/usr/bin/chromium` (`.ci/run` installs both); fails
//! loudly without them.

use crate::support::{self, Mode, TestRelay};

#[test]
fn two_browsers_on_two_nodes_use_the_demo() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "no Chromium at {chromium}: install Debian's `chromium` package (or set CHROMIUM)"
    );
    let node_a = TestRelay::start(Mode::Cluster);
    let node_b = TestRelay::start_beside(&node_a);
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    support::run_node_tests(
        "browser.test.mjs",
        &[
            ("RELAY_A_URL", format!("http://{}", node_a.addr)),
            ("RELAY_B_URL", format!("http://{}", node_b.addr)),
            ("ARTIFACTS_DIR", artifacts.display().to_string()),
            ("CHROMIUM", chromium.clone()),
        ],
    );
    assert!(
        artifacts.join("demo-websocket.png").is_file(),
        "a screenshot was saved"
    );
}
