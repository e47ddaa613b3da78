//! The dispatch suite (`suite/dispatch.rs`) against a relay in embedded mode.

mod support;

use support::{Mode, TestRelay};

fn start_with(flags: &[&str]) -> TestRelay {
    TestRelay::start_with(Mode::Embedded, flags)
}

include!("suite/dispatch.rs");
