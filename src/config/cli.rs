//! The options as `stomp-relay --help` shows them: clap's definitions, in
//! groups, each group also a table of the `--config` file. Flag names are a
//! public interface: scripts, the Docker files, the example file and the
//! docs rely on them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, ValueEnum};
use ipnet::IpNet;
use stomp_parser::Limits;

use super::parse::{
    as_usize, parse_history_topic, parse_node_id, parse_redis_prefix, parse_ws_path,
};
use crate::broker::SlowConsumer;
use crate::transport::forwarded::parse_network;

/// What `stomp-relay --help` shows: the options in groups, each group also
/// a table of the `--config` file. Read by [`Config::from_args`].
#[derive(Debug, Clone, Parser)]
#[command(
    name = "stomp-relay",
    version,
    about = "A clustered STOMP-over-WebSocket relay: browsers connect to any node, RabbitMQ and Redis behind.",
    long_about = "A clustered STOMP-over-WebSocket relay: browsers connect to any node over WebSocket \
(STOMP 1.0, 1.1, 1.2), RabbitMQ carries messages between nodes and Redis knows who is connected where.\n\n\
Without --amqp-url and --redis-url the node runs embedded: one node, an in-process broker and an \
in-memory registry, nothing else to install. With both (or --redis-cluster-nodes for a Redis \
Cluster), it runs in cluster mode.\n\n\
Every option can also be set by the environment variable shown next to it, or in the --config \
file, in the table named after its group (for example `[limits]` and `max-frame-size = 65536`). \
A flag wins over its variable, the variable over the file, the file over the default."
)]
pub struct Cli {
    /// A TOML file of options (see stomp-relay.example.toml): a table per
    /// group below, keys named as the flags are.
    #[arg(long, env = "STOMP_RELAY_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerOptions,

    #[command(flatten)]
    pub cluster: ClusterOptions,

    #[command(flatten)]
    pub auth: AuthOptions,

    #[command(flatten)]
    pub connections: ConnectionOptions,

    #[command(flatten)]
    pub limits: LimitOptions,

    #[command(flatten)]
    pub offline: OfflineOptions,

    #[command(flatten)]
    pub history: HistoryOptions,

    #[command(flatten)]
    pub log: LogOptions,
}

/// Where clients connect, and the HTTP side of the node.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerOptions {
    /// Address for everything the node serves: WebSocket, SockJS, HTTP API and web demo.
    #[arg(long, env = "STOMP_RELAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Path of the raw WebSocket endpoint.
    #[arg(long, env = "STOMP_RELAY_WS_PATH", default_value = "/ws", value_parser = parse_ws_path)]
    pub ws_path: String,

    /// Path of the SockJS endpoint (STOMP over SockJS, as sockjs-client and
    /// Spring's clients speak it).
    #[arg(long, env = "STOMP_RELAY_SOCKJS_PATH", default_value = "/sockjs", value_parser = parse_ws_path)]
    pub sockjs_path: String,

    /// Also mount the echo services SockJS protocol tests talk to: /echo,
    /// /disabled_websocket_echo, /cookie_needed_echo and /close. For
    /// conformance testing only.
    #[cfg(feature = "sockjs-protocol-test")]
    #[arg(long, env = "STOMP_RELAY_SOCKJS_PROTOCOL_TEST")]
    pub sockjs_protocol_test: bool,

    /// Also serve HTTP/2 (cleartext, with prior knowledge) beside
    /// HTTP/1.1. Browsers' WebSockets and SockJS use HTTP/1.1, so the node
    /// serves only that unless asked.
    #[arg(long, env = "STOMP_RELAY_HTTP2")]
    pub http2: bool,

    /// Origins whose pages may open WebSocket and SockJS connections, e.g.
    /// https://app.example.com (comma-separated; none given: any origin).
    /// Requests from other origins get a 403.
    #[arg(long, env = "STOMP_RELAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Bearer token the HTTP API requires. Without one, the API answers
    /// loopback clients only.
    #[arg(long, env = "STOMP_RELAY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Seconds over which a stopping node (SIGTERM, Ctrl-C) tells its
    /// clients to go (ERROR "server shutting down", then the close), each
    /// at its own moment, so that their reconnects reach the other nodes
    /// spread out; it serves each client until then. 0 tells them all at
    /// once.
    #[arg(long, env = "STOMP_RELAY_DRAIN_PERIOD", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_period: u64,
}

/// RabbitMQ and Redis, and this node's place among the others.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterOptions {
    /// RabbitMQ to use, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (cluster
    /// mode; needs --redis-url or --redis-cluster-nodes). The nodes of a
    /// RabbitMQ cluster: several URLs, comma-separated or the flag
    /// repeated; the node starts at a place in the list given by its node
    /// id, so that nodes given one list spread over it, and connects to the
    /// first from there that answers; when that one goes away, to the next.
    #[arg(
        long,
        env = "STOMP_RELAY_AMQP_URL",
        requires = "redis",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub amqp_url: Vec<String>,

    /// Redis to use, e.g. redis://127.0.0.1:6379 (cluster mode; needs --amqp-url).
    #[arg(
        long,
        env = "STOMP_RELAY_REDIS_URL",
        group = "redis",
        requires = "amqp_url",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    /// A Redis Cluster to use instead of --redis-url: some of its nodes,
    /// e.g. redis://10.0.0.1:6379,redis://10.0.0.2:6379 (comma-separated or
    /// the flag repeated); the rest of the cluster is learnt from them.
    #[arg(
        long,
        env = "STOMP_RELAY_REDIS_CLUSTER_NODES",
        group = "redis",
        requires = "amqp_url",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub redis_cluster_nodes: Vec<String>,

    /// This node's id in the cluster [default: a fresh UUID at every start].
    #[arg(long, env = "STOMP_RELAY_NODE_ID", value_parser = parse_node_id)]
    pub node_id: Option<String>,

    /// Prefix of every Redis key the node writes.
    #[arg(long, env = "STOMP_RELAY_REDIS_PREFIX", default_value = "stomp:", value_parser = parse_redis_prefix)]
    pub redis_prefix: String,

    /// Unacknowledged messages RabbitMQ may push to one consumer when
    /// SUBSCRIBE gives no `prefetch-count` (cluster mode).
    #[arg(long, env = "STOMP_RELAY_AMQP_PREFETCH", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub amqp_prefetch: u16,

    /// Messages the node's queue in RabbitMQ holds for this node while it
    /// falls behind (cluster mode); past them RabbitMQ drops the oldest, so
    /// that a node that cannot keep up does not fill the broker's memory.
    #[arg(long, env = "STOMP_RELAY_NODE_QUEUE_LENGTH", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub node_queue_length: u32,

    /// Where RabbitMQ delivers a session's user-destination messages (its
    /// keys stomp.{node}.{session}.{name} on stomp.users) (cluster mode):
    /// node, the node's queue, delivered in-process (one binding per node,
    /// nothing per session); session, a queue, a binding and a consumer per
    /// session.
    #[arg(long, env = "STOMP_RELAY_ROUTING", value_enum, default_value_t = Routing::Node)]
    pub routing: Routing,

    /// The type stomp.dispatch is declared with when it does not exist yet
    /// (cluster mode): quorum, replicated over a RabbitMQ cluster's nodes so
    /// that dispatch survives the loss of one; classic, on one broker node.
    #[arg(long, env = "STOMP_RELAY_DISPATCH_QUEUE_TYPE", value_enum, default_value_t = QueueType::Quorum)]
    pub dispatch_queue_type: QueueType,

    /// Seconds after which a node that stopped refreshing its key in Redis
    /// is taken for dead: its sessions leave presence and dispatch skips
    /// them (cluster mode). It refreshes three times per period.
    #[arg(long, env = "STOMP_RELAY_NODE_TTL", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=600))]
    pub node_ttl: u64,
}

/// Who clients are, and where they may subscribe and send.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Auth")]
pub struct AuthOptions {
    /// How clients prove who they are at CONNECT: none (development only:
    /// the user is `login`), users (--users-file) or jwt (--jwt-secret,
    /// --jwt-public-key or --jwks-file).
    #[arg(id = "auth", long = "auth", env = "STOMP_RELAY_AUTH", value_enum, default_value_t = AuthMode::None)]
    pub mode: AuthMode,

    /// With --auth users: a file of `name:hash` lines (argon2 or bcrypt).
    #[arg(long, env = "STOMP_RELAY_USERS_FILE", required_if_eq("auth", "users"))]
    pub users_file: Option<PathBuf>,

    /// With --auth jwt: the HS256 secret tokens are signed with.
    #[arg(long, env = "STOMP_RELAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// With --auth jwt: a PEM file with the RS256 or ES256 public key.
    #[arg(long, env = "STOMP_RELAY_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// With --auth jwt: a JWKS file (keys chosen by the token's `kid`).
    #[arg(long, env = "STOMP_RELAY_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// With --auth jwt: the `aud` every token must carry.
    #[arg(long, env = "STOMP_RELAY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// With --auth jwt: the `iss` every token must carry.
    #[arg(long, env = "STOMP_RELAY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// With --auth jwt: the claim listing the user's roles (an array, or
    /// space-separated names); a dotted path reaches into objects, e.g.
    /// realm_access.roles.
    #[arg(long, env = "STOMP_RELAY_JWT_ROLES_CLAIM", default_value = "roles")]
    pub jwt_roles_claim: String,

    /// With --auth jwt: seconds a token's exp and nbf may be off by. A
    /// token is taken until its exp plus this, and a session logged in with
    /// it ends then (an ERROR, then the close), so that its client connects
    /// again with a fresh token.
    #[arg(long, env = "STOMP_RELAY_JWT_LEEWAY", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub jwt_leeway: u64,

    /// A TOML file of destination rules: who may SUBSCRIBE and SEND where,
    /// by user and role. Without one, authenticated users get their own
    /// user destinations, /topic/, /queue/ and /app/ (with --auth none:
    /// everything).
    #[arg(long, env = "STOMP_RELAY_ACL_FILE")]
    pub acl_file: Option<PathBuf>,

    /// The role that lets a logged-in user (JWT bearer token, or Basic
    /// credentials of the users file) use the HTTP API, as --api-token does.
    #[arg(long, env = "STOMP_RELAY_API_ROLE", default_value = "api")]
    pub api_role: String,
}

/// How long connections may take, and how many there may be.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connections")]
pub struct ConnectionOptions {
    /// Seconds a new connection may take to send CONNECT before it is
    /// closed; also how long a connection may take to send its first
    /// request, and an HTTP request its headers.
    #[arg(long, env = "STOMP_RELAY_CONNECT_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,

    /// Seconds a frame may take to arrive once it has begun; a client that
    /// trickles one (slowloris) gets an ERROR and the close.
    #[arg(long, env = "STOMP_RELAY_FRAME_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub frame_timeout: u64,

    /// Heart-beats run as each client's CONNECT asks (none where it says
    /// 0), but never more often than this, in ms, either way.
    #[arg(long, env = "STOMP_RELAY_HEART_BEAT_MIN", default_value_t = 1_000)]
    pub heart_beat_min: u32,

    /// The relay sends something at least this often, in ms, to clients
    /// that asked for heart-beats less often (0 = no cap); behind a load
    /// balancer, set it below the balancer's idle timeout.
    #[arg(long, env = "STOMP_RELAY_HEART_BEAT_MAX", default_value_t = 0)]
    pub heart_beat_max: u32,

    /// TCP connections the node accepts in all (0: no limit); past it new
    /// ones get a 503.
    #[arg(long, env = "STOMP_RELAY_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// TCP connections one client address may hold (0: no limit, the
    /// default). Behind a load balancer every client arrives from its
    /// address: name it in --trusted-proxies, so that this limit counts
    /// the forwarded client addresses instead.
    #[arg(long, env = "STOMP_RELAY_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Proxies and load balancers (addresses or networks, comma-separated)
    /// whose Forwarded or X-Forwarded-For headers name the client: the
    /// per-address limits, the HTTP API's loopback rule and the logs then
    /// use the client's address. Anyone else's such headers are ignored.
    #[arg(long, env = "STOMP_RELAY_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<IpNet>,

    /// SockJS sessions the node keeps (0: no limit); per client address
    /// they are bounded by --max-connections-per-ip. Polling clients hold a
    /// session without holding a connection.
    #[arg(
        long,
        env = "STOMP_RELAY_MAX_SOCKJS_SESSIONS",
        default_value_t = 100_000
    )]
    pub max_sockjs_sessions: usize,

    /// What a second login of a user already connected does: allow (both
    /// sessions live, each receives the user's messages) or replace (the
    /// older sessions get an ERROR saying why and are closed).
    #[arg(long, env = "STOMP_RELAY_SECOND_LOGIN", value_enum, default_value_t = SecondLogin::Allow)]
    pub second_login: SecondLogin,

    /// The virtual host clients connect to, in RabbitMQ's form: a CONNECT
    /// whose host header names another one (it begins with '/') is refused
    /// as RabbitMQ refuses it; any other host (a DNS name, which some
    /// clients send) is accepted.
    #[arg(long, env = "STOMP_RELAY_VIRTUAL_HOST", default_value = "/")]
    pub virtual_host: String,
}

/// What one session may send, hold and ask for.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitOptions {
    /// STOMP frames a session may send per second, in bursts of as many;
    /// past it the session gets an ERROR and is closed (0: no limit, as in
    /// RabbitMQ: a burst is slowed down by --max-in-flight instead).
    #[arg(long, env = "STOMP_RELAY_MAX_FRAMES_PER_SECOND", default_value_t = 0)]
    pub max_frames_per_second: u32,

    /// Bytes of a whole STOMP frame (command, headers, body); also the
    /// largest WebSocket message accepted.
    #[arg(long, env = "STOMP_RELAY_MAX_FRAME_SIZE", default_value_t = Limits::default().max_frame_size, value_parser = clap::value_parser!(u64).range(256..).map(as_usize))]
    pub max_frame_size: usize,

    /// Bytes of a frame's body.
    #[arg(long, env = "STOMP_RELAY_MAX_BODY_SIZE", default_value_t = Limits::default().max_body, value_parser = clap::value_parser!(u64).map(as_usize))]
    pub max_body_size: usize,

    /// Header lines in one frame.
    #[arg(long, env = "STOMP_RELAY_MAX_HEADERS", default_value_t = Limits::default().max_headers, value_parser = clap::value_parser!(u64).range(1..).map(as_usize))]
    pub max_headers: usize,

    /// Bytes of one header line.
    #[arg(long, env = "STOMP_RELAY_MAX_HEADER_SIZE", default_value_t = Limits::default().max_header_line, value_parser = clap::value_parser!(u64).range(16..).map(as_usize))]
    pub max_header_size: usize,

    /// Subscriptions one session may hold.
    #[arg(long, env = "STOMP_RELAY_MAX_SUBSCRIPTIONS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..).map(as_usize))]
    pub max_subscriptions: usize,

    /// Messages one session may hold delivered and unacknowledged
    /// (ack:client and client-individual); past it the session gets an
    /// ERROR. SUBSCRIBE's prefetch-count is capped to it.
    #[arg(long, env = "STOMP_RELAY_MAX_UNACKED", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(as_usize))]
    pub max_unacked: usize,

    /// Transactions one session may have open at once (BEGIN without
    /// COMMIT or ABORT).
    #[arg(long, env = "STOMP_RELAY_MAX_TRANSACTIONS", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=10_000).map(as_usize))]
    pub max_transactions: usize,

    /// Frames (SEND, ACK, NACK) one transaction may hold until COMMIT.
    #[arg(long, env = "STOMP_RELAY_MAX_TRANSACTION_FRAMES", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(as_usize))]
    pub max_transaction_frames: usize,

    /// Commands one session may have in flight (SENDs awaiting the
    /// broker's confirm, subscriptions being made, ...); past it the relay
    /// stops reading that client's frames until some complete
    /// (backpressure, not a close).
    #[arg(long, env = "STOMP_RELAY_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000).map(as_usize))]
    pub max_in_flight: usize,

    /// Messages waiting to be written to one client; a client that reads
    /// more slowly than its messages come fills it (see --slow-consumer).
    #[arg(long, env = "STOMP_RELAY_MAX_PENDING_MESSAGES", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(as_usize))]
    pub max_pending_messages: usize,

    /// What happens when a client's pending messages are full: close (an
    /// ERROR `slow consumer`, then the close) or drop (messages that need
    /// no ACK are dropped and counted in stomp_relay_messages_dropped).
    #[arg(long, env = "STOMP_RELAY_SLOW_CONSUMER", value_enum, default_value_t = SlowConsumer::Close)]
    pub slow_consumer: SlowConsumer,
}

/// Messages kept for users who are not connected (`persist`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Offline")]
pub struct OfflineOptions {
    /// Messages kept per offline user (`persist`); past it the oldest go.
    #[arg(long, env = "STOMP_RELAY_OFFLINE_MAX_MESSAGES", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub offline_max_messages: u64,

    /// Messages the embedded node keeps for offline users in all; past it
    /// the node's oldest go (counted in stomp_relay_offline_dropped_total).
    #[arg(long, env = "STOMP_RELAY_OFFLINE_MAX_NODE_MESSAGES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub offline_max_node_messages: u64,

    /// Bytes of kept messages (bodies, headers, destination names) the
    /// embedded node holds in all; past it the node's oldest go.
    #[arg(long, env = "STOMP_RELAY_OFFLINE_MAX_NODE_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub offline_max_node_bytes: u64,

    /// Seconds an offline user's messages are kept after the last one came.
    #[arg(long, env = "STOMP_RELAY_OFFLINE_TTL", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub offline_ttl: u64,
}

/// Each user's recent messages, with their positions, for replay on
/// reconnect (SUBSCRIBE with x-stream-offset).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "History")]
pub struct HistoryOptions {
    /// Messages to user destinations kept per user, each with its position
    /// (MESSAGE header x-stream-offset), so that a session that comes back
    /// gets what it missed (SUBSCRIBE with x-stream-offset); 0: no history.
    #[arg(long, env = "STOMP_RELAY_HISTORY_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub history_size: u64,

    /// Seconds a message stays in its user's history; 0: no history.
    #[arg(long, env = "STOMP_RELAY_HISTORY_TTL", default_value_t = 600, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub history_ttl: u64,

    /// Messages the embedded node keeps in all histories together; past it
    /// the node's oldest go.
    #[arg(long, env = "STOMP_RELAY_HISTORY_MAX_NODE_MESSAGES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_max_node_messages: u64,

    /// Bytes of messages (bodies, headers, names) the embedded node keeps
    /// in all histories together; past it the node's oldest go.
    #[arg(long, env = "STOMP_RELAY_HISTORY_MAX_NODE_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_max_node_bytes: u64,

    /// Topics that keep a history too, one per topic, with the same size
    /// and TTL (comma-separated /topic/ patterns: `*` for a word, `#` or
    /// `**` for any number, e.g. /topic/prices.**): their messages carry a
    /// position and a SUBSCRIBE to one of them may ask for what it missed.
    #[arg(long, env = "STOMP_RELAY_HISTORY_TOPICS", value_delimiter = ',', value_parser = parse_history_topic)]
    pub history_topics: Vec<String>,
}

/// How the node writes its logs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogOptions {
    /// Log lines as human-readable text or as one JSON object per line.
    /// The level comes from RUST_LOG (default: info).
    #[arg(long, env = "STOMP_RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum AuthMode {
    #[default]
    None,
    Users,
    Jwt,
}

/// What a session's user-destination keys are bound to (`--routing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Routing {
    /// The node's queue, delivered in-process.
    #[default]
    Node,
    /// A queue per session.
    Session,
}

/// The type of the `stomp.dispatch` queue (`--dispatch-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum QueueType {
    /// Replicated over the cluster's broker nodes.
    #[default]
    Quorum,
    /// On one broker node.
    Classic,
}

/// What a login does to the sessions its user already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SecondLogin {
    /// Every session lives; a user's messages reach all of them (tabs,
    /// devices).
    #[default]
    Allow,
    /// The newest login wins: the user's older sessions, on any node, get an
    /// ERROR saying why and are closed.
    Replace,
}
