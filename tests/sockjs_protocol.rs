//! The SockJS protocol's own conformance suite (`sockjs-protocol.py`, 68
//! tests, vendored in `tests/sockjs-protocol/`) against a relay started with
//! `--sockjs-protocol-test`. Every test must pass.
//!
//! The flag and the services it mounts are built only with the
//! `sockjs-protocol-test` feature, which this test requires (Cargo.toml):
//! `cargo test --features sockjs-protocol-test`, as `.ci/run` runs it.
//!
//! The suite needs Python 2.7 (`SOCKJS_PYTHON`, or `python2.7` on the
//! `PATH`; `.ci/run` also finds one that pyenv installed) with `unittest2`,
//! `websocket-client` and `ws4py`, which this test installs from PyPI into
//! the target directory when they are not there. Without Python 2.7 the
//! suite cannot run: the test says so loudly and `.ci/run` says it again.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Mode, TestRelay};

/// The suite's dependencies, pinned to the last versions for Python 2.
const PYTHON_PACKAGES: &[&str] = &[
    "unittest2==1.1.0",
    "websocket-client==0.59.0",
    "ws4py==0.5.1",
];

fn python2() -> Option<PathBuf> {
    let candidate = match std::env::var_os("SOCKJS_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from("python2.7"),
    };
    let runs = Command::new(&candidate)
        .args(["-c", "import sys; sys.exit(sys.version_info[:2] != (2, 7))"])
        .status()
        .is_ok_and(|status| status.success());
    runs.then_some(candidate)
}

/// Where the suite's packages are installed, installing them if needed.
fn packages(python: &Path) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sockjs-protocol-packages");
    if !target.join("unittest2").is_dir() {
        let status = Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&target)
            .args(PYTHON_PACKAGES)
            .status()
            .expect("pip runs");
        assert!(status.success(), "installing {PYTHON_PACKAGES:?} failed");
    }
    target
}

#[test]
fn the_sockjs_protocol_suite_passes_in_full() {
    let Some(python) = python2() else {
        eprintln!(
            "\n*** SKIPPED: the SockJS protocol suite needs Python 2.7 (set SOCKJS_PYTHON or put python2.7 on the PATH) ***\n"
        );
        return;
    };
    let packages = packages(&python);
    let relay = TestRelay::start_with(Mode::Embedded, &["--sockjs-protocol-test"]);
    let output = Command::new("timeout")
        .arg("300")
        .arg(&python)
        .arg("sockjs-protocol.py")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sockjs-protocol"))
        .env("SOCKJS_URL", format!("http://{}", relay.addr))
        .env("PYTHONPATH", &packages)
        .output()
        .expect("the suite runs");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && report.contains("Ran 68 tests") && report.contains("\nOK"),
        "the SockJS protocol suite failed:\n{report}"
    );
    // Seen with --nocapture: the suite's own word that it ran.
    let summary: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("Ran ") || *line == "OK")
        .collect();
    eprintln!("sockjs-protocol.py: {}", summary.join(", "));
}
