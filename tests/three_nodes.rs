//! The three-node suite (`suite/three_nodes.rs`) on the shared Redis.

mod support;

use support::node_process::Cluster;

fn start_cluster(count: usize, flags: &[&str]) -> Cluster {
    Cluster::start(count, flags)
}

include!("suite/three_nodes.rs");
