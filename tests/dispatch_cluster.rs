//! The dispatch suite (`suite/dispatch.rs`) against a relay in cluster mode.

mod support;

use support::{Mode, TestRelay};

fn start_with(flags: &[&str]) -> TestRelay {
    TestRelay::start_with(Mode::Cluster, flags)
}

include!("suite/dispatch.rs");
