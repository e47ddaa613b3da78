//! Delivery to users: a user's live sessions from the registry, with the
//! user destinations each listens to, then the message handed to the broker
//! for each session that listens where it goes
//! ([`Broker::publish_to_sessions`]: on RabbitMQ, in one envelope per node
//! with whatever else is ready for that node, or on the session's key), so
//! that the answer says how many sessions it reached without asking
//! RabbitMQ. Every delivery of a dispatch is handed over before any confirm
//! is awaited, so a dispatch to many sessions (or many users) waits for one
//! confirm round trip, not one per session; and requests ready at the same
//! time are carried out [`together`], so that they share Redis's round
//! trips and RabbitMQ's envelopes. Nothing reaches a session of
//! anyone else. A message that reaches none of its user's sessions is kept
//! in the [`offline`] store when it asks to be, and dropped (and counted)
//! when not.
//!
//! A message to everyone is the exception: one publish, with no registry
//! read, that every node receives and gives to its own sessions subscribed
//! to that user destination ([`Broker::publish_to_everyone`]). It cannot say
//! how many sessions took it, and it is never kept: it is for those
//! connected now.

pub mod offline;
mod together;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, try_join_all};
use tokio::sync::mpsc;

use crate::broker::destination::{Destination, DestinationError, TOPIC_EXCHANGE};
use crate::broker::{
    Broker, BrokerError, Confirm, DispatchOutcome, DispatchRequest, Message, OFFLINE_ID_HEADER,
    OrderKey, PublishTarget, SessionAddress,
};
use crate::error::{Chain, ClientText};
use crate::history::{Histories, History, HistoryError, Owner, POSITION_HEADER};
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryError, SessionLocation};
use crate::retry;
use offline::{Keeping, OfflineError, OfflineStore};
use together::{Order, Reported, Together};

/// Messages written to users' histories at once, at most.
const RECORDS_AT_ONCE: usize = 1024;

/// Users of one request whose copies are handed over at once, at most.
const HAND_OVERS_AT_ONCE: usize = 256;

/// `stomp.dispatch` requests a node carries out at once.
pub const DISPATCH_LANES: usize = 32;
/// Requests that may wait for a busy lane.
const LANE_BACKLOG: usize = 4;

/// How long a node tries a `stomp.dispatch` request again while Redis or
/// RabbitMQ does not answer, before it gives the request back to its queue
/// (for this node or another to try later).
const REQUEST_PATIENCE: Duration = Duration::from_secs(30);

/// Publishes messages for users to their sessions.
#[derive(Clone)]
pub struct Dispatcher {
    registry: Arc<dyn Registry>,
    broker: Arc<dyn Broker>,
    offline: Arc<dyn OfflineStore>,
    /// Users' (and topics') histories, when the node keeps them.
    history: Option<Histories>,
    metrics: Metrics,
    /// The task that carries out requests that arrive together; none in
    /// that task's own copy, which takes no requests (it would keep
    /// itself alive).
    together: Option<Together>,
}

/// Whether a message that reaches none of a user's sessions is kept for
/// the user's return (`persist`) or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenOffline {
    Keep,
    Drop,
}

impl WhenOffline {
    pub fn from_persist(persist: bool) -> WhenOffline {
        if persist {
            WhenOffline::Keep
        } else {
            WhenOffline::Drop
        }
    }
}

/// What a dispatch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DispatchReport {
    /// Sessions the message reached (they listen to that destination).
    pub sessions: usize,
    /// Users addressed whom it reached in no session: none is connected,
    /// or none of their sessions listens to that destination.
    pub offline_users: usize,
    /// Offline users for whom it was kept.
    pub kept: usize,
}

/// Why a dispatch failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error(transparent)]
    History(#[from] HistoryError),
}

impl ClientText for DispatchError {
    fn client_text(&self) -> Cow<'_, str> {
        match self {
            DispatchError::Registry(error) => Cow::Borrowed(error.client_text()),
            DispatchError::Broker(error) => error.client_text(),
            // Its text carries what Redis said.
            DispatchError::Offline(_) => Cow::Borrowed("the offline message store is unavailable"),
            DispatchError::History(_) => Cow::Borrowed("the message history is unavailable"),
        }
    }
}

impl Dispatcher {
    pub fn new(
        registry: Arc<dyn Registry>,
        broker: Arc<dyn Broker>,
        offline: Arc<dyn OfflineStore>,
        history: Option<Histories>,
        metrics: Metrics,
    ) -> Dispatcher {
        let mut dispatcher = Dispatcher {
            registry,
            broker,
            offline,
            history,
            metrics,
            together: None,
        };
        dispatcher.together = Some(Together::start(dispatcher.clone()));
        dispatcher
    }

    /// Users' histories, when the node keeps them; sessions read them when
    /// they subscribe with a position.
    pub fn history(&self) -> Option<&dyn History> {
        self.history.as_ref().map(|history| &*history.store)
    }

    /// Writes each message to its user's history, when the node keeps one,
    /// and gives it its position there (`x-stream-offset`); without a
    /// history, a position a sender wrote is taken off. Done before the
    /// users' sessions are read from the registry, so that a session that
    /// subscribes meanwhile finds each message either live or in the
    /// history it reads once subscribed.
    /// With `request` (a `stomp.dispatch` request's message id), a request
    /// carried out again writes nothing twice.
    pub async fn record<'a>(
        &self,
        letters: impl IntoIterator<Item = (&'a str, &'a str, &'a mut Message)>,
        request: Option<&str>,
    ) -> Result<(), DispatchError> {
        let Some(history) = &self.history else {
            for (_, _, message) in letters {
                message.headers.remove(POSITION_HEADER);
            }
            return Ok(());
        };
        let mut letters: Vec<_> = letters.into_iter().collect();
        for wave in letters.chunks_mut(RECORDS_AT_ONCE) {
            let owners: Vec<Owner> = wave
                .iter()
                .map(|(user, _, _)| Owner::User((*user).to_owned()))
                .collect();
            let positions =
                try_join_all(wave.iter().zip(&owners).map(|((_, name, message), owner)| {
                    match request {
                        Some(request) => history.store.append_once(owner, name, message, request),
                        None => history.store.append(owner, name, message),
                    }
                }))
                .await
                .inspect_err(|_| {
                    self.metrics.dispatch.failed.inc_by(wave.len() as u64);
                })?;
            for ((_, _, message), position) in wave.iter_mut().zip(positions) {
                message.headers.set(POSITION_HEADER, &position.to_string());
            }
        }
        Ok(())
    }

    /// Where messages for absent users wait; sessions read it when they
    /// subscribe to a user destination.
    pub fn offline(&self) -> &dyn OfflineStore {
        &*self.offline
    }

    /// Whether what is published to `target` goes in a topic's history.
    pub fn keeps_history_of(&self, target: &PublishTarget) -> bool {
        self.topic_history(target).is_some()
    }

    /// The history of the topic `target` publishes to, with the topic's
    /// key, when the topic keeps one (`--history-topics`).
    fn topic_history<'a>(&'a self, target: &'a PublishTarget) -> Option<(&'a Histories, &'a str)> {
        let key = topic_key(target)?;
        let history = self.history.as_ref()?;
        history.topics.keep(key).then_some((history, key))
    }

    /// Writes each message published to a topic (`amq.topic`) to the
    /// topic's history, when the topic keeps one (`--history-topics`), and
    /// gives it its position there; a position a sender wrote is taken off
    /// the other topic messages. Done before the messages are published,
    /// so that a subscriber finds each either live or in the history it
    /// reads once subscribed. Messages to anything but a topic are left as
    /// they are.
    pub async fn record_topics<'a>(
        &self,
        letters: impl IntoIterator<Item = (&'a PublishTarget, &'a mut Message)>,
    ) -> Result<(), DispatchError> {
        let mut kept = Vec::new();
        for (target, message) in letters {
            if topic_key(target).is_none() {
                continue;
            }
            message.headers.remove(POSITION_HEADER);
            if let Some((history, key)) = self.topic_history(target) {
                kept.push((history, Owner::Topic(key.to_owned()), key, message));
            }
        }
        let positions = try_join_all(
            kept.iter()
                .map(|(history, owner, key, message)| history.store.append(owner, key, message)),
        )
        .await?;
        for ((_, _, _, message), position) in kept.into_iter().zip(positions) {
            message.headers.set(POSITION_HEADER, &position.to_string());
        }
        Ok(())
    }

    /// Sends `message` to the user destination `name` (`/user/queue/{name}`)
    /// of every live session of `user`.
    pub async fn to_user(
        &self,
        user: &str,
        name: &str,
        message: Message,
        when_offline: WhenOffline,
    ) -> Result<DispatchReport, DispatchError> {
        self.to_users(
            std::slice::from_ref(&user.to_owned()),
            name,
            message,
            when_offline,
            None,
        )
        .await
    }

    /// [`Dispatcher::to_user`] for each of `users`; `request` names the
    /// request it carries out, when asking twice must not keep twice.
    /// Carried out together with the other requests ready at the same time
    /// ([`together`]): one round trip to Redis for all of them, one
    /// envelope per node.
    pub async fn to_users(
        &self,
        users: &[String],
        name: &str,
        message: Message,
        when_offline: WhenOffline,
        request: Option<&str>,
    ) -> Result<DispatchReport, DispatchError> {
        let together = self.together.as_ref().ok_or_else(together::stopping)?;
        let reported = together
            .hand_over(
                users.to_vec(),
                name.to_owned(),
                message,
                when_offline,
                request.map(str::to_owned),
            )
            .await?;
        reported.await
    }

    /// Hands `order` over to the sessions of each of its users, `located`
    /// in their order, each with its own copy of the message from
    /// `messages`; the answer sums up their reports once the broker has
    /// confirmed every copy.
    async fn hand_over_each(
        &self,
        order: &Order,
        located: Vec<Vec<SessionLocation>>,
        messages: Vec<Message>,
    ) -> Result<Reported, DispatchError> {
        // Keeping a message for an offline user is a round trip to Redis:
        // many users' go at once, in waves, not one after the other, while
        // the requests of the next round wait.
        let mut letters = order.users.iter().zip(&located).zip(messages);
        let mut dispatches = Vec::with_capacity(order.users.len());
        loop {
            let wave: Vec<_> = letters
                .by_ref()
                .take(HAND_OVERS_AT_ONCE)
                .map(|((user, sessions), message)| {
                    self.hand_over_to(
                        user,
                        sessions,
                        &order.name,
                        message,
                        order.when_offline,
                        order.request.as_deref(),
                    )
                })
                .collect();
            if wave.is_empty() {
                break;
            }
            dispatches.extend(try_join_all(wave).await?);
        }
        Ok(Box::pin(async move {
            let reports = try_join_all(dispatches).await?;
            Ok(reports
                .into_iter()
                .fold(DispatchReport::default(), |sum, report| DispatchReport {
                    sessions: sum.sessions + report.sessions,
                    offline_users: sum.offline_users + report.offline_users,
                    kept: sum.kept + report.kept,
                }))
        }))
    }

    /// The live sessions of each of `users`, in their order, read in one
    /// round trip, for [`Dispatcher::hand_over_to`].
    pub async fn locate_many(
        &self,
        users: &[&str],
    ) -> Result<Vec<Vec<SessionLocation>>, DispatchError> {
        let located = self.registry.locate_many(users).await.inspect_err(|_| {
            self.metrics.dispatch.failed.inc_by(users.len() as u64);
        })?;
        Ok(located)
    }

    /// Hands `message` over to the user destination `name` of those of
    /// `sessions` (the live sessions of `user`) that listen there, without
    /// waiting for the broker. The answer completes the dispatch once the
    /// broker confirms, and reports what happened.
    ///
    /// A message to keep (`when_offline`) is kept before it is sent, and
    /// each copy names it ([`OFFLINE_ID_HEADER`]): the store forgets it once a
    /// session has delivered it (or had it acknowledged). A node or broker
    /// lost while the message is on its way to the session then costs the
    /// user nothing: it is still kept when the user comes back. One that
    /// reached no session simply stays kept. With `request` (a
    /// `stomp.dispatch` request's message id), a request carried out again
    /// (its node died before acknowledging it) keeps nothing twice: what is
    /// still kept is sent again under the same id, which a session that
    /// showed it already drops, and what was delivered is not sent again.
    pub async fn hand_over_to(
        &self,
        user: &str,
        sessions: &[SessionLocation],
        name: &str,
        message: Message,
        when_offline: WhenOffline,
        request: Option<&str>,
    ) -> Result<
        impl Future<Output = Result<DispatchReport, DispatchError>> + Send + 'static,
        DispatchError,
    > {
        let started = std::time::Instant::now();
        let listening: Vec<&SessionLocation> = sessions
            .iter()
            .filter(|session| session.listens_to(name))
            .collect();
        let sent_live = !listening.is_empty();
        let keeping = match (when_offline, request) {
            (WhenOffline::Drop, _) => Ok(None),
            (WhenOffline::Keep, None) => self
                .offline
                .keep(user, name, &message, sent_live)
                .await
                .map(|id| Some(Keeping::Kept(id))),
            (WhenOffline::Keep, Some(request)) => self
                .offline
                .keep_once(user, name, &message, request, sent_live)
                .await
                .map(Some),
        };
        let kept = match keeping.inspect_err(|_| self.failed(started))? {
            None => None,
            Some(Keeping::Kept(id)) => Some(id),
            // Nothing to do: a report of nothing.
            Some(Keeping::Delivered) => {
                return Ok(Either::Left(std::future::ready(Ok(
                    DispatchReport::default(),
                ))));
            }
        };
        let mut sent = message;
        if let Some(kept) = &kept {
            sent.headers.set(OFFLINE_ID_HEADER, kept);
        }
        let handed_over = self.hand_over(&listening, name, &sent).await;
        let listening = listening.len();
        // A request tried again finds what this try kept; anything else
        // would keep it anew.
        let forget_on_failure = request.is_none();
        let (dispatcher, user) = (self.clone(), user.to_owned());
        Ok(Either::Right(async move {
            let reached = match handed_over {
                Ok(confirm) => reached(confirm, listening).await,
                Err(error) => Err(error),
            };
            let reached = match reached {
                Ok(reached) => reached,
                Err(error) => {
                    // Tried again by the caller (or refused to its sender):
                    // not kept twice.
                    if let Some(kept) = kept.filter(|_| forget_on_failure) {
                        let _ = dispatcher.offline.forget(&user, &[kept]).await;
                    }
                    dispatcher.failed(started);
                    return Err(error.into());
                }
            };
            let mut report = DispatchReport {
                sessions: reached,
                ..DispatchReport::default()
            };
            if reached == 0 {
                report.offline_users = 1;
                report.kept = usize::from(kept.is_some());
            }
            let metrics = &dispatcher.metrics;
            metrics.offline_kept.inc_by(report.kept as u64);
            metrics.dispatched_sessions.inc_by(report.sessions as u64);
            metrics
                .dispatched_offline_users
                .inc_by(report.offline_users as u64);
            let outcome = match report {
                DispatchReport { sessions: 1.., .. } => &metrics.dispatch.delivered,
                DispatchReport { kept: 1.., .. } => &metrics.dispatch.kept,
                _ => &metrics.dispatch.offline,
            };
            outcome.inc();
            metrics.observe_dispatch(started.elapsed());
            Ok(report)
        }))
    }

    /// Counts a dispatch that failed, begun at `started`.
    fn failed(&self, started: std::time::Instant) {
        self.metrics.dispatch.failed.inc();
        self.metrics.observe_dispatch(started.elapsed());
    }

    /// Sends `message` to the user destination `name` of every live session
    /// of every user that subscribes there, in one publish that every node
    /// fans out; returns once the broker has taken it.
    pub async fn to_everyone(&self, name: &str, mut message: Message) -> Result<(), DispatchError> {
        // Meant for those connected now: no user's history holds it.
        message.headers.remove(POSITION_HEADER);
        // Keyed by the name, so that messages to everyone at one destination
        // keep their order.
        self.broker
            .publish_to_everyone(OrderKey::of(&name), name, message)
            .await?
            .await?;
        self.metrics.dispatched_to_everyone.inc();
        Ok(())
    }

    /// Carries out the requests services put on `stomp.dispatch` until the
    /// broker stops sending them, [`DISPATCH_LANES`] at a time: each request
    /// goes to the lane of its (first) user, so that one node carries out a
    /// user's requests in the order it received them, while other users'
    /// requests need not wait for their Redis and RabbitMQ round trips.
    pub async fn serve_requests(self, mut requests: mpsc::Receiver<DispatchRequest>) {
        let lanes: Vec<mpsc::Sender<DispatchRequest>> = (0..DISPATCH_LANES)
            .map(|_| {
                let (lane, waiting) = mpsc::channel(LANE_BACKLOG);
                tokio::spawn(self.clone().serve_lane(waiting));
                lane
            })
            .collect();
        while let Some(request) = requests.recv().await {
            let lane = &lanes[lane_of(&request)];
            if lane.send(request).await.is_err() {
                return;
            }
        }
    }

    /// Carries out one lane's requests, one at a time.
    async fn serve_lane(self, mut requests: mpsc::Receiver<DispatchRequest>) {
        while let Some(request) = requests.recv().await {
            let outcome = match user_destination(&request.destination) {
                Err(error) => {
                    tracing::warn!(%error, "a stomp.dispatch request was dropped");
                    DispatchOutcome::Invalid
                }
                Ok(_) if let Some((header, reason)) = request.message.unportable_header() => {
                    tracing::warn!(
                        header,
                        reason,
                        "a stomp.dispatch request was dropped: a header that not every STOMP version can carry"
                    );
                    DispatchOutcome::Invalid
                }
                Ok(name) => {
                    // Tried again here, with growing waits, before it goes
                    // back to the queue: given back at once it would come
                    // straight back, as often as a quorum queue's delivery
                    // limit allows before it drops it.
                    let sent = retry::within("Redis and RabbitMQ", REQUEST_PATIENCE, || {
                        self.carry_out(&request, &name)
                    })
                    .await;
                    match sent {
                        Ok(_) => DispatchOutcome::Dispatched,
                        Err(error) => {
                            tracing::warn!(
                                error = %Chain(&error),
                                "a stomp.dispatch request will be retried"
                            );
                            DispatchOutcome::Retry
                        }
                    }
                }
            };
            let _ = request.done.send(outcome);
        }
    }

    /// One try at a `stomp.dispatch` request for the user destination
    /// `name`.
    async fn carry_out(&self, request: &DispatchRequest, name: &str) -> Result<(), DispatchError> {
        let message = request.message.clone();
        if request.all {
            return self.to_everyone(name, message).await;
        }
        let when_offline = WhenOffline::from_persist(request.persist);
        let id = request.message_id.as_deref();
        self.to_users(&request.users, name, message, when_offline, id)
            .await
            .map(|_| ())
    }

    /// Hands `message` over to the broker for each session, without waiting
    /// for its confirm.
    async fn hand_over(
        &self,
        sessions: &[&SessionLocation],
        name: &str,
        message: &Message,
    ) -> Result<Option<Confirm<()>>, BrokerError> {
        if sessions.is_empty() {
            return Ok(None);
        }
        let addresses: Vec<SessionAddress<'_>> = sessions
            .iter()
            .map(|session| SessionAddress {
                node: &session.node,
                session: session.session,
            })
            .collect();
        self.broker
            .publish_to_sessions(name, &addresses, message.clone())
            .await
            .map(Some)
    }
}

/// The routing key of a publish to a topic (`amq.topic`), if it is one.
fn topic_key(target: &PublishTarget) -> Option<&str> {
    match target {
        PublishTarget::Exchange {
            exchange,
            routing_key,
        } if exchange == TOPIC_EXCHANGE => Some(routing_key),
        _ => None,
    }
}

/// How many sessions a dispatch reached, once the broker has taken every
/// copy.
async fn reached(confirm: Option<Confirm<()>>, sessions: usize) -> Result<usize, BrokerError> {
    if let Some(confirm) = confirm {
        confirm.await?;
    }
    Ok(sessions)
}

/// The lane of a request: by its first user (broadcasts share lane 0).
fn lane_of(request: &DispatchRequest) -> usize {
    let Some(user) = request.users.first().filter(|_| !request.all) else {
        return 0;
    };
    (OrderKey::of(user).0 % DISPATCH_LANES as u64) as usize
}

/// The user-destination name that `destination` means: `/user/queue/{name}`,
/// `/user/topic/{name}`, or just `{name}`.
pub fn user_destination(destination: &str) -> Result<String, DestinationError> {
    let name = if destination.starts_with('/') {
        match Destination::parse(destination)? {
            Destination::OwnUser { name } => name,
            _ => return Err(DestinationError::Unknown(destination.to_owned())),
        }
    } else {
        destination.to_owned()
    };
    match Destination::parse(&format!("/user/queue/{name}"))? {
        Destination::OwnUser { name } => Ok(name),
        _ => Err(DestinationError::Unknown(destination.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_may_be_written_short() {
        assert_eq!(user_destination("notifications").unwrap(), "notifications");
        assert_eq!(
            user_destination("/user/queue/notifications").unwrap(),
            "notifications"
        );
        assert_eq!(user_destination("/user/topic/alerts").unwrap(), "alerts");
        assert!(user_destination("/topic/x").is_err());
        assert!(user_destination("").is_err());
    }
}
