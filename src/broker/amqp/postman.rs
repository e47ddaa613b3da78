//! Deliveries to sessions, grouped per node: what is ready at once for the
//! sessions of one node goes to RabbitMQ as one envelope (one publish, one
//! confirm), not one message per session.
//!
//! Group commit, with no timer: one task takes every letter waiting now (a
//! letter is one message for some sessions), sorts their deliveries by the
//! node of each session, and publishes one envelope per node, capped in
//! deliveries and bytes; a node with one delivery gets it on the session's
//! own key, as a service would publish it. While those publishes are handed
//! to RabbitMQ, the next letters gather. Everything for one node goes
//! through one publisher lane, in the order the letters came, so that a
//! session receives what one sender sent in the order it was sent. A
//! letter's confirm comes once every publish that carries a part of it is
//! confirmed.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::envelope::Envelope;
use super::publisher::confirmed;
use super::{BrokerError, Inner, UserKeyBinding};
use crate::broker::destination::{SessionKey, USERS_EXCHANGE};
use crate::broker::{Message, OrderKey, SessionAddress, SessionId};

/// Letters that may wait for the postman before their senders wait too.
const BACKLOG: usize = 4096;

/// Letters taken in one go, at most.
const TAKE_AT_ONCE: usize = 512;

/// What one envelope carries, at most: deliveries, and bytes (a message
/// larger than that goes in an envelope of its own).
const MAX_DELIVERIES: usize = 1024;
const MAX_BYTES: usize = 512 * 1024;

/// The way letters reach the postman's task.
pub(super) struct Postman {
    letters: mpsc::Sender<Letter>,
}

/// One message for the user destination `name` of some sessions, and
/// where to answer once RabbitMQ has taken it.
struct Letter {
    content: Content,
    taken: oneshot::Sender<Result<(), BrokerError>>,
}

struct Content {
    name: String,
    /// Each session, and its node.
    sessions: Vec<(String, SessionId)>,
    message: Message,
}

/// The answer to one letter: once RabbitMQ has taken every part of it.
pub(super) type Taken = oneshot::Receiver<Result<(), BrokerError>>;

impl Postman {
    /// The postman, and the task that must be spawned (once the broker's
    /// state exists) for it to deliver.
    pub(super) fn open() -> (Postman, PostmanTask) {
        let (letters, received) = mpsc::channel(BACKLOG);
        (Postman { letters }, PostmanTask { letters: received })
    }

    /// Hands a letter over; waits only while the backlog is full.
    pub(super) async fn post(
        &self,
        name: &str,
        sessions: &[SessionAddress<'_>],
        message: Message,
    ) -> Result<Taken, BrokerError> {
        let (taken, answer) = oneshot::channel();
        let content = Content {
            name: name.to_owned(),
            sessions: sessions
                .iter()
                .map(|address| (address.node.to_owned(), address.session))
                .collect(),
            message,
        };
        let letter = Letter { content, taken };
        self.letters
            .send(letter)
            .await
            .map_err(|_| postman_gone())?;
        Ok(answer)
    }
}

/// Waits for the answer to one letter.
pub(super) async fn taken(answer: Taken) -> Result<(), BrokerError> {
    answer.await.map_err(|_| postman_gone())?
}

fn postman_gone() -> BrokerError {
    BrokerError::Unavailable {
        what: "publish (the node is stopping)",
        source: None,
    }
}

/// The postman's task.
pub(super) struct PostmanTask {
    letters: mpsc::Receiver<Letter>,
}

impl PostmanTask {
    /// Delivers letters until the broker is dropped.
    pub(super) async fn run(mut self, inner: Weak<Inner>) {
        let mut batch = Vec::with_capacity(TAKE_AT_ONCE);
        while self.letters.recv_many(&mut batch, TAKE_AT_ONCE).await > 0 {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            deliver(&inner, std::mem::take(&mut batch)).await;
        }
    }
}

/// What remains to be confirmed of one letter; it is answered when the
/// last of its parts is.
struct Tally {
    parts: usize,
    failed: Option<BrokerError>,
    taken: Option<oneshot::Sender<Result<(), BrokerError>>>,
}

type SharedTally = Arc<Mutex<Tally>>;

impl Tally {
    fn new(taken: oneshot::Sender<Result<(), BrokerError>>) -> SharedTally {
        // One part for the delivery as a whole, settled once every
        // publish carrying a part of it is handed over.
        Arc::new(Mutex::new(Tally {
            parts: 1,
            failed: None,
            taken: Some(taken),
        }))
    }
}

fn settle(tally: &SharedTally, outcome: &Result<(), BrokerError>) {
    let mut tally = tally.lock();
    if let Err(error) = outcome {
        tally.failed.get_or_insert_with(|| error.clone());
    }
    tally.parts -= 1;
    if tally.parts == 0
        && let Some(taken) = tally.taken.take()
    {
        let answer = match tally.failed.take() {
            Some(error) => Err(error),
            None => Ok(()),
        };
        // A sender that stopped waiting needs no answer.
        let _ = taken.send(answer);
    }
}

/// The deliveries for one node: each letter's message, and which of its
/// sessions are there.
struct ForNode<'a> {
    node: &'a str,
    parts: Vec<(&'a Content, Vec<SessionId>, SharedTally)>,
}

/// Publishes a batch of letters: one envelope per node (or more, past the
/// caps), a single delivery on its session's key.
async fn deliver(inner: &Inner, letters: Vec<Letter>) {
    let (contents, answers): (Vec<Content>, Vec<_>) = letters
        .into_iter()
        .map(|letter| (letter.content, letter.taken))
        .unzip();
    let mut tallies = Vec::with_capacity(contents.len());
    let mut nodes: Vec<ForNode<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (letter, taken) in contents.iter().zip(answers) {
        let tally = Tally::new(taken);
        for (node, session) in &letter.sessions {
            let at = *index.entry(node.as_str()).or_insert_with(|| {
                nodes.push(ForNode {
                    node,
                    parts: Vec::new(),
                });
                nodes.len() - 1
            });
            let parts = &mut nodes[at].parts;
            match parts.last_mut() {
                Some((last, sessions, _)) if std::ptr::eq(*last, letter) => sessions.push(*session),
                _ => parts.push((letter, vec![*session], tally.clone())),
            }
        }
        tallies.push(tally);
    }
    for for_node in nodes {
        publish_for_node(inner, for_node).await;
    }
    for tally in &tallies {
        settle(tally, &Ok(()));
    }
}

/// Publishes what a batch holds for one node, in order.
async fn publish_for_node(inner: &Inner, for_node: ForNode<'_>) {
    let lane = inner.publisher(OrderKey::of(&for_node.node));
    let own_keys = inner.settings.user_keys == UserKeyBinding::SessionQueue;
    let single = for_node.parts.len() == 1 && for_node.parts[0].1.len() == 1;
    if own_keys || single {
        // Each session's own key: with --routing session its queue is
        // bound to its keys only.
        for (letter, sessions, tally) in &for_node.parts {
            for session in sessions {
                let key = SessionKey::new(for_node.node, *session, &letter.name).to_string();
                let answer = lane
                    .publish(USERS_EXCHANGE, &key, letter.message.clone())
                    .await;
                confirm_later(answer, vec![tally.clone()]);
            }
        }
        return;
    }
    let key = SessionKey::envelope_key(for_node.node);
    let mut envelope = Envelope::default();
    let mut carried: Vec<SharedTally> = Vec::new();
    for (letter, sessions, tally) in &for_node.parts {
        let full = envelope.deliveries() + sessions.len() > MAX_DELIVERIES
            || envelope.len() + letter.message.body.len() > MAX_BYTES;
        if full && envelope.deliveries() > 0 {
            let sealed = std::mem::take(&mut envelope).seal();
            let answer = lane.publish(USERS_EXCHANGE, &key, sealed).await;
            confirm_later(answer, std::mem::take(&mut carried));
        }
        match envelope.add(&letter.name, sessions, &letter.message) {
            Ok(()) => carried.push(tally.clone()),
            Err(error) => {
                // Refused where it entered; should one come, it fails alone.
                tracing::warn!(%error, "a message cannot go in an envelope");
                tally.lock().parts += 1;
                settle(tally, &Err(BrokerError::refused(error.to_string())));
            }
        }
    }
    if envelope.deliveries() > 0 {
        let answer = lane.publish(USERS_EXCHANGE, &key, envelope.seal()).await;
        confirm_later(answer, carried);
    }
}

/// Settles the letters a publish carried once RabbitMQ has answered it.
fn confirm_later(answer: Result<super::publisher::Answer, BrokerError>, tallies: Vec<SharedTally>) {
    for tally in &tallies {
        tally.lock().parts += 1;
    }
    tokio::spawn(async move {
        let outcome = match answer {
            Ok(answer) => confirmed(answer).await,
            Err(error) => Err(error),
        };
        for tally in &tallies {
            settle(tally, &outcome);
        }
    });
}
