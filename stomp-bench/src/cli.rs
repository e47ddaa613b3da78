//! The command line: one subcommand per scenario against a server given by
//! URL, and `compare`, which starts relays itself and measures them beside
//! RabbitMQ Web-STOMP.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::client::AckMode;
use crate::destination::ServerKind;

#[derive(Debug, Parser)]
#[command(
    name = "stomp-bench",
    about = "Drives a STOMP-over-WebSocket server (stomp-relay, RabbitMQ Web-STOMP, ...) and prints what it measured as JSON, one object per run",
    after_help = "Examples:\n  stomp-bench per-user --url ws://127.0.0.1:8080/ws --pid relay=1234\n  stomp-bench fan-out --server rabbitmq --url ws://127.0.0.1:15674/ws --login guest --passcode guest\n  stomp-bench compare --relay-bin target/release/stomp-relay --scenario per-user"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub connection: Connection,

    #[command(flatten)]
    pub sizes: Sizes,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// One publisher, --subscribers subscribers of one topic, --messages messages.
    FanOut,
    /// --receivers receivers each on its own destination, --senders senders, --rounds rounds.
    PerUser,
    /// Per-user delivery through the relay's HTTP API (relay only; --batch for POST /api/v1/messages).
    Api,
    /// Per-user delivery asked for by a service over AMQP on stomp.dispatch (relay in cluster mode only; --in-flight requests unconfirmed at once).
    Dispatch,
    /// --clients sessions CONNECT and SUBSCRIBE (with receipt), --concurrency at a time.
    Connect,
    /// --sessions idle sessions, each subscribed; memory per session of each --pid.
    Idle,
    /// --burst-mib MiB to one topic with --slow subscribers that never read; memory before, at the peak, after.
    Burst,
    /// Starts relays (embedded mode, cluster mode, two cluster nodes) and measures them beside RabbitMQ Web-STOMP.
    Compare(Box<CompareArgs>),
}

/// Which server, and how clients reach and log in to it.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The server's STOMP-over-WebSocket URL.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,

    /// Where senders, publishers and HTTP API calls connect (default: --url): another node of the same cluster, so that every message crosses RabbitMQ.
    #[arg(long, global = true)]
    pub send_url: Option<String>,

    /// What kind of server it is: decides the per-user destinations.
    #[arg(long, global = true, value_enum, default_value_t = ServerKind::Relay)]
    pub server: ServerKind,

    /// CONNECT's login (the relay's per-user receivers log in as their user instead).
    #[arg(long, global = true, default_value = "bench")]
    pub login: String,

    /// CONNECT's passcode.
    #[arg(long, global = true)]
    pub passcode: Option<String>,

    /// CONNECT's host header (RabbitMQ: the virtual host).
    #[arg(long, global = true, default_value = "/")]
    pub host: String,

    /// RabbitMQ: where the dispatch scenario's service publishes, and what compare's cluster-mode relays use.
    #[arg(
        long,
        global = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// A server process to account CPU and memory to, as name=pid (repeatable; processes of one name, e.g. the nodes of a cluster, are summed).
    #[arg(long = "pid", global = true, value_parser = parse_named_pid)]
    pub pids: Vec<(String, u32)>,

    /// Connections are spread over the source addresses 127.0.0.1 .. 127.0.0.N.
    #[arg(long, global = true, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_addresses: u8,

    /// What the reports call the server (default: its URL).
    #[arg(long, global = true)]
    pub label: Option<String>,

    /// Seconds a phase (setting up, receiving) may take before the run fails.
    #[arg(long, global = true, default_value_t = 300)]
    pub timeout: u64,
}

/// How big each scenario is; each uses the options it names.
#[derive(Debug, Clone, Args)]
pub struct Sizes {
    /// fan-out: subscribers of the topic.
    #[arg(long, global = true, default_value_t = 1000)]
    pub subscribers: usize,

    /// fan-out: messages published.
    #[arg(long, global = true, default_value_t = 200)]
    pub messages: usize,

    /// fan-out: how subscribers acknowledge (client: a cumulative ACK every 50 messages).
    #[arg(long, global = true, value_enum, default_value_t = AckMode::Auto)]
    pub ack: AckMode,

    /// Bytes of each message body (at least 20: the send time is in it).
    #[arg(long, global = true, default_value_t = 100)]
    pub body_bytes: usize,

    /// per-user, api, dispatch: receivers, each on its own destination.
    #[arg(long, global = true, default_value_t = 1000)]
    pub receivers: usize,

    /// per-user, api, dispatch: messages each receiver gets.
    #[arg(long, global = true, default_value_t = 10)]
    pub rounds: usize,

    /// per-user: sender sessions, the receivers split between them.
    #[arg(long, global = true, default_value_t = 1)]
    pub senders: usize,

    /// api: users per POST /api/v1/messages (without it: one POST /api/v1/users/{user}/messages per user).
    #[arg(long, global = true)]
    pub batch: Option<usize>,

    /// api: HTTP requests in flight at once (each on its own kept-alive connection).
    #[arg(long, global = true, default_value_t = 8)]
    pub http_connections: usize,

    /// dispatch: requests published to stomp.dispatch and not yet confirmed by RabbitMQ, at most.
    #[arg(long, global = true, default_value_t = 64)]
    pub in_flight: usize,

    /// connect: sessions to set up.
    #[arg(long, global = true, default_value_t = 1000)]
    pub clients: usize,

    /// connect, idle: sessions being set up at once.
    #[arg(long, global = true, default_value_t = 50)]
    pub concurrency: usize,

    /// connect, idle: subscribe to one shared topic instead of a destination per session.
    #[arg(long, global = true)]
    pub topic: bool,

    /// idle: sessions held.
    #[arg(long, global = true, default_value_t = 15_000)]
    pub sessions: usize,

    /// burst: MiB published to the topic.
    #[arg(long, global = true, default_value_t = 1024)]
    pub burst_mib: usize,

    /// burst: bytes of each message body.
    #[arg(long, global = true, default_value_t = 65_536)]
    pub burst_body_bytes: usize,

    /// burst: subscribers that never read.
    #[arg(long, global = true, default_value_t = 10)]
    pub slow: usize,
}

/// The scenarios `compare` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    FanOut,
    PerUser,
    Api,
    Dispatch,
    Connect,
    Idle,
    /// Not among [`Scenario::ALL`]: against Web-STOMP, each slow subscriber's
    /// queue would hold the whole burst in RabbitMQ.
    Burst,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::FanOut,
        Scenario::PerUser,
        Scenario::Api,
        Scenario::Dispatch,
        Scenario::Connect,
        Scenario::Idle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::FanOut => "fan-out",
            Scenario::PerUser => "per-user",
            Scenario::Api => "api",
            Scenario::Dispatch => "dispatch",
            Scenario::Connect => "connect",
            Scenario::Idle => "idle",
            Scenario::Burst => "burst",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The relay binary to start (build it with cargo build --release).
    #[arg(long)]
    pub relay_bin: PathBuf,

    /// A scenario to run (repeatable; default: all but burst).
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,

    /// One more flag for every relay started, e.g. --relay-arg=--max-in-flight=1024 (repeatable).
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    pub relay_args: Vec<String>,

    /// Redis for cluster mode.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// RabbitMQ Web-STOMP, measured beside the relays.
    #[arg(long, default_value = "ws://127.0.0.1:15674/ws")]
    pub web_stomp_url: String,

    #[arg(long, default_value = "guest")]
    pub web_stomp_login: String,

    #[arg(long, default_value = "guest")]
    pub web_stomp_passcode: String,

    /// Which servers to measure (repeatable; default: all).
    #[arg(long = "only", value_enum)]
    pub only: Vec<Contender>,
}

/// The servers `compare` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Contender {
    RelayEmbedded,
    RelayCluster,
    /// Two cluster nodes: receivers on one, senders and HTTP API calls on
    /// the other, so that every message crosses RabbitMQ between nodes.
    RelayTwoNodes,
    WebStomp,
}

impl Contender {
    pub const ALL: [Contender; 4] = [
        Contender::RelayEmbedded,
        Contender::RelayCluster,
        Contender::RelayTwoNodes,
        Contender::WebStomp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Contender::RelayEmbedded => "relay-embedded",
            Contender::RelayCluster => "relay-cluster",
            Contender::RelayTwoNodes => "relay-two-nodes",
            Contender::WebStomp => "web-stomp",
        }
    }
}

fn parse_named_pid(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| "expected name=pid, e.g. relay=1234".to_owned())?;
    let pid = pid
        .parse()
        .map_err(|_| format!("{pid:?} is not a process id"))?;
    Ok((name.to_owned(), pid))
}
