//! Requests for users that arrive together are carried out together:
//! their histories written in one round trip to Redis, their users read
//! from the registry in one more, and their deliveries handed to the
//! broker in one go, so that the broker's postman puts them in one
//! envelope per node.
//!
//! Group commit, with no timer: one task takes every request waiting now
//! and carries out their hand-over; what comes meanwhile waits for the
//! next round. An idle node's request goes at once; under load, a round
//! holds what arrived while the one before it was out (concurrent HTTP API
//! calls, `stomp.dispatch` lanes). Each request then awaits its own
//! confirms, outside the task.

use std::future::Future;
use std::pin::Pin;

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};

use super::{DispatchError, DispatchReport, Dispatcher, WhenOffline};
use crate::broker::{BrokerError, Message};

/// Requests that may wait for the next round before their senders wait too.
const BACKLOG: usize = 1024;

/// Requests taken in one round, at most.
const TAKE_AT_ONCE: usize = 256;

/// A request's report, once the broker has confirmed what it handed over.
pub(super) type Reported =
    Pin<Box<dyn Future<Output = Result<DispatchReport, DispatchError>> + Send>>;

/// One message for the user destination `name` of each of `users`.
pub(super) struct Order {
    pub users: Vec<String>,
    pub name: String,
    pub message: Message,
    pub when_offline: WhenOffline,
    pub request: Option<String>,
    handed_over: oneshot::Sender<Result<Reported, DispatchError>>,
}

/// The way requests reach the task that carries them out together.
#[derive(Clone)]
pub(super) struct Together {
    orders: mpsc::Sender<Order>,
}

impl Together {
    /// Starts the task that carries out `dispatcher`'s requests; it ends
    /// once every `Together` is dropped.
    pub(super) fn start(dispatcher: Dispatcher) -> Together {
        let (orders, waiting) = mpsc::channel(BACKLOG);
        tokio::spawn(serve(dispatcher, waiting));
        Together { orders }
    }

    /// Hands a message for the user destination `name` of each of `users`
    /// over with whatever else is ready; returns what awaits the broker's
    /// confirms. `request` is the `stomp.dispatch` request it carries out,
    /// when it has a message id.
    pub(super) async fn hand_over(
        &self,
        users: Vec<String>,
        name: String,
        message: Message,
        when_offline: WhenOffline,
        request: Option<String>,
    ) -> Result<Reported, DispatchError> {
        let (handed_over, answer) = oneshot::channel();
        let order = Order {
            users,
            name,
            message,
            when_offline,
            request,
            handed_over,
        };
        self.orders.send(order).await.map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())?
    }
}

pub(super) fn stopping() -> DispatchError {
    DispatchError::Broker(BrokerError::Unavailable {
        what: "dispatch (the node is stopping)",
        source: None,
    })
}

async fn serve(dispatcher: Dispatcher, mut orders: mpsc::Receiver<Order>) {
    let mut round = Vec::with_capacity(TAKE_AT_ONCE);
    while orders.recv_many(&mut round, TAKE_AT_ONCE).await > 0 {
        carry_out(&dispatcher, std::mem::take(&mut round)).await;
    }
}

/// Writes every order's messages to the histories, reads every order's
/// users, then hands each order over, in the order they came. Each
/// step's commands go out together, so Redis sees one round trip per step
/// for the whole round; each order fails or succeeds on its own.
async fn carry_out(dispatcher: &Dispatcher, orders: Vec<Order>) {
    let mut letters: Vec<Vec<Message>> = orders
        .iter()
        .map(|order| vec![order.message.clone(); order.users.len()])
        .collect();
    let recorded = join_all(
        orders
            .iter()
            .zip(letters.iter_mut())
            .map(|(order, messages)| {
                dispatcher.record(
                    order
                        .users
                        .iter()
                        .zip(messages.iter_mut())
                        .map(|(user, message)| (user.as_str(), order.name.as_str(), message)),
                    order.request.as_deref(),
                )
            }),
    )
    .await;
    let located = join_all(
        orders
            .iter()
            .zip(recorded)
            .map(|(order, recorded)| async move {
                recorded?;
                let users: Vec<&str> = order.users.iter().map(String::as_str).collect();
                dispatcher.locate_many(&users).await
            }),
    )
    .await;
    for ((order, messages), located) in orders.into_iter().zip(letters).zip(located) {
        let handed = match located {
            Ok(located) => dispatcher.hand_over_each(&order, located, messages).await,
            Err(error) => Err(error),
        };
        // A sender that stopped waiting needs no answer.
        let _ = order.handed_over.send(handed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::broker::embedded::{EmbeddedBroker, EmbeddedLimits};
    use crate::dispatch::offline::OfflineLimits;
    use crate::dispatch::offline::memory::MemoryOfflineStore;
    use crate::dispatch::offline::{OfflineError, OfflineMessage, OfflineStore};
    use crate::metrics::Metrics;
    use crate::registry::{NodeRecord, Registry, RegistryError, SessionLocation, SessionRecord};

    /// Holds whoever comes until it is opened to them, and counts who
    /// waits.
    struct Gate {
        permits: Semaphore,
        waiting: AtomicUsize,
    }

    impl Gate {
        fn closed() -> Gate {
            Gate {
                permits: Semaphore::new(0),
                waiting: AtomicUsize::new(0),
            }
        }

        fn open() -> Gate {
            let gate = Gate::closed();
            gate.let_through(Semaphore::MAX_PERMITS);
            gate
        }

        async fn pass(&self) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            if let Ok(pass) = self.permits.acquire().await {
                pass.forget();
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }

        fn let_through(&self, how_many: usize) {
            self.permits.add_permits(how_many);
        }

        fn waiting(&self) -> usize {
            self.waiting.load(Ordering::SeqCst)
        }

        /// Waits until `how_many` wait at once.
        async fn holds(&self, how_many: usize) {
            tokio::time::timeout(Duration::from_secs(5), async {
                while self.waiting() < how_many {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{} waiting, not {how_many}", self.waiting()));
        }
    }

    /// A registry where user `u{n}` has `n % 3` sessions listening to
    /// `inbox`, `broken` cannot be read, and reads pass `gate`.
    struct Registered {
        gate: Gate,
    }

    #[async_trait]
    impl Registry for Registered {
        async fn register(&self, _: &SessionRecord) -> Result<(), RegistryError> {
            Ok(())
        }
        async fn unregister(&self, _: &SessionRecord) -> Result<(), RegistryError> {
            Ok(())
        }
        async fn update_destinations(&self, _: &SessionRecord) -> Result<(), RegistryError> {
            Ok(())
        }
        async fn sessions_of(&self, _: &str) -> Result<Vec<SessionRecord>, RegistryError> {
            Ok(Vec::new())
        }
        async fn locate(&self, user: &str) -> Result<Vec<SessionLocation>, RegistryError> {
            self.gate.pass().await;
            if user == "broken" {
                return Err(RegistryError::Unavailable {
                    what: "read users' sessions",
                    source: None,
                });
            }
            Ok((0..sessions_of(user))
                .map(|_| SessionLocation {
                    session: uuid::Uuid::new_v4(),
                    node: "n1".into(),
                    destinations: vec!["inbox".into()],
                })
                .collect())
        }
        async fn all_sessions(&self) -> Result<Vec<SessionRecord>, RegistryError> {
            Ok(Vec::new())
        }
        async fn nodes(&self) -> Result<Vec<NodeRecord>, RegistryError> {
            Ok(Vec::new())
        }
    }

    fn sessions_of(user: &str) -> usize {
        user[1..].parse::<usize>().unwrap_or(0) % 3
    }

    /// An offline store whose keeping passes `gate`.
    struct Kept {
        gate: Gate,
    }

    #[async_trait]
    impl OfflineStore for Kept {
        async fn keep(
            &self,
            _: &str,
            _: &str,
            _: &Message,
            _: bool,
        ) -> Result<String, OfflineError> {
            self.gate.pass().await;
            Ok(uuid::Uuid::new_v4().to_string())
        }
        async fn kept(&self, _: &str, _: &str) -> Result<Vec<OfflineMessage>, OfflineError> {
            Ok(Vec::new())
        }
        async fn forget(&self, _: &str, _: &[String]) -> Result<(), OfflineError> {
            Ok(())
        }
    }

    fn dispatcher(registry: Arc<Registered>, offline: Arc<dyn OfflineStore>) -> Dispatcher {
        Dispatcher::new(
            registry,
            Arc::new(EmbeddedBroker::new(
                EmbeddedLimits::default(),
                Default::default(),
            )),
            offline,
            None,
            Metrics::default(),
        )
    }

    fn message() -> Message {
        Message {
            headers: Default::default(),
            body: Bytes::from_static(b"hi"),
        }
    }

    #[tokio::test]
    async fn requests_that_come_while_a_round_is_out_go_together_in_the_next_each_with_its_own_answer()
     {
        let registry = Arc::new(Registered {
            gate: Gate::closed(),
        });
        let offline = MemoryOfflineStore::new(OfflineLimits::default(), Default::default());
        let dispatcher = dispatcher(registry.clone(), Arc::new(offline));
        let send = |user: String| {
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move {
                dispatcher
                    .to_user(&user, "inbox", message(), WhenOffline::Drop)
                    .await
            })
        };
        // The first request's round waits in the registry...
        let first = send("u1".to_owned());
        registry.gate.holds(1).await;
        // ... while 30 more come, one of which cannot be read.
        let users: Vec<String> = (2..31)
            .map(|n| format!("u{n}"))
            .chain(["broken".to_owned()])
            .collect();
        let rest: Vec<_> = users.iter().cloned().map(send).collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            registry.gate.waiting(),
            1,
            "the others wait for the round that is out"
        );
        // The next round reads them all at once.
        registry.gate.let_through(1);
        registry.gate.holds(30).await;
        registry.gate.let_through(1000);

        let report = first.await.unwrap().unwrap();
        assert_eq!((report.sessions, report.offline_users), (1, 0));
        for (user, answer) in users.iter().zip(rest) {
            let answer = answer.await.unwrap();
            if user == "broken" {
                assert!(matches!(answer, Err(DispatchError::Registry(_))));
                continue;
            }
            let report = answer.unwrap();
            let sessions = sessions_of(user);
            assert_eq!(report.sessions, sessions, "{user}");
            assert_eq!(report.offline_users, usize::from(sessions == 0), "{user}");
        }
    }

    #[tokio::test]
    async fn a_request_keeps_its_message_for_all_its_offline_users_at_once() {
        let registry = Arc::new(Registered { gate: Gate::open() });
        let offline = Arc::new(Kept {
            gate: Gate::closed(),
        });
        let dispatcher = dispatcher(registry, offline.clone());
        // Users without sessions.
        let users: Vec<String> = (0..50).map(|n| format!("u{}", n * 3)).collect();
        let sent = tokio::spawn(async move {
            dispatcher
                .to_users(&users, "inbox", message(), WhenOffline::Keep, None)
                .await
        });
        offline.gate.holds(50).await;
        offline.gate.let_through(50);
        let report = sent.await.unwrap().unwrap();
        assert_eq!((report.offline_users, report.kept), (50, 50));
    }
}
