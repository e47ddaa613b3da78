//! Carries out a session's commands against the node's services (broker,
//! registry, dispatch, authenticator), without ever making the connection
//! wait.
//!
//! Two lanes, so that STOMP's ordering promises hold while a session's
//! SENDs do not wait for each other's round trips:
//! - **ordered** commands (attach, subscribe, unsubscribe, settle, register,
//!   ...) run one at a time, in the order given;
//! - **sends** (publishes and messages to users) are handed to the broker
//!   in batches, in the order given, each after every ordered command given
//!   before it (a SEND after a SUBSCRIBE is heard by it). A batch's users
//!   are located together; once handed over, their confirms are awaited
//!   side by side while the next batch goes out.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;

use super::Node;
use crate::auth::Credentials;
use crate::broker::destination::{Destination, TEMP_QUEUE_PREFIX};
use crate::broker::{BrokerError, OrderKey, Outbox, SessionId, SubscriptionSpec};
use crate::dispatch::{DispatchError, Dispatcher};
use crate::error::{Chain, ClientText};
use crate::history::Replay;
use crate::registry::{RegistryError, SessionRecord, unix_millis};
use crate::retry;
use crate::session::{
    Command, CommandId, Event, Outbound, Rejection, Service, SessionError, pop_front_releasing,
};

/// SENDs handed to the broker together, at most.
const MAX_BATCH: usize = 256;

type Running = Pin<Box<dyn Future<Output = (CommandId, Event)> + Send>>;
/// A SEND handed to the broker, awaiting its confirm.
type Confirming = Pin<Box<dyn Future<Output = Event> + Send>>;
type HandingOver = Pin<Box<dyn Future<Output = Vec<(CommandId, Confirming)>> + Send>>;

/// The commands of one session, in flight.
pub struct CommandRunner {
    session: SessionId,
    node: Arc<Node>,
    /// Given to the broker at Attach.
    outbox: Outbox,
    /// Fires when another login of the user replaces this session.
    eviction: Arc<Notify>,
    /// What the registry holds for this session, once registered.
    record: Option<SessionRecord>,
    /// The user destinations this session's subscriptions listen to, and
    /// how many of them listen to each: the registry's record lists each
    /// name once.
    listening: BTreeMap<String, usize>,
    ordered: VecDeque<(CommandId, Command)>,
    ordered_running: Option<(CommandId, Running)>,
    sends: VecDeque<(CommandId, Outbound)>,
    handing_over: Option<HandingOver>,
    confirming: FuturesUnordered<Running>,
    in_flight: usize,
}

impl CommandRunner {
    pub fn new(session: SessionId, node: Arc<Node>, outbox: Outbox) -> Self {
        CommandRunner {
            session,
            node,
            outbox,
            eviction: Arc::new(Notify::new()),
            record: None,
            listening: BTreeMap::new(),
            ordered: VecDeque::new(),
            ordered_running: None,
            sends: VecDeque::new(),
            handing_over: None,
            confirming: FuturesUnordered::new(),
            in_flight: 0,
        }
    }

    /// Fires when the session must end because its user logged in again
    /// (`--second-login replace`).
    pub fn eviction(&self) -> Arc<Notify> {
        self.eviction.clone()
    }

    /// Commands given and not yet complete.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Runs an ordered command after the ones started before it.
    pub fn start(&mut self, id: CommandId, command: Command) {
        self.in_flight += 1;
        self.ordered.push_back((id, command));
    }

    /// Hands a SEND to the broker after the ordered commands started before
    /// it, beside the other SENDs.
    pub fn send(&mut self, id: CommandId, send: Outbound) {
        self.in_flight += 1;
        self.sends.push_back((id, send));
    }

    /// The next command to complete, and how.
    pub async fn next(&mut self) -> (CommandId, Event) {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Runs the teardown of a session whose connection ended, after
    /// everything still in flight (a subscription being made must exist
    /// before it can be forgotten).
    pub async fn finish(&mut self, teardown: Vec<Command>) {
        while self.in_flight > 0 {
            self.next().await;
        }
        for command in teardown {
            self.run_ordered(command).await;
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<(CommandId, Event)> {
        loop {
            if self.ordered_running.is_none()
                && let Some((id, command)) = pop_front_releasing(&mut self.ordered)
            {
                let running = self.run_ordered(command);
                self.ordered_running = Some((id, Box::pin(async move { (id, running.await) })));
            }
            if self.handing_over.is_none() {
                self.start_batch();
            }
            if let Some((_, running)) = &mut self.ordered_running
                && let Poll::Ready(done) = running.as_mut().poll(cx)
            {
                self.ordered_running = None;
                self.in_flight -= 1;
                return Poll::Ready(done);
            }
            if let Some(handing_over) = &mut self.handing_over
                && let Poll::Ready(handed) = handing_over.as_mut().poll(cx)
            {
                self.handing_over = None;
                for (id, confirm) in handed {
                    self.confirming
                        .push(Box::pin(async move { (id, confirm.await) }));
                }
                // The next batch may go now; poll it, and the confirms.
                continue;
            }
            if let Poll::Ready(Some(done)) = self.confirming.poll_next_unpin(cx) {
                self.in_flight -= 1;
                return Poll::Ready(done);
            }
            return Poll::Pending;
        }
    }

    /// Hands the next SENDs to the broker: those given before the oldest
    /// ordered command not yet complete.
    fn start_batch(&mut self) {
        let barrier = match &self.ordered_running {
            Some((id, _)) => Some(*id),
            None => self.ordered.front().map(|(id, _)| *id),
        };
        let mut batch = Vec::new();
        while batch.len() < MAX_BATCH
            && let Some((id, _)) = self.sends.front()
            && barrier.is_none_or(|barrier| *id < barrier)
        {
            batch.extend(pop_front_releasing(&mut self.sends));
        }
        if !batch.is_empty() {
            let node = self.node.clone();
            self.handing_over = Some(Box::pin(hand_over(node, self.session, batch)));
        }
    }

    /// An ordered command, as a future that owns what it needs.
    fn run_ordered(&mut self, command: Command) -> impl Future<Output = Event> + Send + 'static {
        let node = self.node.clone();
        let session = self.session;
        let outbox = self.outbox.clone();
        let eviction = self.eviction.clone();
        let record = match &command {
            Command::Register { user } => {
                let record = SessionRecord {
                    session,
                    user: user.clone(),
                    node: node.id.clone(),
                    connected_at: unix_millis(),
                    destinations: self.listening.keys().cloned().collect(),
                };
                self.record = Some(record.clone());
                Some(record)
            }
            Command::Unregister => self.record.take(),
            Command::Subscribe(spec) => self.listen(spec, 1),
            Command::Unsubscribe { spec, .. } => self.listen(spec, -1),
            _ => None,
        };
        async move {
            let broker = &node.broker;
            match command {
                Command::Authenticate {
                    login,
                    passcode,
                    authorization,
                    access_token,
                } => {
                    let credentials = Credentials {
                        login: login.as_deref(),
                        passcode: passcode.as_deref(),
                        authorization: authorization.as_deref(),
                        access_token: access_token.as_deref(),
                    };
                    Event::Authenticated(node.auth.authenticate(credentials).await)
                }
                Command::Attach => done(broker.attach(session, outbox).await),
                Command::Register { .. } => {
                    let Some(record) = record else {
                        return Event::Done(Ok(()));
                    };
                    let registered = node.registry.register(&record).await;
                    if registered.is_ok() {
                        node.sessions.insert(session, eviction);
                    }
                    done(registered)
                }
                Command::ReplaceOlder { user } => {
                    replace_older(&node, session, &user).await;
                    Event::Done(Ok(()))
                }
                // The registry is told once the broker delivers there: a
                // dispatch that finds the session listening reaches it. The
                // RECEIPT waits for both.
                Command::Subscribe(spec) => {
                    let subscribed = broker.subscribe(session, &spec).await;
                    match (subscribed, record) {
                        (Ok(()), Some(record)) => {
                            done(node.registry.update_destinations(&record).await)
                        }
                        (subscribed, _) => done(subscribed),
                    }
                }
                Command::Unsubscribe { spec, discard } => {
                    // A dispatch that still finds it listening costs a
                    // message that its node drops (and counts).
                    if let Some(record) = record
                        && let Err(error) = node.registry.update_destinations(&record).await
                    {
                        tracing::warn!(%session, error = %Chain(&error), "could not record an unsubscription");
                    }
                    done(broker.unsubscribe(session, &spec, discard).await)
                }
                Command::Settle { tags, settlement } => {
                    done(broker.settle(session, &tags, settlement).await)
                }
                Command::ReadOffline { user, name } => {
                    let kept = node.dispatcher.offline().kept(&user, &name).await;
                    if let Ok(kept) = &kept {
                        node.metrics.offline_delivered.inc_by(kept.len() as u64);
                    }
                    Event::Offline(kept.map_err(|error| rejection(DispatchError::from(error))))
                }
                Command::ReadHistory { owner, name, start } => {
                    let replay = match node.dispatcher.history() {
                        Some(history) => history
                            .read(&owner, &name, start)
                            .await
                            .map_err(|error| rejection(DispatchError::from(error))),
                        // Not asked for without one.
                        None => Ok(Replay::default()),
                    };
                    Event::History(replay)
                }
                Command::ForgetOffline { user, ids } => {
                    forget_offline(&node.dispatcher, session, user, ids).await;
                    Event::Done(Ok(()))
                }
                Command::Detach => {
                    broker.detach(session).await;
                    Event::Done(Ok(()))
                }
                Command::Unregister => {
                    node.sessions.remove(session);
                    // A session that ended while Redis was away leaves
                    // presence once Redis is back.
                    if let Some(record) = record {
                        let registry = node.registry.clone();
                        let failed = "cannot unregister the session: presence lists it until this node stops";
                        now_or_later(session, failed, move || {
                            let (registry, record) = (registry.clone(), record.clone());
                            async move { registry.unregister(&record).await }
                        })
                        .await;
                    }
                    Event::Done(Ok(()))
                }
            }
        }
    }
}

impl CommandRunner {
    /// Counts a subscription (`change` 1) or an unsubscription (-1) to a
    /// user destination; when that adds or removes a name this registered
    /// session listens to, the record to write to the registry. Temp
    /// queues are left out: only their reply address reaches them.
    fn listen(&mut self, spec: &SubscriptionSpec, change: isize) -> Option<SessionRecord> {
        let Destination::OwnUser { name } = &spec.destination else {
            return None;
        };
        if name.starts_with(TEMP_QUEUE_PREFIX) {
            return None;
        }
        let count = self.listening.entry(name.clone()).or_default();
        let before = *count;
        *count = count.saturating_add_signed(change);
        let after = *count;
        if after == 0 {
            self.listening.remove(name);
        }
        let record = self.record.as_mut()?;
        if (before == 0) == (after == 0) {
            return None;
        }
        record.destinations = self.listening.keys().cloned().collect();
        Some(record.clone())
    }
}

/// Hands a batch of SENDs to the broker, in order; each comes back with
/// what awaits its confirm. The messages that go in a history are written
/// there first, then the users the batch writes to are located together,
/// in one round trip to the registry.
async fn hand_over(
    node: Arc<Node>,
    session: SessionId,
    mut batch: Vec<(CommandId, Outbound)>,
) -> Vec<(CommandId, Confirming)> {
    let dispatcher = &node.dispatcher;
    let letters = batch.iter_mut().filter_map(|(_, send)| match send {
        Outbound::ToUser {
            user,
            name,
            message,
            ..
        } => Some((user.as_str(), name.as_str(), message)),
        Outbound::Publish { .. } => None,
    });
    let recorded = dispatcher.record(letters, None).await;
    let topic_letters = batch.iter_mut().filter_map(|(_, send)| match send {
        Outbound::Publish { target, message } => Some((&*target, message)),
        Outbound::ToUser { .. } => None,
    });
    let topics_recorded = dispatcher.record_topics(topic_letters).await;
    let users: Vec<&str> = batch
        .iter()
        .filter_map(|(_, send)| match send {
            Outbound::ToUser { user, .. } => Some(user.as_str()),
            Outbound::Publish { .. } => None,
        })
        .collect();
    let mut located = match (recorded, users.is_empty()) {
        (Err(error), _) => Err(error),
        (Ok(()), true) => Ok(Vec::new()),
        (Ok(()), false) => dispatcher.locate_many(&users).await,
    }
    .map(Vec::into_iter);
    let order = OrderKey::of(&session);
    let mut handed = Vec::with_capacity(batch.len());
    for (id, send) in batch {
        let confirm: Confirming = match send {
            Outbound::Publish { target, message } => match &topics_recorded {
                Err(error) if dispatcher.keeps_history_of(&target) => failed(error.clone()),
                _ => match node.broker.publish(order, target, message).await {
                    Ok(confirm) => Box::pin(async move { done(confirm.await) }),
                    Err(error) => failed(error),
                },
            },
            Outbound::ToUser {
                user,
                name,
                message,
                when_offline,
            } => match &mut located {
                Err(error) => failed(error.clone()),
                Ok(located) => match dispatcher
                    .hand_over_to(
                        &user,
                        &located.next().unwrap_or_default(),
                        &name,
                        message,
                        when_offline,
                        None,
                    )
                    .await
                {
                    Ok(dispatch) => Box::pin(async move { done(dispatch.await.map(|_| ())) }),
                    Err(error) => failed(error),
                },
            },
        };
        handed.push((id, confirm));
    }
    handed
}

/// A SEND refused before it was handed over.
fn failed(error: impl Failure) -> Confirming {
    Box::pin(std::future::ready(Event::Done(Err(rejection(error)))))
}

/// How long a node keeps trying what Redis must learn when a session
/// ends or delivers (Redis restarting, or away).
const REDIS_PATIENCE: Duration = Duration::from_secs(120);

/// Runs `attempt` now; when Redis cannot answer, again in the background,
/// with growing waits, for [`REDIS_PATIENCE`], rather than make the session
/// wait for it. `failed` says in the log what a last failure leaves.
async fn now_or_later<F, Fut, E>(session: SessionId, failed: &'static str, attempt: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::error::Error + Send + 'static,
{
    if attempt().await.is_ok() {
        return;
    }
    tokio::spawn(async move {
        if let Err(error) = retry::within("Redis", REDIS_PATIENCE, attempt).await {
            tracing::warn!(%session, error = %Chain(&error), "{failed}");
        }
    });
}

/// Forgets kept messages `session` delivered. One not forgotten comes
/// again, as redelivered, the next time its user reads the store: at least
/// once, never lost.
async fn forget_offline(
    dispatcher: &Dispatcher,
    session: SessionId,
    user: String,
    ids: Vec<String>,
) {
    let dispatcher = dispatcher.clone();
    let failed = "cannot forget delivered kept messages: they will come again";
    now_or_later(session, failed, move || {
        let (dispatcher, user, ids) = (dispatcher.clone(), user.clone(), ids.clone());
        async move { dispatcher.offline().forget(&user, &ids).await }
    })
    .await;
}

/// Ends the other sessions of `user`, wherever they are. A failure leaves
/// them open (and says so in the log) rather than refusing this login.
async fn replace_older(node: &Node, session: SessionId, user: &str) {
    let older = match node.registry.locate(user).await {
        Ok(sessions) => sessions,
        Err(error) => {
            tracing::warn!(%user, %error, "cannot look up older sessions to replace");
            return;
        }
    };
    for old in older.iter().filter(|old| old.session != session) {
        tracing::info!(%user, old = %old.session, node = %old.node, new = %session, "replacing an older session of the user");
        if old.node == node.id {
            node.sessions.evict(old.session);
        } else if let Err(error) = node.registry.evict(old.session, &old.node).await {
            tracing::warn!(%user, old = %old.session, %error, "cannot ask another node to close an older session");
        }
    }
}

/// A failure of one of the node's services, as its session sees it.
trait Failure: std::error::Error + ClientText + 'static {
    /// The service that failed, named to the client.
    fn service(&self) -> Service;
}

impl Failure for BrokerError {
    fn service(&self) -> Service {
        Service::Broker
    }
}

impl Failure for DispatchError {
    fn service(&self) -> Service {
        match self {
            DispatchError::Registry(_) => Service::Registry,
            DispatchError::Broker(_) => Service::Broker,
            DispatchError::Offline(_) => Service::OfflineStore,
            DispatchError::History(_) => Service::History,
        }
    }
}

impl Failure for RegistryError {
    fn service(&self) -> Service {
        Service::Registry
    }
}

fn done<E: Failure>(result: Result<(), E>) -> Event {
    Event::Done(result.map_err(rejection))
}

/// Logs a service failure with its whole cause and tells the client the
/// short, stable text.
fn rejection<E: Failure>(error: E) -> Rejection {
    tracing::warn!(error = %Chain(&error), "a session's command failed");
    Rejection::from(SessionError::Service {
        service: error.service(),
        summary: error.client_summary(),
        text: error.client_text().into_owned(),
    })
}
