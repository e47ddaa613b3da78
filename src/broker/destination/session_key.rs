//! Session keys: the routing keys that reach one session's user
//! destinations, and the node's envelopes, on the relay's own exchange.

use std::borrow::Cow;
use std::fmt;

use uuid::Uuid;

/// The routing key of one session's user destination:
/// `stomp.{node}.{session}.{name}`, published on [`USERS_EXCHANGE`] (and
/// on `amq.topic`, which passes every `stomp.#` key on to it, for services
/// that publish there as Spring apps do). It names the session's node, so
/// that one wildcard binding per node (`stomp.{node}.#`) reaches all its
/// sessions, and the session, so that only that session's subscriptions to
/// `name` receive it (the user-key guard of `docs/architecture.md`). The
/// node's id is one word of the key, each `.` in it written `~` (node ids
/// never hold a `~`); the name is the rest, whatever dots, slashes or
/// wildcard characters it holds: nothing is matched after the session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey<'a> {
    /// The node's word, `.` already written `~`.
    node_word: Cow<'a, str>,
    pub session: Uuid,
    pub name: &'a str,
}

/// The first word of every session key.
const SESSION_KEY_WORD: &str = "stomp";

/// The exchange of session keys: a topic exchange of the relay's own, which
/// no client can name, so that no wildcard subscription (`/topic/#`) pulls
/// the cluster's user messages to its node.
pub const USERS_EXCHANGE: &str = "stomp.users";

/// What `amq.topic` passes on to [`USERS_EXCHANGE`]: every session key.
pub const SESSION_KEYS: &str = "stomp.#";

impl<'a> SessionKey<'a> {
    pub fn new(node: &'a str, session: Uuid, name: &'a str) -> SessionKey<'a> {
        SessionKey {
            node_word: node_word(node),
            session,
            name,
        }
    }

    /// Reads a routing key as a session key, if it is one.
    pub fn parse(routing_key: &'a str) -> Option<SessionKey<'a>> {
        let rest = routing_key
            .strip_prefix(SESSION_KEY_WORD)?
            .strip_prefix('.')?;
        let (node_word, rest) = rest.split_once('.')?;
        let session = rest.get(..36)?;
        let name = rest.get(36..)?.strip_prefix('.')?;
        if node_word.is_empty() || name.is_empty() {
            return None;
        }
        Some(SessionKey {
            node_word: Cow::Borrowed(node_word),
            session: Uuid::try_parse(session).ok()?,
            name,
        })
    }

    /// The one binding of a node queue that every session key of `node`
    /// matches.
    pub fn node_binding(node: &str) -> String {
        format!("{SESSION_KEY_WORD}.{}.#", node_word(node))
    }

    /// The key of envelopes for `node`: deliveries to several of its
    /// sessions in one message, which its one binding also matches.
    pub fn envelope_key(node: &str) -> String {
        format!("{SESSION_KEY_WORD}.{}", node_word(node))
    }

    /// Whether a routing key is of the relay's own, on `amq.topic` or the
    /// users exchange: a session key or an envelope's, which no client
    /// may publish or subscribe to.
    pub fn is_reserved(routing_key: &str) -> bool {
        routing_key == SESSION_KEY_WORD
            || routing_key
                .strip_prefix(SESSION_KEY_WORD)
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// The binding that every session key of one session matches (its own
    /// queue, with `--routing session`).
    pub fn session_binding(node: &str, session: Uuid) -> String {
        format!("{SESSION_KEY_WORD}.{}.{session}.#", node_word(node))
    }
}

/// A node id as one word of a topic routing key.
fn node_word(node: &str) -> Cow<'_, str> {
    if node.contains('.') {
        Cow::Owned(node.replace('.', "~"))
    } else {
        Cow::Borrowed(node)
    }
}

impl fmt::Display for SessionKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SESSION_KEY_WORD}.{}.{}.{}",
            self.node_word, self.session, self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::destination::{MAX_NAME_LEN, MAX_NODE_ID_LEN, MAX_USER_DESTINATION_LEN};
    use crate::broker::topic_pattern::TopicPattern;

    #[test]
    fn a_session_key_holds_any_name_and_a_dotted_node_id() {
        let session = Uuid::new_v4();
        for (node, name) in [
            ("n1", "notes"),
            ("relay-1.example.com", "a.b.c"),
            ("n1", "#"),
            ("n1", "*.x.#"),
            ("n1", "with/slashes/and spaces"),
            ("n1", "ünïcödé.✓"),
            ("n1", "."),
        ] {
            let key = SessionKey::new(node, session, name).to_string();
            let parsed = SessionKey::parse(&key).expect(&key);
            assert_eq!((parsed.session, parsed.name), (session, name), "{key}");
            // The node's binding matches it, and no other node's does.
            let binding = TopicPattern::new(&SessionKey::node_binding(node));
            assert!(binding.matches(&key), "{key}");
            for other in ["relay-1", "n", "n1.x", "relay-1.example"] {
                let other = TopicPattern::new(&SessionKey::node_binding(other));
                assert!(!other.matches(&key), "{key}");
            }
            let own = SessionKey::session_binding(node, session);
            assert!(TopicPattern::new(&own).matches(&key));
        }
        assert_eq!(
            SessionKey::new("relay-1.example.com", session, "a").to_string(),
            format!("stomp.relay-1~example~com.{session}.a")
        );
        for not_a_key in [
            "notes".to_owned(),
            format!("stomp.n1.{session}"),
            format!("stomp.n1.{session}."),
            format!("stomp..{session}.x"),
            "stomp.n1.not-a-session-id-of-36-characters.x".to_owned(),
            format!("other.n1.{session}.x"),
        ] {
            assert_eq!(SessionKey::parse(&not_a_key), None, "{not_a_key}");
        }
    }

    #[test]
    fn the_longest_name_fits_a_routing_key_with_the_longest_node_id() {
        let node = "n".repeat(MAX_NODE_ID_LEN);
        let name = "x".repeat(MAX_USER_DESTINATION_LEN);
        let key = SessionKey::new(&node, Uuid::new_v4(), &name).to_string();
        assert_eq!(key.len(), MAX_NAME_LEN);
    }
}
