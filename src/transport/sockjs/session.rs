//! SockJS sessions: what outlives any one HTTP request of a client.
//!
//! A session has an application on one side (a STOMP session, or one of
//! the protocol test suite's services) and, at most one at a time, a
//! receiving connection on the other (an XHR poll, a stream, a
//! WebSocket). Messages the application sends wait in the session until a
//! receiver takes them; messages the client sends (`xhr_send` and the
//! like) go to the application through a channel. A session nobody
//! receives from for the disconnect delay is closed, which ends its
//! application (a STOMP session is then cleaned up like any other); a
//! closed session keeps answering its close frame for that delay, then
//! goes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use super::frame::{self, CloseReason};
use crate::transport::admission::{Refusal, Ticket};
use crate::transport::connection::writer::{Closing, TransportWriter};
use crate::transport::connection::{ReceiveEnd, Transport, TransportClosed, TransportReader};

/// Messages a client may send ahead of its application.
const INCOMING_BACKLOG: usize = 256;

/// Text the application may have waiting for a receiver; past it the
/// client is too slow (or gone) and the session is closed.
const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// One SockJS session.
#[derive(Debug)]
pub struct Session {
    state: Mutex<State>,
    /// Wakes the receiver when there is something for it.
    changed: Notify,
    /// Wakes connections waiting for the receiver to let go.
    released: Notify,
    /// The protocol test suite's echo service: what the client sends is
    /// queued back at once, before its send request is answered, so that
    /// the suite sees its messages in one frame.
    echo: bool,
    /// The session's place among the endpoint's sessions (none for a
    /// session WebSocket, whose TCP connection holds one).
    _place: Option<Ticket>,
}

#[derive(Debug)]
struct State {
    /// Messages for the client, oldest first.
    outgoing: VecDeque<String>,
    pending_bytes: usize,
    closed: Option<CloseReason>,
    /// A receiving connection is attached now.
    receiving: bool,
    /// When the session last had a receiver (or was closed).
    since: Instant,
    /// Where the client's messages go; `None` once the session is closed,
    /// or refused a message too large.
    incoming: Option<mpsc::Sender<String>>,
    /// The client sent a message over the size limit: its input has ended,
    /// for that reason.
    too_large: bool,
}

/// What a new receiving connection gets.
#[derive(Debug)]
pub enum Attach {
    /// It is the receiver now; detach it when done.
    Receiving,
    /// Another connection receives: it gets this close frame and ends.
    Busy(CloseReason),
    /// The session is closed: its close frame.
    Closed(CloseReason),
}

impl Session {
    /// A new session and the application's end of it; an `echo` session
    /// sends back what it receives, with no application.
    pub fn open(echo: bool, place: Option<Ticket>) -> (Arc<Session>, Channel) {
        let (incoming, received) = mpsc::channel(INCOMING_BACKLOG);
        let session = Arc::new(Session {
            state: Mutex::new(State {
                outgoing: VecDeque::new(),
                pending_bytes: 0,
                closed: None,
                receiving: false,
                since: Instant::now(),
                incoming: Some(incoming),
                too_large: false,
            }),
            changed: Notify::new(),
            released: Notify::new(),
            echo,
            _place: place,
        });
        let channel = Channel {
            session: session.clone(),
            received,
            access_token: None,
        };
        (session, channel)
    }

    /// Makes a connection the receiver, unless one is already. The
    /// connection that opened the session always is: its client must see
    /// the open frame before any close frame.
    pub fn attach(&self, opening: bool) -> Attach {
        let mut state = self.state.lock();
        if opening {
            state.receiving = true;
            return Attach::Receiving;
        }
        // A session that closed with messages still queued (the ERROR frame
        // that ended its STOMP session) hands them to the next receiver
        // before its close frame.
        if let Some(reason) = &state.closed
            && state.outgoing.is_empty()
        {
            return Attach::Closed(reason.clone());
        }
        if state.receiving {
            return Attach::Busy(frame::ANOTHER_CONNECTION);
        }
        state.receiving = true;
        Attach::Receiving
    }

    /// [`Session::attach`], but a connection that finds another receiving
    /// waits up to `grace` for it to let go: a client that aborts a poll and
    /// polls again at once must not be told that its own dead connection
    /// is another one.
    pub async fn attach_within(&self, opening: bool, grace: Duration) -> Attach {
        let released = self.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        match self.attach(opening) {
            Attach::Busy(_) => {
                let _ = tokio::time::timeout(grace, released).await;
                self.attach(opening)
            }
            attached => attached,
        }
    }

    /// The receiver is done. One that was cut off before its response was
    /// complete closes the session, as SockJS servers do: the client may
    /// have lost messages.
    pub fn detach(&self, interrupted: bool) {
        let mut state = self.state.lock();
        state.receiving = false;
        state.since = Instant::now();
        if interrupted && state.closed.is_none() {
            state.close(frame::INTERRUPTED);
        }
        drop(state);
        self.released.notify_waiters();
    }

    /// The next frame for the receiver, waiting at most `heartbeat` (then
    /// a heartbeat frame). The flag is set on the close frame, the last.
    pub async fn next_frame(&self, heartbeat: Duration) -> (String, bool) {
        loop {
            let changed = self.changed.notified();
            {
                let mut state = self.state.lock();
                if !state.outgoing.is_empty() {
                    let frame = frame::messages(state.outgoing.iter().map(String::as_str));
                    state.outgoing.clear();
                    state.pending_bytes = 0;
                    return (frame, false);
                }
                if let Some(reason) = &state.closed {
                    return (frame::close(reason), true);
                }
            }
            if tokio::time::timeout(heartbeat, changed).await.is_err() {
                return (frame::HEARTBEAT.to_owned(), false);
            }
        }
    }

    /// Passes messages the client sent to the application. False when the
    /// session is closed.
    pub async fn receive_from_client(&self, messages: Vec<String>) -> bool {
        if self.echo {
            return messages
                .into_iter()
                .all(|message| self.send_to_client(message));
        }
        let Some(incoming) = self.state.lock().incoming.clone() else {
            return false;
        };
        for message in messages {
            if incoming.send(message).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Queues a message for the client. False when the session is closed,
    /// or was just closed because its client lags too far behind.
    fn send_to_client(&self, message: String) -> bool {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return false;
        }
        state.pending_bytes += message.len();
        if state.pending_bytes > MAX_PENDING_BYTES {
            state.outgoing.clear();
            state.close(frame::GO_AWAY);
            drop(state);
            self.changed.notify_one();
            return false;
        }
        state.outgoing.push_back(message);
        drop(state);
        self.changed.notify_one();
        true
    }

    /// Ends the client's input because it sent a message over the size
    /// limit; the session stays open for the ERROR that says so to reach
    /// the client, then its application closes it.
    pub fn refuse_too_large(&self) {
        let mut state = self.state.lock();
        state.too_large = true;
        state.incoming = None;
    }

    /// Closes the session: the receiver gets what was queued, then the
    /// close frame; the application's input ends.
    pub fn close(&self, reason: CloseReason) {
        self.state.lock().close(reason);
        self.changed.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }
}

impl State {
    fn close(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(reason);
            self.since = Instant::now();
            self.incoming = None;
        }
    }
}

/// The application's end of a session: the client's messages in, the
/// application's out. STOMP runs over it as over a WebSocket: each SockJS
/// message carries STOMP frames and heart-beats as text.
#[derive(Debug)]
pub struct Channel {
    session: Arc<Session>,
    received: mpsc::Receiver<String>,
    /// `access_token` of the URL that opened the session.
    access_token: Option<String>,
}

impl Channel {
    /// The channel of a session opened by a URL with `?access_token=`.
    pub fn with_access_token(self, access_token: Option<String>) -> Channel {
        Channel {
            access_token,
            ..self
        }
    }

    /// The next message from the client; `None` once the session closed.
    pub async fn recv(&mut self) -> Option<String> {
        self.received.recv().await
    }

    /// Queues a message for the client; false when the session is closed.
    pub fn send(&self, message: String) -> bool {
        self.session.send_to_client(message)
    }

    pub fn close(&self) {
        Session::close(&self.session, frame::GO_AWAY);
    }
}

/// The client's messages, as the application reads them.
pub struct FromClient {
    received: mpsc::Receiver<String>,
    session: Arc<Session>,
}

impl Transport for Channel {
    type Reader = FromClient;
    type Writer = Arc<Session>;

    const KIND: &'static str = "sockjs";

    fn split(self) -> (Self::Reader, Self::Writer) {
        let reader = FromClient {
            received: self.received,
            session: self.session.clone(),
        };
        (reader, self.session)
    }

    fn access_token(&self) -> Option<String> {
        self.access_token.clone()
    }
}

impl TransportReader for FromClient {
    async fn receive(&mut self) -> Result<Bytes, ReceiveEnd> {
        match self.received.recv().await {
            Some(message) => Ok(Bytes::from(message)),
            None if self.session.state.lock().too_large => Err(ReceiveEnd::TooLarge),
            None => Err(ReceiveEnd::Closed),
        }
    }
}

impl TransportWriter for Arc<Session> {
    async fn send(&mut self, frames: Vec<Bytes>) -> Result<(), TransportClosed> {
        for frame in frames {
            // SockJS carries text; a binary body (rare from STOMP.js) is
            // sent with its invalid bytes replaced rather than not at all.
            let text = match String::from_utf8(Vec::from(frame)) {
                Ok(text) => text,
                Err(binary) => String::from_utf8_lossy(binary.as_bytes()).into_owned(),
            };
            if !self.send_to_client(text) {
                return Err(TransportClosed);
            }
        }
        Ok(())
    }

    async fn close(&mut self, why: Closing) {
        let reason = match why {
            Closing::TooLarge => frame::MESSAGE_TOO_BIG,
            Closing::Normal => frame::GO_AWAY,
        };
        Session::close(self, reason);
    }
}

/// The sessions of one SockJS endpoint, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.by_id.lock().get(id).cloned()
    }

    /// The session `id`, or a new one (and the application's end of it)
    /// when there is none and `admit` gives it a place.
    pub fn get_or_open(
        &self,
        id: &str,
        echo: bool,
        admit: impl FnOnce() -> Result<Option<Ticket>, Refusal>,
    ) -> Result<(Arc<Session>, Option<Channel>), Refusal> {
        let mut by_id = self.by_id.lock();
        if let Some(session) = by_id.get(id) {
            return Ok((session.clone(), None));
        }
        let (session, channel) = Session::open(echo, admit()?);
        by_id.insert(id.to_owned(), session.clone());
        Ok((session, Some(channel)))
    }

    /// Closes sessions nobody received from for `delay`, and forgets
    /// sessions closed for `delay`.
    pub fn sweep(&self, delay: Duration) {
        let now = Instant::now();
        self.by_id.lock().retain(|_, session| {
            let mut state = session.state.lock();
            let quiet = now.duration_since(state.since) >= delay;
            match (&state.closed, state.receiving) {
                (Some(_), _) => !quiet,
                (None, false) if quiet => {
                    state.close(frame::INTERRUPTED);
                    false
                }
                (None, _) => true,
            }
        });
    }

    pub fn len(&self) -> usize {
        self.by_id.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_messages_go_out_as_one_frame_then_the_close_frame() {
        let (session, mut channel) = Session::open(false, None);
        assert!(matches!(session.attach(true), Attach::Receiving));
        assert!(matches!(session.attach(false), Attach::Busy(_)));
        assert!(channel.send("one".into()) && channel.send("two".into()));
        let heartbeat = Duration::from_millis(20);
        assert_eq!(
            session.next_frame(heartbeat).await,
            (r#"a["one","two"]"#.into(), false)
        );
        assert_eq!(session.next_frame(heartbeat).await, ("h".into(), false));
        assert!(session.receive_from_client(vec!["in".into()]).await);
        assert_eq!(channel.recv().await.as_deref(), Some("in"));
        channel.close();
        assert_eq!(
            session.next_frame(heartbeat).await,
            (r#"c[3000,"Go away!"]"#.into(), true)
        );
        assert_eq!(channel.recv().await, None, "the application's input ends");
        assert!(!channel.send("late".into()));
    }

    #[tokio::test]
    async fn what_was_queued_before_the_close_reaches_the_next_poll() {
        let (session, channel) = Session::open(false, None);
        assert!(matches!(session.attach(true), Attach::Receiving));
        session.detach(false);
        assert!(channel.send("ERROR".into()));
        channel.close();
        let heartbeat = Duration::from_millis(20);
        assert!(matches!(session.attach(false), Attach::Receiving));
        assert_eq!(
            session.next_frame(heartbeat).await,
            (r#"a["ERROR"]"#.into(), false)
        );
        session.detach(false);
        assert!(matches!(session.attach(false), Attach::Closed(_)));
    }

    #[tokio::test]
    async fn a_session_nobody_receives_from_is_closed_then_forgotten() {
        let sessions = Sessions::default();
        let (session, channel) = sessions.get_or_open("s", false, || Ok(None)).unwrap();
        assert!(channel.is_some());
        let again = sessions.get_or_open("s", false, || Err(Refusal::Total));
        assert!(again.unwrap().1.is_none(), "the same session, no new place");
        let refused = sessions.get_or_open("t", false, || Err(Refusal::Total));
        assert_eq!(refused.unwrap_err(), Refusal::Total);
        assert!(matches!(session.attach(false), Attach::Receiving));
        sessions.sweep(Duration::ZERO);
        assert!(!session.is_closed(), "a receiver keeps it open");
        session.detach(false);
        sessions.sweep(Duration::ZERO);
        assert!(session.is_closed());
        assert!(sessions.is_empty());
    }
}
