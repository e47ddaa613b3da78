//! Runs a [`Session`] over a transport: bytes in through the frame decoder,
//! frames out through the encoder, deliveries from the outbox, heart-beats
//! and timeouts, and the ERROR-then-close that ends a refused session.
//!
//! WebSocket and SockJS each implement [`Transport`]; this loop is the same
//! for both.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use stomp_parser::{Command, Decoded, Frame, FrameDecoder, encode_frame};
use tokio::time::{Instant, sleep_until};

use super::{Rejection, Session, SessionError};
use crate::broker::{Outbox, WhenFull};
use crate::config::SlowConsumer;
use crate::relay::Relay;
use crate::shutdown::Shutdown;

/// A client connection as a session sees it: chunks of bytes in, encoded
/// frames out.
pub trait Transport: Send {
    /// The next bytes from the client; `None` once it has gone.
    fn receive(&mut self) -> impl Future<Output = Option<Bytes>> + Send;

    /// Sends one encoded frame, or a heart-beat EOL. An error means the
    /// client has gone.
    fn send(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), TransportClosed>> + Send;

    /// Closes the connection once what was sent is flushed.
    fn close(&mut self) -> impl Future<Output = ()> + Send;

    /// The `access_token` of the URL the client connected to, if any.
    fn access_token(&self) -> Option<String> {
        None
    }
}

/// The client went away while the relay was writing to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client connection is closed")]
pub struct TransportClosed;

/// How a turn of the loop ended.
enum Flow {
    Continue,
    /// Close the connection, after an ERROR frame when there is a rejection.
    Close(Option<Rejection>),
}

/// How long the last ERROR frame and the close may take to reach a client.
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// A client silent for this many negotiated intervals is taken for gone.
const HEART_BEAT_GRACE: u32 = 2;

/// Serves one client until it leaves, is refused, or the node shuts down.
pub async fn serve<T: Transport>(mut transport: T, relay: Arc<Relay>, mut shutdown: Shutdown) {
    let settings = relay.settings.clone();
    let metrics = relay.metrics.clone();
    metrics.connections_total.inc();
    metrics.connections.inc();
    let when_full = match settings.slow_consumer {
        SlowConsumer::Close => WhenFull::Close,
        SlowConsumer::Drop => WhenFull::Drop(metrics.messages_dropped.clone()),
    };
    let (outbox, mut inbox, overflow) = Outbox::channel(settings.outbox_capacity, when_full);
    let mut session = Session::new(relay, outbox, transport.access_token());
    let eviction = session.eviction();
    let mut decoder = FrameDecoder::new(settings.limits);
    let mut rate = FrameRate::new(settings.max_frames_per_second);
    let started = Instant::now();
    let mut last_received = started;
    let mut last_sent = started;
    let slow_consumer = || {
        Flow::Close(Some(
            SessionError::SlowConsumer(settings.outbox_capacity).into(),
        ))
    };
    // When the frame now partly received began to arrive.
    let mut frame_begun: Option<Instant> = None;

    let rejection = loop {
        let heart_beat = session.heart_beat();
        let read_deadline = if session.is_connected() {
            heart_beat
                .incoming
                .map(|interval| last_received + interval * HEART_BEAT_GRACE)
        } else {
            Some(started + settings.connect_timeout)
        };
        let write_deadline = heart_beat.outgoing.map(|interval| last_sent + interval);
        let frame_deadline = frame_begun.map(|begun| begun + settings.frame_timeout);

        let flow = tokio::select! {
            chunk = transport.receive() => match chunk {
                None => Flow::Close(None),
                Some(chunk) => {
                    last_received = Instant::now();
                    decoder.push(chunk);
                    let flow = handle_received(&mut session, &mut decoder, &mut transport, &mut last_sent, &mut rate).await;
                    frame_begun = match decoder.buffered() {
                        0 => None,
                        _ => frame_begun.or(Some(last_received)),
                    };
                    flow
                }
            },
            Some(delivery) = inbox.recv() => match session.deliver(delivery).await {
                Ok(None) => Flow::Continue,
                Ok(Some(frame)) => {
                    metrics.messages_delivered.inc();
                    // A client that stopped reading blocks this write for
                    // good; the outbox filling meanwhile ends the session.
                    tokio::select! {
                        flow = write(&mut transport, &session, &frame, &mut last_sent) => flow,
                        () = overflow.notified() => slow_consumer(),
                    }
                }
                Err(error) => Flow::Close(Some(error.into())),
            },
            () = overflow.notified() => slow_consumer(),
            () = sleep_until_some(read_deadline) => {
                let error = if session.is_connected() {
                    SessionError::HeartBeatTimeout(last_received.elapsed().as_millis())
                } else {
                    SessionError::ConnectTimeout(settings.connect_timeout.as_secs())
                };
                Flow::Close(Some(error.into()))
            }
            () = sleep_until_some(frame_deadline) => {
                Flow::Close(Some(SessionError::FrameTimeout(settings.frame_timeout.as_secs()).into()))
            }
            () = sleep_until_some(write_deadline) => {
                last_sent = Instant::now();
                match transport.send(Bytes::from_static(b"\n")).await {
                    Ok(()) => Flow::Continue,
                    Err(TransportClosed) => Flow::Close(None),
                }
            }
            () = shutdown.recv() => Flow::Close(Some(SessionError::ShuttingDown.into())),
            () = eviction.notified() => {
                let user = session.user().unwrap_or_default().to_owned();
                Flow::Close(Some(SessionError::Replaced(user).into()))
            }
        };
        if let Flow::Close(rejection) = flow {
            break rejection;
        }
    };

    if let Some(rejection) = rejection {
        tracing::debug!(session = %session.id(), error = %rejection.error, "refused");
        metrics.error(rejection.error.summary());
        // An ERROR is always followed by closing the connection; the close
        // waits until the frame is flushed, or not long for a client that
        // does not read.
        let frame = rejection.to_frame();
        let error = write(&mut transport, &session, &frame, &mut last_sent);
        let _ = tokio::time::timeout(CLOSE_PATIENCE, error).await;
    }
    let _ = tokio::time::timeout(CLOSE_PATIENCE, transport.close()).await;
    session.close().await;
    metrics.connections.dec();
}

/// Decodes and handles every whole frame received so far.
async fn handle_received<T: Transport>(
    session: &mut Session,
    decoder: &mut FrameDecoder,
    transport: &mut T,
    last_sent: &mut Instant,
    rate: &mut FrameRate,
) -> Flow {
    loop {
        let frame = match decoder.decode() {
            Ok(Some(Decoded::Frame(frame))) => {
                session.metrics().frames_received.inc();
                if !rate.allow() {
                    let error = SessionError::TooManyFrames(rate.per_second);
                    return Flow::Close(Some(error.into()));
                }
                frame
            }
            Ok(Some(Decoded::HeartBeat)) => continue,
            Ok(None) => return Flow::Continue,
            Err(malformed) => return Flow::Close(Some(SessionError::Malformed(malformed).into())),
        };
        let reply = match session.handle(frame).await {
            Ok(reply) => reply,
            Err(rejection) => return Flow::Close(Some(rejection)),
        };
        // Frames after CONNECT are escaped as the agreed version says.
        decoder.set_version(session.version());
        for frame in &reply.frames {
            if frame.command == Command::Message {
                session.metrics().messages_delivered.inc();
            }
            if let Flow::Close(rejection) = write(transport, session, frame, last_sent).await {
                return Flow::Close(rejection);
            }
        }
        if reply.close {
            return Flow::Close(None);
        }
    }
}

/// Encodes a frame in the session's version and sends it, noting when.
async fn write<T: Transport>(
    transport: &mut T,
    session: &Session,
    frame: &Frame,
    last_sent: &mut Instant,
) -> Flow {
    let mut encoded = BytesMut::with_capacity(frame.body.len() + 256);
    if let Err(error) = encode_frame(frame, session.version(), &mut encoded) {
        // A forwarded header the client's version cannot carry: the message
        // is dropped rather than sent altered.
        tracing::warn!(session = %session.id(), %error, "frame not sent");
        return Flow::Continue;
    }
    *last_sent = Instant::now();
    match transport.send(encoded.freeze()).await {
        Ok(()) => Flow::Continue,
        Err(TransportClosed) => Flow::Close(None),
    }
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

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
