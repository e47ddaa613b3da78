//! Wiring: binds the listener, builds the node's services, serves every
//! route, and shuts down in order: stop accepting, tell every client, wait
//! for the sessions to end.
//!
//! Connections are accepted here and served by hyper, each request by the
//! node's one routing table ([`routes::table`]) through warp's service
//! adapter. Owning the accept loop keeps every connection in view: for
//! admission (limits in all and per address), the header-read timeout, and
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;

use crate::auth::acl::Acl;
use crate::auth::{self, AuthSetupError, Authenticator, JwtVerifier, TokenKeys, UsersFile};
use crate::broker::BrokerError;
use crate::broker::amqp::AmqpBroker;
use crate::config::{AuthMode, AuthOptions, ClusterSettings, Config, Mode};
use crate::dispatch::offline::redis::RedisOfflineStore;
use crate::history::Histories;
use crate::history::redis::RedisHistory;
use crate::metrics::Metrics;
use crate::registry::redis::connection::RedisAddress;
use crate::registry::redis::{NodeLiveness, RedisRegistry};
use crate::relay::Node;
use crate::retry;
use crate::session::SessionContext;
use crate::shutdown;
use crate::transport::admission::{self, Admission, Refusal, refused};
use crate::transport::connection::ConnectionContext;
use crate::transport::forwarded::TrustedProxies;
use crate::transport::http_api::{ApiAccess, ApiServices, PeerAddr};
use crate::transport::routes::{self, RouteSettings};
use crate::transport::starting::Starting;

/// How long shutdown waits, after the drain period, for the last sessions
/// to send their ERROR and close.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    // The cause is the source, which the caller's report lists below.
    #[error("cannot use RabbitMQ")]
    Broker(#[from] BrokerError),
    #[error("authentication: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("{what}: {reason}")]
    Url { what: &'static str, reason: String },
}

/// A node whose listener is bound but which serves nothing yet. Binding
/// first lets the caller learn the real address (tests listen on port 0) and
/// report a taken port as an error rather than a panic.
pub struct BoundServer {
    listener: TcpListener,
    config: Config,
    node: Arc<Node>,
    /// What its WebSocket and SockJS connections run with.
    connections: Arc<ConnectionContext>,
}

impl BoundServer {
    /// Builds the node's services and binds `config.listener.listen`.
    pub async fn bind(config: Config) -> Result<BoundServer, ServerError> {
        let listen = config.listener.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: listen,
                source,
            })?;
        let node_id = config.node_id.clone();
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        // Refused before anything is connected: a typo in a key file should
        // not cost a RabbitMQ connection.
        let auth = authenticator(&config.auth)?;
        let acl = destination_rules(&config.auth, auth.is_enforced())?;
        let (node, listener) = match &config.mode {
            Mode::Embedded => (
                Node::embedded(
                    node_id,
                    &address,
                    config.offline,
                    config.history.clone(),
                    auth,
                ),
                listener,
            ),
            Mode::Cluster(cluster) => {
                let ClusterSettings {
                    amqp_urls,
                    amqp: amqp_settings,
                    redis,
                    redis_prefix,
                    node_ttl,
                } = cluster;
                // A mistyped URL is said at once; an unreachable broker is
                // waited for.
                for amqp_url in amqp_urls {
                    amqp_url
                        .parse::<lapin::uri::AMQPUri>()
                        .map_err(|reason| ServerError::Url {
                            what: "--amqp-url",
                            reason,
                        })?;
                }
                let redis_flag = match redis {
                    RedisAddress::Server(_) => "--redis-url",
                    RedisAddress::Cluster(_) => "--redis-cluster-nodes",
                };
                for redis_url in redis.urls() {
                    redis::Client::open(redis_url.as_str()).map_err(|error| ServerError::Url {
                        what: redis_flag,
                        reason: error.to_string(),
                    })?;
                }
                let metrics = Metrics::default();
                // Probes are answered while the node waits.
                let starting = Starting::answer(listener);
                starting.waiting_for("RabbitMQ");
                let broker = retry::until_reachable("RabbitMQ", || {
                    AmqpBroker::connect(
                        amqp_urls,
                        &node_id,
                        *amqp_settings,
                        metrics.broker.clone(),
                        metrics.unclaimed.clone(),
                    )
                })
                .await;
                let liveness = NodeLiveness {
                    node: node_id.clone(),
                    address: address.clone(),
                    ttl: *node_ttl,
                };
                starting.waiting_for("Redis");
                let registry = retry::until_reachable("Redis", || {
                    RedisRegistry::connect(
                        redis,
                        redis_prefix,
                        liveness.clone(),
                        metrics.redis.clone(),
                    )
                })
                .await;
                let offline =
                    RedisOfflineStore::new(registry.connection(), redis_prefix, config.offline);
                let history = config.history.enabled().then(|| Histories {
                    topics: config.history.topics.clone(),
                    store: Arc::new(RedisHistory::new(
                        registry.connection(),
                        redis_prefix,
                        config.history.clone(),
                    )),
                });
                let listener = starting.serve().await.map_err(|source| ServerError::Bind {
                    addr: listen,
                    source,
                })?;
                let node = Node::new(
                    node_id,
                    Arc::new(broker),
                    Arc::new(registry),
                    Arc::new(offline),
                    history,
                    auth,
                    metrics,
                );
                (node, listener)
            }
        };
        if let Some(requests) = node.broker.dispatch_requests().await? {
            tokio::spawn(node.dispatcher.clone().serve_requests(requests));
        }
        let node = Arc::new(node);
        if let Some(evictions) = node.registry.evictions() {
            tokio::spawn(Node::carry_out_evictions(Arc::downgrade(&node), evictions));
        }
        let connections = Arc::new(ConnectionContext {
            settings: config.connection.clone(),
            session: SessionContext::new(config.session.clone(), acl, node.id.clone()),
            node: node.clone(),
        });
        Ok(BoundServer {
            listener,
            config,
            node,
            connections,
        })
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` completes, then shuts down gracefully.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let Config {
            node_id,
            mode,
            routes: RouteSettings { ws_path, .. },
            ..
        } = &self.config;
        let mode_name = match mode {
            Mode::Embedded => "embedded (in-process broker, in-memory registry)",
            Mode::Cluster(_) => "cluster (RabbitMQ and Redis)",
        };
        match self.listener.local_addr() {
            Ok(addr) => {
                tracing::info!(%addr, %node_id, ws_path, mode = mode_name, "stomp-relay listening")
            }
            Err(error) => tracing::warn!(%error, "listening on an unknown address"),
        }

        let drain_period = self.config.listener.drain_period;
        let (trigger, shutdown) = shutdown::channel(drain_period);
        let routes = warp::service(routes::table(
            &self.config.routes,
            self.connections.clone(),
            ApiServices {
                dispatcher: self.node.dispatcher.clone(),
                registry: self.node.registry.clone(),
                broker: self.node.broker.clone(),
                metrics: self.node.metrics.clone(),
            },
            api_access(&self.config, &self.node.auth),
            shutdown,
        ));
        let connections = GracefulShutdown::new();
        let mut http = auto::Builder::new(TokioExecutor::new());
        let listener_settings = &self.config.listener;
        let http2 = listener_settings.http2;
        // A request's headers trickled in (HTTP slowloris) or never sent
        // hold a connection's place: they get as long as a CONNECT does.
        let connect_timeout = self.config.connection.connect_timeout;
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(connect_timeout);

        let admission = Admission::new(
            listener_settings.max_connections,
            listener_settings.max_connections_per_ip,
        );
        let proxies = TrustedProxies::new(&listener_settings.trusted_proxies);
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off
                        // rather than spin; established sessions go on.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stop => break,
            };
            let admitted = if proxies.trusts(peer.ip()) {
                admission.admit_proxy()
            } else {
                admission.admit(peer.ip())
            };
            let ticket = match admitted {
                Ok(ticket) => Arc::new(ticket),
                Err(refusal) => {
                    tracing::debug!(%peer, %refusal, "connection turned away");
                    self.node.metrics.error(&refusal.to_string());
                    tokio::spawn(turn_away(stream, refusal));
                    continue;
                }
            };
            let routes = routes.clone();
            let request_ticket = ticket.clone();
            let (proxies, admission) = (proxies.clone(), admission.clone());
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                // Through a trusted proxy, the request counts, and is
                // logged, for the client it was forwarded for.
                let client = proxies.client_of(peer.ip(), request.headers());
                if client != peer.ip() {
                    match admission.admit_forwarded(client) {
                        Ok(forwarded) => {
                            request.extensions_mut().insert(Arc::new(forwarded));
                        }
                        Err(refusal) => {
                            tracing::debug!(%peer, %client, %refusal, "forwarded request turned away");
                            return Either::Left(std::future::ready(Ok(refused(refusal))));
                        }
                    }
                }
                request
                    .extensions_mut()
                    .insert(PeerAddr(SocketAddr::new(client, peer.port())));
                // An upgraded connection outlives this HTTP connection: its
                // task keeps the place (see websocket::accept).
                request.extensions_mut().insert(request_ticket.clone());
                Either::Right(routes.clone().call(request))
            });
            let http = http.clone();
            let watcher = connections.watcher();
            tokio::spawn(async move {
                match opening(&stream, connect_timeout).await {
                    Opening::Http1 => {}
                    Opening::Http2 if http2 => {}
                    Opening::Http2 => {
                        tracing::debug!(%peer, "closed an HTTP/2 connection (serve it with --http2)");
                        return;
                    }
                    Opening::None => {
                        tracing::debug!(%peer, "closed a connection that sent no request in time");
                        return;
                    }
                }
                let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%peer, %error, "HTTP connection ended with an error");
                }
                drop(ticket);
            });
        }

        let sessions = self.node.metrics.sessions.get();
        tracing::info!(
            sessions,
            drain_period_s = drain_period.as_secs_f64(),
            "shutting down: no new connections; telling connected clients to go, spread over the drain period"
        );
        drop(self.listener);
        // The table holds a shutdown receiver: dropped, so that only
        // sessions keep the trigger waiting.
        drop(routes);
        trigger.signal();
        let patience = drain_period + CLOSE_PATIENCE;
        if tokio::time::timeout(patience, connections.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open after {patience:?}");
        }
        if !trigger.wait(patience).await {
            tracing::warn!("some sessions did not close within {patience:?}");
        }
        self.node.broker.shutdown().await;
        self.node.registry.shutdown().await;
        tracing::info!("stomp-relay stopped");
    }
}

/// The beginning of HTTP/2's connection preface.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a new connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Http1,
    /// HTTP/2's preface (prior knowledge).
    Http2,
    /// Nothing in time, or the client went away.
    None,
}

/// Waits, at most `patience`, until a new connection has sent enough for
/// its protocol to be told: HTTP/2's whole preface, or anything that is not
/// its beginning. hyper's reading of it has no timeout of its own (and
/// serves HTTP/2 whatever it is told, on connections that may upgrade), so
/// a connection that sends nothing, or half a preface, would otherwise hold
/// its place for ever.
async fn opening(stream: &tokio::net::TcpStream, patience: Duration) -> Opening {
    let mut opening = [0u8; HTTP2_PREFACE.len()];
    tokio::time::timeout(patience, async {
        loop {
            match stream.peek(&mut opening).await {
                Ok(0) | Err(_) => return Opening::None,
                Ok(read) if read == opening.len() && opening == HTTP2_PREFACE => {
                    return Opening::Http2;
                }
                Ok(read) if read == opening.len() || opening[..read] != HTTP2_PREFACE[..read] => {
                    return Opening::Http1;
                }
                // Part of the preface: peeking again at once would spin.
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .unwrap_or(Opening::None)
}

/// How this node checks logins, from `--auth` and its files.
fn authenticator(config: &AuthOptions) -> Result<Authenticator, AuthSetupError> {
    match config.mode {
        AuthMode::None => {
            tracing::warn!(
                "--auth none: anyone may connect as any user they name; for development only"
            );
            Ok(Authenticator::None)
        }
        AuthMode::Users => {
            let path = config
                .users_file
                .as_deref()
                .ok_or_else(|| AuthSetupError::Key("--auth users needs --users-file".into()))?;
            let users = UsersFile::load(path)?;
            tracing::info!(users = users.len(), file = %path.display(), "logins are checked against the users file");
            Ok(Authenticator::Users(Arc::new(users)))
        }
        AuthMode::Jwt => {
            let keys = match (
                &config.jwt_secret,
                &config.jwt_public_key,
                &config.jwks_file,
            ) {
                (Some(secret), None, None) => TokenKeys::Secret(secret.clone()),
                (None, Some(pem), None) => TokenKeys::PublicKeyPem(auth::read_file(pem)?),
                (None, None, Some(jwks)) => TokenKeys::Jwks(auth::read_text_file(jwks)?),
                _ => {
                    return Err(AuthSetupError::Key(
                        "--auth jwt needs exactly one of --jwt-secret, --jwt-public-key and --jwks-file".into(),
                    ));
                }
            };
            let verifier = JwtVerifier::new(
                keys,
                config.jwt_audience.clone(),
                config.jwt_issuer.clone(),
                &config.jwt_roles_claim,
                Duration::from_secs(config.jwt_leeway),
            )?;
            tracing::info!("logins need a signed token (JWT)");
            Ok(Authenticator::Jwt(Arc::new(verifier)))
        }
    }
}

/// Where clients may subscribe and send: `--acl-file`, else the defaults
/// with authentication on, else everything (`--auth none`).
fn destination_rules(config: &AuthOptions, authenticated: bool) -> Result<Acl, AuthSetupError> {
    match &config.acl_file {
        Some(path) => {
            let acl = Acl::load(path)?;
            if !authenticated {
                tracing::warn!(
                    "--acl-file with --auth none: the rules apply to whatever user name clients give"
                );
            }
            tracing::info!(rules = acl.len(), file = %path.display(), "destination ACL loaded");
            Ok(acl)
        }
        None if authenticated => Ok(Acl::defaults()),
        None => Ok(Acl::allow_all()),
    }
}

/// Answers a connection past a limit with a 503 and closes it.
async fn turn_away(mut stream: tokio::net::TcpStream, refusal: Refusal) {
    use tokio::io::AsyncWriteExt;
    let _ = stream
        .write_all(&admission::refusal_response(refusal))
        .await;
    let _ = stream.shutdown().await;
}

/// Who may use the HTTP API, said once at start.
fn api_access(config: &Config, auth: &Authenticator) -> ApiAccess {
    let logins = auth
        .is_enforced()
        .then(|| (auth.clone(), config.auth.api_role.clone()));
    match (&config.api_token, &logins) {
        (None, None) => {
            tracing::warn!("no --api-token: the HTTP API answers loopback clients only");
        }
        (None, Some((_, role))) => {
            tracing::info!(%role, "the HTTP API answers users with the API role, and loopback clients");
        }
        (Some(_), _) => {}
    }
    ApiAccess::new(
        config.api_token.as_deref(),
        logins,
        &config.routes.allowed_origins,
    )
}
