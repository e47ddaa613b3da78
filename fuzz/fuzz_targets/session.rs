//! Runs the whole STOMP session of one connection (decoder, rate limit,
//! state machine, ACL, embedded broker and registry) on arbitrary bytes
//! from a client, in arbitrary chunks. Nothing may panic, and when the
//! client has gone the node must hold nothing of it: no open connection,
//! no session in the registry. One node serves every input, so anything a session leaks
//! accumulates and shows in libFuzzer's memory limit.
#![no_main]

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stomp_relay::auth::Authenticator;
use stomp_relay::auth::acl::Acl;
use stomp_relay::dispatch::offline::OfflineLimits;
use stomp_relay::history::HistorySettings;
use stomp_relay::relay::Node;
use stomp_relay::session::{SessionContext, SessionSettings};
use stomp_relay::shutdown::{self, Shutdown, ShutdownTrigger};
use stomp_relay::transport::connection::writer::{Closing, TransportWriter};
use stomp_relay::transport::connection::{
    self, ConnectionContext, ConnectionSettings, ReceiveEnd, Transport, TransportClosed,
    TransportReader,
};

/// A CONNECT that inputs may start with, so that the fuzzer spends its time
/// past the handshake as well as on it.
const CONNECT: &[u8] = b"CONNECT\naccept-version:1.0,1.1,1.2\nlogin:fuzz\nheart-beat:0,0\n\n\0";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    connections: Arc<ConnectionContext>,
    shutdown: Shutdown,
    _trigger: ShutdownTrigger,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let connections = runtime.block_on(async {
            let settings = SessionSettings {
                max_subscriptions: 16,
                max_unacked: 16,
                ..SessionSettings::default()
            };
            let offline = OfflineLimits {
                max_messages: 4,
                ttl: std::time::Duration::from_secs(1),
                max_node_messages: 64,
                max_node_bytes: 64 * 1024,
            };
            // The defaults of an authenticated node, so that ACL decisions
            // (and wildcard deliveries judged by them) are exercised too.
            let history = HistorySettings {
                size: 4,
                ttl: std::time::Duration::from_secs(1),
                max_node_messages: 64,
                max_node_bytes: 64 * 1024,
                topics: Default::default(),
            };
            let node = Node::embedded(
                "fuzz".into(),
                "127.0.0.1:0",
                offline,
                history,
                Authenticator::None,
            );
            Arc::new(ConnectionContext {
                settings: ConnectionSettings::default(),
                session: SessionContext::new(settings, Acl::defaults(), "fuzz".into()),
                node: Arc::new(node),
            })
        });
        let (trigger, shutdown) = shutdown::channel(std::time::Duration::ZERO);
        Fixture {
            runtime,
            connections,
            shutdown,
            _trigger: trigger,
        }
    })
}

/// A client that sends the input's chunks, then goes; what the relay
/// writes is counted and dropped.
struct Scripted {
    chunks: VecDeque<Bytes>,
}

/// What the relay writes: counted and dropped.
struct Discard;

impl Transport for Scripted {
    type Reader = Scripted;
    type Writer = Discard;

    const KIND: &'static str = "fuzz";

    fn split(self) -> (Scripted, Discard) {
        (self, Discard)
    }
}

impl TransportReader for Scripted {
    async fn receive(&mut self) -> Result<Bytes, ReceiveEnd> {
        // Deliveries queued by the previous frame get their turn.
        tokio::task::yield_now().await;
        self.chunks.pop_front().ok_or(ReceiveEnd::Closed)
    }
}

impl TransportWriter for Discard {
    async fn send(&mut self, _frames: Vec<Bytes>) -> Result<(), TransportClosed> {
        Ok(())
    }

    async fn close(&mut self, _why: Closing) {}
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control & 0x3f) + 1;
    let mut bytes = Vec::with_capacity(CONNECT.len() + input.len());
    if control & 0x40 != 0 {
        bytes.extend_from_slice(CONNECT);
    }
    bytes.extend_from_slice(input);
    let chunks = bytes.chunks(chunk).map(Bytes::copy_from_slice).collect();

    let fixture = fixture();
    fixture.runtime.block_on(async {
        let transport = Scripted { chunks };
        connection::serve(
            transport,
            fixture.connections.clone(),
            fixture.shutdown.clone(),
        )
        .await;
        let node = &fixture.connections.node;
        assert_eq!(
            node.metrics.connection_of(Scripted::KIND).0.get(),
            0,
            "a connection outlived its client"
        );
        let sessions = node
            .registry
            .all_sessions()
            .await
            .expect("the memory registry answers");
        assert!(
            sessions.is_empty(),
            "a session outlived its client: {sessions:?}"
        );
    });
});
