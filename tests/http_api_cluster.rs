//! The HTTP API suite (`suite/http_api.rs`) against a relay in cluster mode.

mod support;

use support::{Mode, TestRelay};

fn start() -> TestRelay {
    TestRelay::start(Mode::Cluster)
}

fn start_with(flags: &[&str]) -> TestRelay {
    TestRelay::start_with(Mode::Cluster, flags)
}

include!("suite/http_api.rs");
