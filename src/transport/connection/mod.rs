//! The driver of one client connection: it runs a session core over any
//! transport (WebSocket, SockJS).
//!
//! Three things go on at once and never wait for each other: reading and
//! decoding what the client sends, the session's commands (carried out by
//! the node's [`CommandRunner`]), and
//! writing (a [`writer`] task that drains everything ready in one write).
//! A slow broker holds back that session's commands and, past
//! `--max-in-flight`, the reading of its client's frames (backpressure),
//! never its heart-beats or deliveries. The driver also keeps the clock:
//! the CONNECT timeout, heart-beats, the frame timeout and the frame rate.

pub mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use stomp_parser::{Decoded, Frame, FrameDecoder, Limits, Version, encode_frame};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;
use uuid::Uuid;

use crate::broker::{Alarm, Offered, Outbox, SlowConsumer};
use crate::metrics::{DELIVERY_SAMPLE, Metrics};
use crate::relay::Node;
use crate::relay::runner::CommandRunner;
use crate::session::{Output, Rejection, Session, SessionContext, SessionError};
use crate::shutdown::Shutdown;
use writer::{Closing, Outgoing, TransportWriter};

/// A client connection as the driver sees it: a reading half and a
/// writing half that run apart.
pub trait Transport: Send + 'static {
    type Reader: TransportReader;
    type Writer: TransportWriter;

    /// The transport's name in `/metrics`: `websocket` or `sockjs`.
    const KIND: &'static str;

    fn split(self) -> (Self::Reader, Self::Writer);

    /// The `access_token` of the URL the client connected to, if any.
    fn access_token(&self) -> Option<String> {
        None
    }

    /// After the relay closed the connection because the client sent too
    /// much: reads and drops what the client is still sending, for a
    /// while, so that the ERROR and the close reach it (a socket closed
    /// with bytes unread is reset, and the client loses what it had not
    /// read yet).
    fn linger(reader: Self::Reader, writer: Self::Writer) -> Lingering {
        drop((reader, writer));
        Box::pin(std::future::ready(()))
    }
}

/// How long, and for how many bytes, a connection refused for a message
/// too large reads on and drops what its client still sends: enough for a
/// client that sent a message of a few hundred MiB to finish sending it
/// and then read the ERROR and the close, and no more. Nothing read is
/// kept.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_BYTES: usize = 256 * 1024 * 1024;

/// What [`Transport::linger`] does, run on a task of its own.
pub type Lingering = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a transport reads.
pub trait TransportReader: Send {
    /// The next bytes from the client, or why there are none.
    fn receive(&mut self) -> impl Future<Output = Result<Bytes, ReceiveEnd>> + Send;
}

/// Why a transport gives no more of what its client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveEnd {
    /// The client has gone.
    Closed,
    /// The client sent a message over the transport's size limit.
    TooLarge,
}

/// The client went away while the relay was writing to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client connection is closed")]
pub struct TransportClosed;

/// The limits and timers of a connection, from the configuration.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Messages a session may have waiting to be written, in its outbox;
    /// past it the client is a slow consumer.
    pub max_pending_messages: usize,
    /// What a slow consumer's full outbox does.
    pub slow_consumer: SlowConsumer,
    /// How long a frame may take to arrive once its first byte has: a
    /// client that trickles a frame (slowloris) or stops halfway is cut.
    pub frame_timeout: Duration,
    /// Frame limits of the parser.
    pub limits: Limits,
    /// Frames a client may send per second, in bursts of as many (0: no
    /// limit).
    pub max_frames_per_second: u32,
    /// Commands (SENDs awaiting confirms, subscriptions being made, ...) a
    /// session may have in flight before its client's frames wait.
    pub max_in_flight: usize,
}

impl Default for ConnectionSettings {
    fn default() -> ConnectionSettings {
        ConnectionSettings {
            connect_timeout: Duration::from_secs(10),
            max_pending_messages: 1024,
            slow_consumer: SlowConsumer::Close,
            frame_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            max_frames_per_second: 0,
            max_in_flight: 256,
        }
    }
}

/// What every connection of a node runs with: its limits, what its
/// session core consults, and the node that carries out its commands.
pub struct ConnectionContext {
    pub settings: ConnectionSettings,
    pub session: Arc<SessionContext>,
    pub node: Arc<Node>,
}

impl ConnectionContext {
    pub fn metrics(&self) -> &Metrics {
        &self.node.metrics
    }
}

/// Where a connection's turn to be told to go falls in the drain period
/// (0 to 1): taken from its session id's random bits (the 48 before the
/// version digit of a v4 UUID), so that the turns fall evenly.
fn drain_place(id: Uuid) -> f64 {
    const RANDOM_BITS: u32 = 48;
    (id.as_u64_pair().0 >> (64 - RANDOM_BITS)) as f64 / (1u64 << RANDOM_BITS) as f64
}

/// How long the last ERROR frame and the close may take to reach a client.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// A client silent for this many negotiated intervals is taken for gone.
const HEART_BEAT_GRACE: u32 = 2;

/// Frames queued for the writer past which the driver stops taking
/// deliveries and reading frames, until the writer catches up.
const WRITE_QUEUE_LIMIT: usize = 256;

/// Serves one client until it leaves, is refused, or the node shuts down.
pub fn serve<T: Transport>(
    transport: T,
    context: Arc<ConnectionContext>,
    shutdown: Shutdown,
) -> impl Future<Output = ()> + Send {
    // Split before the session's future exists, so that an idle session's
    // task holds the two halves only, not the whole transport beside them.
    let access_token = transport.access_token();
    let (reader, writer) = transport.split();
    let id = Uuid::new_v4();
    // Every line logged for the session names it and, once CONNECT has
    // told, its user.
    let span = tracing::info_span!("session", session = %id, user = tracing::field::Empty);
    let connection = Connection {
        id,
        transport: T::KIND,
        linger: T::linger,
        access_token,
    };
    serve_halves(connection, reader, writer, context, shutdown).instrument(span)
}

/// What a connection's session starts from.
struct Connection<R, W> {
    id: Uuid,
    /// Its transport's name in `/metrics`.
    transport: &'static str,
    linger: fn(R, W) -> Lingering,
    access_token: Option<String>,
}

async fn serve_halves<R: TransportReader, W: TransportWriter>(
    connection: Connection<R, W>,
    mut reader: R,
    writer: W,
    context: Arc<ConnectionContext>,
    mut shutdown: Shutdown,
) {
    let Connection {
        id,
        transport,
        linger,
        access_token,
    } = connection;
    let settings = &context.settings;
    let metrics = context.metrics();
    let (open_connections, accepted) = metrics.connection_of(transport);
    accepted.inc();
    open_connections.inc();
    let (outbox, inbox, alarm) = Outbox::channel(
        settings.max_pending_messages,
        settings.slow_consumer,
        metrics.messages_dropped.clone(),
    );
    let mut session = Session::new(id, context.session.clone(), access_token);
    let mut runner = CommandRunner::new(id, context.node.clone(), outbox);
    let eviction = runner.eviction();
    let outgoing = Outgoing::default();
    let mut write_task = tokio::spawn(writer::run(writer, outgoing.clone()).in_current_span());
    let mut decoder = FrameDecoder::new(settings.limits);
    let mut rate = FrameRate::new(settings.max_frames_per_second);
    let started = Instant::now();
    let mut last_received = started;
    // When the frame now partly received began to arrive.
    let mut frame_begun: Option<Instant> = None;
    // Once connected: when its login stops being good, if it does.
    let mut login_deadline: Option<Option<Instant>> = None;
    // Whole frames wait in the decoder while the session takes none.
    let mut frames_waiting = false;
    let mut was_reading = true;
    let timer = sleep_until(started + settings.connect_timeout);
    tokio::pin!(timer);
    let mut closing = Closing::Normal;
    // Whether the session is counted as connected, and the subscriptions
    // it is counted with.
    let mut counted = false;
    let mut subscriptions_counted = 0;
    let mut deliveries: u64 = 0;

    let rejection = 'session: loop {
        // Hand the session every whole frame it takes now.
        while frames_waiting && session.accepts_frames() && !saturated(&runner, &outgoing, settings)
        {
            match decoder.decode() {
                Ok(Some(Decoded::Frame(frame))) => {
                    frame_begun = None;
                    metrics.frames_received.count(frame.command);
                    if !rate.allow() {
                        session.abort(SessionError::TooManyFrames(rate.per_second));
                    } else {
                        session.handle_frame(frame);
                        // Frames after CONNECT are escaped as agreed.
                        decoder.set_version(session.version());
                    }
                }
                Ok(Some(Decoded::HeartBeat)) => frame_begun = None,
                Ok(None) => {
                    frames_waiting = false;
                    if decoder.buffered() > 0 {
                        frame_begun = frame_begun.or(Some(last_received));
                    }
                }
                Err(malformed) => session.abort(SessionError::Malformed(malformed)),
            }
            if let Some(close) = carry_out(&mut session, &mut runner, &outgoing, metrics) {
                break 'session close;
            }
        }
        if let Some(close) = carry_out(&mut session, &mut runner, &outgoing, metrics) {
            break 'session close;
        }
        outgoing.set_heart_beat(session.heart_beat().outgoing);
        if !counted && session.is_connected() {
            counted = true;
            metrics.sessions.inc();
            if let Some(user) = session.user() {
                tracing::Span::current().record("user", user);
            }
        }
        let subscriptions = session.subscription_count();
        if subscriptions != subscriptions_counted {
            metrics
                .subscriptions
                .inc_by(subscriptions as i64 - subscriptions_counted as i64);
            subscriptions_counted = subscriptions;
        }

        let reading =
            !frames_waiting && session.accepts_frames() && !saturated(&runner, &outgoing, settings);
        if reading && !was_reading {
            // Time spent not reading is not the client's silence.
            last_received = Instant::now();
            frame_begun = frame_begun.map(|_| last_received);
        }
        was_reading = reading;
        let read_deadline = match (reading, session.is_connected()) {
            (false, _) => None,
            (true, true) => session
                .heart_beat()
                .incoming
                .map(|interval| last_received + interval * HEART_BEAT_GRACE),
            (true, false) => Some(started + settings.connect_timeout),
        };
        let frame_deadline = frame_begun
            .filter(|_| reading)
            .map(|begun| begun + settings.frame_timeout);
        if login_deadline.is_none() && session.is_connected() {
            login_deadline = Some(session.login_valid_until().map(instant_of));
        }
        let expiry_deadline = login_deadline.flatten();
        // One timer for every deadline, kept across turns of the loop and
        // moved only when the deadline does: a timer made afresh on every
        // turn would be registered and dropped once per delivery.
        let deadline = read_deadline
            .into_iter()
            .chain(frame_deadline)
            .chain(expiry_deadline)
            .min();
        if let Some(deadline) = deadline
            && timer.deadline() != deadline
        {
            timer.as_mut().reset(deadline);
        }
        let room_to_write = outgoing.waiting() < WRITE_QUEUE_LIMIT;

        tokio::select! {
            chunk = reader.receive(), if reading => match chunk {
                Err(ReceiveEnd::Closed) => break 'session None,
                Err(ReceiveEnd::TooLarge) => {
                    closing = Closing::TooLarge;
                    session.abort(SessionError::MessageTooLarge(settings.limits.max_frame_size));
                }
                Ok(chunk) => {
                    last_received = Instant::now();
                    decoder.push(chunk);
                    frames_waiting = true;
                }
            },
            Ok(Offered { delivery, at }) = inbox.recv_async(), if room_to_write => {
                deliveries += 1;
                if deliveries.is_multiple_of(DELIVERY_SAMPLE) {
                    metrics.delivery_seconds.observe(at.elapsed().as_secs_f64());
                }
                session.deliver(delivery);
            }
            (command, event) = runner.next(), if runner.in_flight() > 0 => {
                session.complete(command, event);
            }
            () = outgoing.drained(), if !room_to_write => {}
            () = outgoing.gone() => break 'session None,
            () = alarm.read_offline_again() => session.read_offline_again(),
            alarm = alarm.raised() => session.abort(match alarm {
                Alarm::Overflow => SessionError::SlowConsumer(settings.max_pending_messages),
                Alarm::SubscriptionCancelled { subscription, destination } => {
                    SessionError::SubscriptionCancelled {
                        subscription: subscription.to_string(),
                        destination: destination.to_string(),
                    }
                }
            }),
            () = &mut timer, if deadline.is_some() => {
                let error = if expiry_deadline == deadline {
                    SessionError::TokenExpired
                } else if frame_deadline == deadline {
                    SessionError::FrameTimeout(settings.frame_timeout.as_secs())
                } else if session.is_connected() {
                    SessionError::HeartBeatTimeout(last_received.elapsed().as_millis())
                } else {
                    SessionError::ConnectTimeout(settings.connect_timeout.as_secs())
                };
                session.abort(error);
            }
            () = shutdown.turn(drain_place(id)) => session.abort(SessionError::ShuttingDown),
            () = eviction.notified() => {
                let user = session.user().unwrap_or_default().to_owned();
                session.abort(SessionError::Replaced(user));
            }
        }
    };

    if let Some(rejection) = &rejection {
        tracing::debug!(error = %rejection.error, "refused");
        metrics.error(rejection.error.summary());
        metrics.frames_sent.count(stomp_parser::Command::Error);
        // An ERROR is always followed by closing the connection.
        push_frame(&outgoing, &rejection.to_frame(), session.version(), id);
    }
    outgoing.finish(closing);
    // The close waits until what was queued is flushed, or not long for a
    // client that does not read.
    let writer = match tokio::time::timeout(CLOSE_PATIENCE, &mut write_task).await {
        Ok(written) => written.ok(),
        Err(_) => {
            write_task.abort();
            None
        }
    };
    if let (Closing::TooLarge, Some(writer)) = (closing, writer) {
        tokio::spawn(linger(reader, writer));
    }
    let teardown = session.close();
    // Boxed: kept inline, the teardown's state would make every idle
    // connection's task half as large again (its largest await).
    Box::pin(runner.finish(teardown)).await;
    metrics.subscriptions.dec_by(subscriptions_counted as i64);
    if counted {
        metrics.sessions.dec();
    }
    open_connections.dec();
}

/// Whether the session has as much in flight, or queued for the client,
/// as it may: its client's frames then wait.
fn saturated(runner: &CommandRunner, outgoing: &Outgoing, settings: &ConnectionSettings) -> bool {
    runner.in_flight() >= settings.max_in_flight || outgoing.waiting() >= WRITE_QUEUE_LIMIT
}

/// Takes what the session gave out: frames go to the writer, commands to
/// the runner. `Some` when the session has ended (with the ERROR to send,
/// if any).
fn carry_out(
    session: &mut Session,
    runner: &mut CommandRunner,
    outgoing: &Outgoing,
    metrics: &Metrics,
) -> Option<Option<Rejection>> {
    while let Some(output) = session.poll_output() {
        match output {
            Output::Frame(frame) => {
                metrics.frames_sent.count(frame.command);
                if frame.command == stomp_parser::Command::Message {
                    metrics.messages_delivered.inc();
                }
                push_frame(outgoing, &frame, session.version(), session.id());
            }
            Output::Command(id, command) => runner.start(id, command),
            Output::Send(id, send) => runner.send(id, send),
            Output::Close(rejection) => return Some(rejection),
        }
    }
    None
}

/// Encodes a frame in the session's version and queues it for the writer.
fn push_frame(outgoing: &Outgoing, frame: &Frame, version: Version, session: Uuid) {
    let mut encoded = BytesMut::with_capacity(frame.body.len() + 256);
    if let Err(error) = encode_frame(frame, version, &mut encoded) {
        // A forwarded header the client's version cannot carry: the message
        // is dropped rather than sent altered.
        tracing::warn!(%session, %error, "frame not sent");
        return;
    }
    outgoing.push(encoded.freeze());
}

/// A token bucket of frames: `per_second` a second, in bursts of as many,
/// so that one client cannot make its node parse and route without end.
struct FrameRate {
    per_second: u32,
    tokens: f64,
    refilled: Instant,
}

impl FrameRate {
    fn new(per_second: u32) -> FrameRate {
        FrameRate {
            per_second,
            tokens: f64::from(per_second),
            refilled: Instant::now(),
        }
    }

    /// Takes a frame's token; false when the client sends too fast.
    fn allow(&mut self) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * f64::from(self.per_second);
        self.tokens = (self.tokens + earned).min(f64::from(self.per_second));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The instant of a wall-clock time, for a timer: now, when it has passed.
fn instant_of(time: std::time::SystemTime) -> Instant {
    let left = time
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
