//! In-process fan-out: which subscriptions of this node a message published
//! to an exchange reaches. Routing is kept apart from the network, as in
//! rumqttd: the router only knows bindings and answers "who gets this".
//!
//! The embedded broker routes every exchange publish through it; the AMQP
//! broker routes what arrives on its node queue through it, binding the node
//! queue once per distinct topic key ([`Router::bind`] says when a key is
//! new, and [`Router::unbind`] when one is no longer used). User
//! subscriptions need no binding of their own: a session key
//! ([`SessionKey`]) names the session and the name, and the node queue's
//! one binding for its sessions' keys is made when the node starts. A
//! message to everyone (on [`EVERYONE_EXCHANGE`], keyed by a
//! user-destination name) reaches every user subscription of that name on
//! the node.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use super::SessionId;
use super::destination::{
    EVERYONE_EXCHANGE, SessionKey, TOPIC_EXCHANGE, USERS_EXCHANGE, published_destination,
};
use super::topic_pattern::TopicPattern;

/// How an exchange matches routing keys to binding keys, as in AMQP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// `*` and `#` wildcards.
    Topic,
    /// Exact key.
    Direct,
    /// Every binding, whatever the key.
    Fanout,
}

/// A subscription as the router delivers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub session: SessionId,
    pub subscription: Arc<str>,
    /// What the client subscribed to; user-destination messages carry it
    /// as their `destination`, as Spring does.
    pub destination: Arc<str>,
    pub needs_ack: bool,
}

/// A binding key in use on this node, with what it is bound to: the unit
/// the AMQP broker binds and unbinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingKey {
    pub exchange: String,
    pub key: String,
}

/// Who a routed message goes to, and the `destination` their MESSAGE shows.
pub struct Route<'a> {
    /// Empty for a user destination, whose MESSAGEs show what each
    /// subscriber subscribed to ([`Route::destination_for`]).
    pub destination: Arc<str>,
    pub subscribers: Vec<&'a Subscriber>,
    /// The routing key was a session key: with no subscriber, the session
    /// it names is not here (any more) or does not listen to that name.
    pub to_session: bool,
}

impl Route<'_> {
    /// Each subscriber reached, owned, with the `destination` its MESSAGE
    /// shows.
    pub fn targets(&self) -> Vec<(Subscriber, Arc<str>)> {
        self.subscribers
            .iter()
            .map(|&subscriber| (subscriber.clone(), self.destination_for(subscriber)))
            .collect()
    }

    /// The key named a session that is not here, or does not listen to
    /// that name: the message is dropped.
    pub fn is_unclaimed(&self) -> bool {
        self.to_session && self.subscribers.is_empty()
    }

    /// The `destination` the MESSAGE to `subscriber` shows.
    pub fn destination_for(&self, subscriber: &Subscriber) -> Arc<str> {
        if self.destination.is_empty() {
            subscriber.destination.clone()
        } else {
            self.destination.clone()
        }
    }
}

#[derive(Debug, Default)]
struct ExchangeBindings {
    /// Keys without wildcards, found by lookup.
    exact: HashMap<String, Vec<Subscriber>>,
    /// Keys with wildcards (topic exchanges), matched one by one.
    patterns: Vec<(TopicPattern, String, Vec<Subscriber>)>,
    /// Fanout bindings, keyed by the binding key for unbinding's sake.
    fanout: HashMap<String, Vec<Subscriber>>,
}

/// Where a subscription is bound, so it can be unbound.
#[derive(Debug, Clone)]
enum Location {
    Exchange(String, ExchangeKind, String),
    User(String),
}

/// The fan-out table of one node.
#[derive(Debug, Default)]
pub struct Router {
    exchanges: HashMap<String, ExchangeBindings>,
    /// User destinations: name -> session -> that session's subscriptions.
    /// By name first, so that a message to everyone finds all of a name's
    /// subscriptions with one lookup, and a user key one session's with two.
    users: HashMap<String, HashMap<SessionId, Vec<Subscriber>>>,
    locations: HashMap<(SessionId, Arc<str>), Location>,
}

impl Router {
    /// Binds a subscription to `key` on `exchange`. True when no subscription
    /// of this node used that key before.
    pub fn bind(
        &mut self,
        exchange: &str,
        kind: ExchangeKind,
        key: &str,
        subscriber: Subscriber,
    ) -> bool {
        self.locations.insert(
            (subscriber.session, subscriber.subscription.clone()),
            Location::Exchange(exchange.to_owned(), kind, key.to_owned()),
        );
        let bindings = self.exchanges.entry(exchange.to_owned()).or_default();
        let list = match kind {
            ExchangeKind::Fanout => bindings.fanout.entry(key.to_owned()).or_default(),
            ExchangeKind::Topic if TopicPattern::new(key).is_wildcard() => {
                match bindings.patterns.iter().position(|(_, k, _)| k == key) {
                    Some(index) => &mut bindings.patterns[index].2,
                    None => {
                        bindings.patterns.push((
                            TopicPattern::new(key),
                            key.to_owned(),
                            Vec::new(),
                        ));
                        &mut bindings.patterns.last_mut().expect("just pushed").2
                    }
                }
            }
            ExchangeKind::Topic | ExchangeKind::Direct => {
                bindings.exact.entry(key.to_owned()).or_default()
            }
        };
        list.push(subscriber);
        list.len() == 1
    }

    /// Binds a subscription of a session to its user destination `name`,
    /// which the session's keys ([`SessionKey`]) reach.
    pub fn bind_user(&mut self, name: &str, subscriber: Subscriber) {
        let session = subscriber.session;
        self.locations.insert(
            (session, subscriber.subscription.clone()),
            Location::User(name.to_owned()),
        );
        self.users
            .entry(name.to_owned())
            .or_default()
            .entry(session)
            .or_default()
            .push(subscriber);
    }

    /// Removes a subscription. Returns the binding key it leaves unused, if
    /// it was the last subscription of this node on it (never for a user
    /// subscription, which has no binding of its own).
    pub fn unbind(&mut self, session: SessionId, subscription: &str) -> Option<BindingKey> {
        let location = self.locations.remove(&(session, Arc::from(subscription)))?;
        let is_it = |s: &Subscriber| s.session == session && &*s.subscription == subscription;
        match location {
            Location::User(name) => {
                let sessions = self.users.get_mut(&name)?;
                remove_from(sessions, &session, is_it);
                if sessions.is_empty() {
                    self.users.remove(&name);
                }
                None
            }
            Location::Exchange(exchange, kind, key) => {
                let bindings = self.exchanges.get_mut(&exchange)?;
                let emptied = match kind {
                    ExchangeKind::Fanout => remove_from(&mut bindings.fanout, &key, is_it),
                    ExchangeKind::Topic if TopicPattern::new(&key).is_wildcard() => {
                        let index = bindings.patterns.iter().position(|(_, k, _)| *k == key)?;
                        bindings.patterns[index].2.retain(|s| !is_it(s));
                        let emptied = bindings.patterns[index].2.is_empty();
                        if emptied {
                            bindings.patterns.swap_remove(index);
                        }
                        emptied
                    }
                    ExchangeKind::Topic | ExchangeKind::Direct => {
                        remove_from(&mut bindings.exact, &key, is_it)
                    }
                };
                emptied.then_some(BindingKey { exchange, key })
            }
        }
    }

    /// Removes every subscription of a session, returning the binding keys
    /// left unused.
    pub fn unbind_session(&mut self, session: SessionId) -> Vec<BindingKey> {
        let subscriptions: Vec<Arc<str>> = self
            .locations
            .keys()
            .filter(|(s, _)| *s == session)
            .map(|(_, subscription)| subscription.clone())
            .collect();
        subscriptions
            .iter()
            .filter_map(|subscription| self.unbind(session, subscription))
            .collect()
    }

    /// The subscriptions a message published to `exchange` with
    /// `routing_key` reaches.
    ///
    /// The user-key guard: a session key (on the users exchange, or on
    /// `amq.topic`, which passes session keys on) reaches the subscriptions
    /// to its name of the session it names and nothing else, whatever
    /// wildcards others bound. A message to everyone reaches user
    /// subscriptions only, never a topic subscription.
    pub fn route(&self, exchange: &str, routing_key: &str) -> Route<'_> {
        if (exchange == USERS_EXCHANGE || exchange == TOPIC_EXCHANGE)
            && SessionKey::is_reserved(routing_key)
        {
            return match SessionKey::parse(routing_key) {
                Some(key) => self.route_to_session(key.session, key.name),
                // Not a session's: no subscriber's either.
                None => Route {
                    destination: Arc::from(""),
                    subscribers: Vec::new(),
                    to_session: true,
                },
            };
        }
        if exchange == EVERYONE_EXCHANGE {
            let subscribers = self
                .users
                .get(routing_key)
                .map(|sessions| sessions.values().flatten().collect())
                .unwrap_or_default();
            return Route {
                destination: Arc::from(""),
                subscribers,
                to_session: false,
            };
        }
        let destination: Arc<str> = Arc::from(published_destination(exchange, routing_key));
        let mut subscribers = Vec::new();
        if let Some(bindings) = self.exchanges.get(exchange) {
            if let Some(list) = bindings.exact.get(routing_key) {
                subscribers.extend(list);
            }
            for (pattern, _, list) in &bindings.patterns {
                if pattern.matches(routing_key) {
                    subscribers.extend(list);
                }
            }
            for list in bindings.fanout.values() {
                subscribers.extend(list);
            }
        }
        Route {
            destination,
            subscribers,
            to_session: false,
        }
    }

    /// The subscriptions of `session` to its user destination `name`: where
    /// a session key, or an envelope's delivery, goes.
    pub fn route_to_session(&self, session: SessionId, name: &str) -> Route<'_> {
        let subscribers = self
            .users
            .get(name)
            .and_then(|sessions| sessions.get(&session))
            .map(|list| list.iter().collect())
            .unwrap_or_default();
        Route {
            destination: Arc::from(""),
            subscribers,
            to_session: true,
        }
    }

    /// [`Router::route`], owned: each subscriber reached, with the
    /// `destination` its MESSAGE shows (the subscribed one for user
    /// destinations), for callers that go on to change other state.
    pub fn targets(&self, exchange: &str, routing_key: &str) -> Vec<(Subscriber, Arc<str>)> {
        self.route(exchange, routing_key).targets()
    }

    /// Every binding key in use: what a queue whose bindings were lost (with
    /// the connection that held it) is bound with again.
    pub fn binding_keys(&self) -> Vec<BindingKey> {
        self.exchanges
            .iter()
            .flat_map(|(exchange, bindings)| {
                let keys = bindings
                    .exact
                    .keys()
                    .chain(bindings.patterns.iter().map(|(_, key, _)| key))
                    .chain(bindings.fanout.keys());
                keys.map(|key| BindingKey {
                    exchange: exchange.clone(),
                    key: key.clone(),
                })
            })
            .collect()
    }

    /// Whether a session's subscription is still bound.
    pub fn is_bound(&self, session: SessionId, subscription: &str) -> bool {
        self.locations
            .contains_key(&(session, Arc::from(subscription)))
    }
}

/// Removes the subscriber from `key`'s list; true when the list emptied
/// (and was dropped).
fn remove_from<K: Eq + Hash>(
    map: &mut HashMap<K, Vec<Subscriber>>,
    key: &K,
    is_it: impl Fn(&Subscriber) -> bool,
) -> bool {
    let Some(list) = map.get_mut(key) else {
        return false;
    };
    list.retain(|s| !is_it(s));
    let emptied = list.is_empty();
    if emptied {
        map.remove(key);
    }
    emptied
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn subscriber(session: SessionId, id: &str) -> Subscriber {
        Subscriber {
            session,
            subscription: Arc::from(id),
            destination: Arc::from(format!("/topic/{id}")),
            needs_ack: false,
        }
    }

    fn reached(router: &Router, exchange: &str, key: &str) -> Vec<String> {
        let mut ids: Vec<String> = router
            .route(exchange, key)
            .subscribers
            .iter()
            .map(|s| s.subscription.to_string())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn binding_keys_are_each_key_in_use_once() {
        let mut router = Router::default();
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "a.b",
            subscriber(one, "1"),
        );
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "a.b",
            subscriber(two, "2"),
        );
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "a.*",
            subscriber(one, "3"),
        );
        // A user subscription needs no binding of its own.
        router.bind_user("inbox", subscriber(one, "4"));
        router.bind_user("inbox", subscriber(one, "5"));
        let mut keys: Vec<String> = router.binding_keys().into_iter().map(|b| b.key).collect();
        keys.sort();
        assert_eq!(keys, ["a.*", "a.b"]);
        assert_eq!(router.unbind(one, "4"), None);
        router.unbind_session(one);
        router.unbind_session(two);
        assert!(router.binding_keys().is_empty());
    }

    #[test]
    fn exact_and_wildcard_bindings_both_receive() {
        let mut router = Router::default();
        let session = Uuid::new_v4();
        assert!(router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "chat.general",
            subscriber(session, "a")
        ));
        assert!(!router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "chat.general",
            subscriber(session, "b")
        ));
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "chat.*",
            subscriber(session, "c"),
        );
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "#",
            subscriber(session, "d"),
        );
        assert_eq!(
            reached(&router, TOPIC_EXCHANGE, "chat.general"),
            ["a", "b", "c", "d"]
        );
        assert_eq!(reached(&router, TOPIC_EXCHANGE, "chat.other"), ["c", "d"]);
        assert_eq!(
            reached(&router, "amq.direct", "chat.general"),
            Vec::<String>::new()
        );
        assert_eq!(
            &*router.route(TOPIC_EXCHANGE, "chat.x").destination,
            "/topic/chat.x"
        );
    }

    #[test]
    fn unbinding_the_last_subscriber_frees_the_key() {
        let mut router = Router::default();
        let session = Uuid::new_v4();
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "k",
            subscriber(session, "a"),
        );
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "k",
            subscriber(session, "b"),
        );
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "k.#",
            subscriber(session, "c"),
        );
        assert_eq!(router.unbind(session, "a"), None);
        assert_eq!(
            router.unbind(session, "b"),
            Some(BindingKey {
                exchange: TOPIC_EXCHANGE.into(),
                key: "k".into()
            })
        );
        assert_eq!(router.unbind_session(session).len(), 1);
        assert!(reached(&router, TOPIC_EXCHANGE, "k").is_empty());
        assert_eq!(router.unbind(session, "a"), None);
    }

    #[test]
    fn user_keys_reach_only_the_session_they_name() {
        let mut router = Router::default();
        let (alice, eve) = (Uuid::new_v4(), Uuid::new_v4());
        let mut private = subscriber(alice, "inbox");
        private.destination = Arc::from("/user/queue/private");
        router.bind_user("private", private);
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "#",
            subscriber(eve, "all"),
        );
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "*",
            subscriber(eve, "one"),
        );
        let key = SessionKey::new("n1", alice, "private").to_string();
        // Published by dispatch on the users exchange, or by a service on
        // amq.topic: the same guard.
        assert_eq!(reached(&router, USERS_EXCHANGE, &key), ["inbox"]);
        assert_eq!(reached(&router, TOPIC_EXCHANGE, &key), ["inbox"]);
        let other = SessionKey::new("n1", eve, "private").to_string();
        assert!(reached(&router, USERS_EXCHANGE, &other).is_empty());
        assert!(router.route(USERS_EXCHANGE, &other).to_session);
        let unsubscribed = SessionKey::new("n1", alice, "other").to_string();
        assert!(reached(&router, TOPIC_EXCHANGE, &unsubscribed).is_empty());
    }

    #[test]
    fn a_message_to_everyone_reaches_every_user_subscription_of_its_name_only() {
        let mut router = Router::default();
        let (ann, ben, cy) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for (session, id, name) in [
            (ann, "x1", "x"),
            (ann, "x2", "x"),
            (ben, "bx", "x"),
            (cy, "cy", "y"),
        ] {
            let mut subscription = subscriber(session, id);
            subscription.destination = Arc::from(format!("/user/topic/{name}"));
            router.bind_user(name, subscription);
        }
        router.bind(
            TOPIC_EXCHANGE,
            ExchangeKind::Topic,
            "#",
            subscriber(cy, "wide"),
        );
        assert_eq!(reached(&router, EVERYONE_EXCHANGE, "x"), ["bx", "x1", "x2"]);
        let route = router.route(EVERYONE_EXCHANGE, "x");
        assert_eq!(
            &*route.destination_for(route.subscribers[0]),
            "/user/topic/x"
        );
        assert!(reached(&router, EVERYONE_EXCHANGE, "z").is_empty());

        assert_eq!(router.unbind(ann, "x1"), None);
        assert_eq!(router.unbind(ann, "x2"), None);
        assert_eq!(reached(&router, EVERYONE_EXCHANGE, "x"), ["bx"]);
        router.unbind_session(ben);
        assert!(reached(&router, EVERYONE_EXCHANGE, "x").is_empty());
    }

    #[test]
    fn direct_and_fanout_exchanges() {
        let mut router = Router::default();
        let session = Uuid::new_v4();
        router.bind(
            "amq.direct",
            ExchangeKind::Direct,
            "a.*",
            subscriber(session, "direct"),
        );
        router.bind(
            "amq.fanout",
            ExchangeKind::Fanout,
            "",
            subscriber(session, "fan"),
        );
        assert_eq!(reached(&router, "amq.direct", "a.*"), ["direct"]);
        assert!(reached(&router, "amq.direct", "a.b").is_empty());
        assert_eq!(reached(&router, "amq.fanout", "anything"), ["fan"]);
    }
}
