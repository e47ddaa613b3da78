//! The registry and the offline store against Redis itself, on the shared
//! Redis (127.0.0.1:6379) and on a three-master Redis Cluster of the
//! test's own: every key, script and transaction keeps to one hash slot.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionLike;
use stomp_relay::broker::Message;
use stomp_relay::dispatch::offline::redis::RedisOfflineStore;
use stomp_relay::dispatch::offline::{Keeping, OfflineLimits, OfflineStore};
use stomp_relay::metrics::LinkMetrics;
use stomp_relay::registry::redis::connection::{RedisAddress, RedisConnection};
use stomp_relay::registry::redis::{NodeLiveness, RedisRegistry};
use stomp_relay::registry::{Registry, SessionRecord};

use crate::support::REDIS_URL;
use crate::support::own_services::OwnRedisCluster;

/// A Redis Cluster of three masters, and its address.
fn own_cluster() -> (OwnRedisCluster, RedisAddress) {
    let cluster = OwnRedisCluster::start();
    let urls = cluster.masters.iter().map(|master| master.url()).collect();
    (cluster, RedisAddress::Cluster(urls))
}

fn shared_redis() -> RedisAddress {
    RedisAddress::Server(REDIS_URL.to_owned())
}

/// Every key under `prefix`, on every shard.
async fn keys_under(redis: &mut RedisConnection, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(redis)
        .await
        .expect("Redis answers KEYS");
    keys.sort();
    keys
}

async fn exists(redis: &mut impl ConnectionLike, key: String) -> bool {
    redis::Cmd::exists(key)
        .query_async(redis)
        .await
        .expect("Redis answers EXISTS")
}

async fn sessions_of_dead_nodes_are_skipped_and_swept(address: RedisAddress) {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let liveness = NodeLiveness {
        node: "alive".into(),
        address: "127.0.0.1:1".into(),
        ttl: Duration::from_secs(5),
    };
    let registry = RedisRegistry::connect(&address, &prefix, liveness, LinkMetrics::default())
        .await
        .expect("Redis answers");
    let record = |node: &str, user: &str| SessionRecord {
        session: uuid::Uuid::new_v4(),
        user: user.into(),
        node: node.into(),
        connected_at: 1,
        destinations: Vec::new(),
    };
    let live = record("alive", "frank");
    let dead = record("crashed", "frank");
    let forgotten = record("crashed", "grace");
    for r in [&live, &dead, &forgotten] {
        registry.register(r).await.unwrap();
    }
    // The crashed node never refreshed a key: its sessions do not count.
    let sessions = registry.sessions_of("frank").await.unwrap();
    assert_eq!(
        sessions.iter().map(|r| r.session).collect::<Vec<_>>(),
        [live.session]
    );
    let everyone = registry.all_sessions().await.unwrap();
    assert_eq!(
        everyone.iter().map(|r| r.session).collect::<Vec<_>>(),
        [live.session]
    );
    let nodes = registry.nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        ["alive"]
    );
    // The janitor finds those no lookup touched.
    assert_eq!(registry.sweep().await.unwrap(), 1);
    assert!(registry.sessions_of("grace").await.unwrap().is_empty());
    let (mut redis, _) = RedisConnection::connect(&address).await.unwrap();
    for key in ["node-sessions:{crashed}", "user:{grace}"] {
        assert!(
            !exists(&mut redis, format!("{prefix}{key}")).await,
            "{key} is swept"
        );
    }

    // What this registry registered ends before the node withdraws.
    for r in [&live, &dead, &forgotten] {
        registry.unregister(r).await.unwrap();
    }
    registry.shutdown().await;
    let left = keys_under(&mut redis, &prefix).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn sessions_of_dead_nodes_are_skipped_and_swept_on_one_redis() {
    sessions_of_dead_nodes_are_skipped_and_swept(shared_redis()).await;
}

#[tokio::test]
async fn sessions_of_dead_nodes_are_skipped_and_swept_on_a_redis_cluster() {
    let (_cluster, address) = tokio::task::spawn_blocking(own_cluster).await.unwrap();
    sessions_of_dead_nodes_are_skipped_and_swept(address).await;
}

/// Each of the offline store's scripts and transactions, as dispatch uses
/// them: keep, keep once per request, read, forget.
async fn the_offline_store_keeps_reads_and_forgets(address: RedisAddress) {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let (mut redis, _) = RedisConnection::connect(&address).await.unwrap();
    let store = RedisOfflineStore::new(redis.clone(), &prefix, OfflineLimits::default());
    let message = |body: &'static str| Message {
        headers: Default::default(),
        body: Bytes::from_static(body.as_bytes()),
    };
    let first = store
        .keep("ida", "inbox", &message("first"), false)
        .await
        .unwrap();
    let Keeping::Kept(second) = store
        .keep_once("ida", "inbox", &message("second"), "request-1", false)
        .await
        .unwrap()
    else {
        panic!("a new request keeps its message");
    };
    // The same request carried out again finds what it kept.
    assert_eq!(
        store
            .keep_once("ida", "inbox", &message("second"), "request-1", false)
            .await
            .unwrap(),
        Keeping::Kept(second.clone())
    );
    let kept = store.kept("ida", "inbox").await.unwrap();
    let bodies: Vec<&[u8]> = kept.iter().map(|k| &k.message.body[..]).collect();
    assert_eq!(bodies, [&b"first"[..], b"second"]);
    assert!(kept.iter().all(|k| !k.shown), "{kept:?}");
    assert!(store.kept("ida", "other").await.unwrap().is_empty());
    // Read once, shown from then on.
    assert!(
        store
            .kept("ida", "inbox")
            .await
            .unwrap()
            .iter()
            .all(|k| k.shown)
    );

    store
        .forget("ida", &[first.clone(), second.clone()])
        .await
        .unwrap();
    assert!(store.kept("ida", "inbox").await.unwrap().is_empty());
    assert_eq!(
        store
            .keep_once("ida", "inbox", &message("second"), "request-1", false)
            .await
            .unwrap(),
        Keeping::Delivered,
        "a request carried out after its message was delivered keeps nothing"
    );
    let request = format!("{prefix}offline-request:{{ida}}:request-1");
    assert!(exists(&mut redis, request.clone()).await);
    let _: () = redis::Cmd::del(request)
        .query_async(&mut redis)
        .await
        .unwrap();
    let left = keys_under(&mut redis, &prefix).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn the_offline_store_keeps_reads_and_forgets_on_one_redis() {
    the_offline_store_keeps_reads_and_forgets(shared_redis()).await;
}

#[tokio::test]
async fn the_offline_store_keeps_reads_and_forgets_on_a_redis_cluster() {
    let (_cluster, address) = tokio::task::spawn_blocking(own_cluster).await.unwrap();
    the_offline_store_keeps_reads_and_forgets(address).await;
}
