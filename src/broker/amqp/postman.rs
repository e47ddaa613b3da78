//! Deliveries to sessions, grouped per node: what is ready at once for the
//! sessions of one node goes to RabbitMQ as one envelope (one publish, one
//! confirm), not one message per session.
//!
//! Group commit, with no timer: one task takes every letter waiting now (a
//! letter is one message for some sessions) and sorts their deliveries by
//! the node of each session. A node with no envelope awaiting RabbitMQ's
//! confirm gets what waits for it at once, as one envelope (capped in
//! deliveries and bytes), or, for a single delivery, on the session's own
//! key, as a service would publish it; while an envelope awaits its
//! confirm, what comes for that node gathers for the next one. So an idle
//! node's message goes without waiting, and under load the envelopes grow
//! with it. Everything for one node goes through one publisher lane, in the
//! order the letters came, so that a session receives what one sender sent
//! in the order it was sent. A letter's confirm comes once every publish
//! that carries a part of it is confirmed.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
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

/// Envelopes for one node awaiting their confirm, at most: past it, what
/// comes for the node waits for the next envelope.
const IN_FLIGHT_PER_NODE: usize = 1;

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

/// What a node is sent of one letter: the letter's message, for those of
/// its sessions that are there.
struct Part {
    letter: Arc<Content>,
    sessions: Vec<SessionId>,
    tally: SharedTally,
}

/// What waits for one node, and its envelopes awaiting their confirm.
#[derive(Default)]
struct Mailbag {
    waiting: VecDeque<Part>,
    in_flight: usize,
}

/// An envelope (or a single delivery) awaiting its confirm; resolves to
/// the node it went to once the letters it carried are settled.
type Confirming = Pin<Box<dyn Future<Output = String> + Send>>;

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
        let mut mailbags: HashMap<String, Mailbag> = HashMap::new();
        let mut confirming: FuturesUnordered<Confirming> = FuturesUnordered::new();
        let mut batch = Vec::with_capacity(TAKE_AT_ONCE);
        loop {
            let touched: Vec<String> = tokio::select! {
                Some(node) = confirming.next(), if !confirming.is_empty() => {
                    if let Some(mailbag) = mailbags.get_mut(&node) {
                        mailbag.in_flight -= 1;
                    }
                    vec![node]
                }
                taken = self.letters.recv_many(&mut batch, TAKE_AT_ONCE) => {
                    if taken == 0 {
                        return;
                    }
                    sort(batch.drain(..), &mut mailbags)
                }
            };
            let Some(inner) = inner.upgrade() else {
                return;
            };
            for node in touched {
                let Some(mailbag) = mailbags.get_mut(&node) else {
                    continue;
                };
                send(&inner, &node, mailbag, &mut confirming).await;
                if mailbag.waiting.is_empty() && mailbag.in_flight == 0 {
                    mailbags.remove(&node);
                }
            }
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

/// Puts each letter's deliveries in the mailbag of each node, in the order
/// the letters came; answers the nodes that got any.
fn sort(
    letters: impl Iterator<Item = Letter>,
    mailbags: &mut HashMap<String, Mailbag>,
) -> Vec<String> {
    let mut touched: Vec<String> = Vec::new();
    for Letter { content, taken } in letters {
        let tally = Arc::new(Mutex::new(Tally {
            parts: 0,
            failed: None,
            taken: Some(taken),
        }));
        let mut by_node: Vec<(String, Vec<SessionId>)> = Vec::new();
        for (node, session) in &content.sessions {
            match by_node.iter_mut().find(|(known, _)| known == node) {
                Some((_, sessions)) => sessions.push(*session),
                None => by_node.push((node.clone(), vec![*session])),
            }
        }
        tally.lock().parts = by_node.len();
        let letter = Arc::new(content);
        for (node, sessions) in by_node {
            if !touched.contains(&node) {
                touched.push(node.clone());
            }
            mailbags.entry(node).or_default().waiting.push_back(Part {
                letter: letter.clone(),
                sessions,
                tally: tally.clone(),
            });
        }
    }
    touched
}

/// Sends what waits for `node`, while its envelopes in flight allow.
async fn send(
    inner: &Inner,
    node: &str,
    mailbag: &mut Mailbag,
    confirming: &mut FuturesUnordered<Confirming>,
) {
    // With --routing session each session's queue is bound to its own
    // keys only: no envelope reaches it, and none waits for another.
    let own_keys = inner.settings.user_keys == UserKeyBinding::SessionQueue;
    let lane = inner.publisher(OrderKey::of(&node));
    while (own_keys || mailbag.in_flight < IN_FLIGHT_PER_NODE) && !mailbag.waiting.is_empty() {
        let single = mailbag.waiting.len() == 1 && mailbag.waiting[0].sessions.len() == 1;
        if own_keys || single {
            let Some(part) = mailbag.waiting.pop_front() else {
                return;
            };
            for session in &part.sessions {
                let key = SessionKey::new(node, *session, &part.letter.name).to_string();
                let message = part.letter.message.clone();
                let answer = lane.publish(USERS_EXCHANGE, &key, message).await;
                confirming.push(confirm_later(node, answer, vec![part.tally.clone()]));
            }
            // Its one part is settled by each publish's confirm.
            part.tally.lock().parts += part.sessions.len() - 1;
            mailbag.in_flight += part.sessions.len();
            continue;
        }
        let mut envelope = Envelope::default();
        let mut carried = Vec::new();
        while let Some(part) = mailbag.waiting.front() {
            let full = envelope.deliveries() + part.sessions.len() > MAX_DELIVERIES
                || envelope.len() + part.letter.message.body.len() > MAX_BYTES;
            if full && envelope.deliveries() > 0 {
                break;
            }
            let Some(part) = mailbag.waiting.pop_front() else {
                break;
            };
            match envelope.add(&part.letter.name, &part.sessions, &part.letter.message) {
                Ok(()) => carried.push(part.tally),
                Err(error) => {
                    // Refused where it entered; should one come, it fails
                    // alone.
                    tracing::warn!(%error, "a message cannot go in an envelope");
                    settle(&part.tally, &Err(BrokerError::refused(error.to_string())));
                }
            }
        }
        if envelope.deliveries() > 0 {
            let key = SessionKey::envelope_key(node);
            let answer = lane.publish(USERS_EXCHANGE, &key, envelope.seal()).await;
            confirming.push(confirm_later(node, answer, carried));
            mailbag.in_flight += 1;
        }
    }
}

/// Settles the letters a publish carried once RabbitMQ has answered it.
fn confirm_later(
    node: &str,
    answer: Result<super::publisher::Answer, BrokerError>,
    tallies: Vec<SharedTally>,
) -> Confirming {
    let node = node.to_owned();
    Box::pin(async move {
        let outcome = match answer {
            Ok(answer) => confirmed(answer).await,
            Err(error) => Err(error),
        };
        for tally in &tallies {
            settle(tally, &outcome);
        }
        node
    })
}
