//! The HTTP API suite (`suite/http_api.rs`) against a relay in embedded mode.

mod support;

use support::{Mode, TestRelay};

fn start() -> TestRelay {
    TestRelay::start(Mode::Embedded)
}

fn start_with(flags: &[&str]) -> TestRelay {
    TestRelay::start_with(Mode::Embedded, flags)
}

include!("suite/http_api.rs");
