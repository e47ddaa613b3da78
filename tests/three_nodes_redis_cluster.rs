//! The three-node suite (`suite/three_nodes.rs`), unchanged, on a Redis
//! Cluster of three masters started for each test: every key, pipeline and
//! script of the registry and the offline store keeps to one hash slot.

mod support;

use support::node_process::Cluster;

fn start_cluster(count: usize, flags: &[&str]) -> Cluster {
    Cluster::start_on_redis_cluster(count, flags)
}

include!("suite/three_nodes.rs");
