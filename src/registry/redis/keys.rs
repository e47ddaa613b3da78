//! The registry's key names under one prefix, and what their values hold
//! (the table in `mod.rs`).

use std::sync::Arc;

use crate::registry::SessionRecord;

/// The registry's key names under one prefix.
#[derive(Clone)]
pub(super) struct Keys {
    pub(super) prefix: Arc<str>,
}

impl Keys {
    pub(super) fn node(&self, node: &str) -> String {
        format!("{}node:{{{node}}}", self.prefix)
    }

    pub(super) fn node_sessions(&self, node: &str) -> String {
        format!("{}node-sessions:{{{node}}}", self.prefix)
    }

    pub(super) fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    pub(super) fn user(&self, user: &str) -> String {
        format!("{}user:{{{user}}}", self.prefix)
    }

    pub(super) fn eviction_channel(&self, node: &str) -> String {
        format!("{}evict:{node}", self.prefix)
    }
}

/// A session's entry in its node's list: `{connected-at} {user}`.
pub(super) fn node_entry(record: &SessionRecord) -> String {
    format!("{} {}", record.connected_at, record.user)
}

/// A session's entry in its user's hash: its node, then each user
/// destination it listens to on a line of its own (a name holds no control
/// character).
pub(super) fn user_entry(record: &SessionRecord) -> String {
    let mut entry = record.node.clone();
    for name in &record.destinations {
        entry.push('\n');
        entry.push_str(name);
    }
    entry
}

/// The node and destinations of a user-hash entry.
pub(super) fn parse_user_entry(entry: &str) -> (&str, Vec<String>) {
    let mut lines = entry.split('\n');
    let node = lines.next().unwrap_or_default();
    (node, lines.map(str::to_owned).collect())
}

/// The node of a user-hash entry, without reading its destinations.
pub(super) fn node_of_user_entry(entry: &str) -> &str {
    entry.split_once('\n').map_or(entry, |(node, _)| node)
}

/// The connect time and user of a node-list entry.
pub(super) fn parse_node_entry(entry: &str) -> Option<(u64, &str)> {
    let (connected_at, user) = entry.split_once(' ')?;
    Some((connected_at.parse().ok()?, user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::SessionId;

    #[test]
    fn every_key_of_one_user_or_one_node_shares_its_hash_slot() {
        let keys = Keys {
            prefix: Arc::from("stomp:"),
        };
        let slot = |key: String| redis::cluster_routing::Slot::for_key(key);
        assert_eq!(slot(keys.user("alice")), slot("{alice}".to_owned()));
        assert_eq!(slot(keys.node("n1")), slot(keys.node_sessions("n1")));
        assert_eq!(keys.user("alice"), "stomp:user:{alice}");
    }

    #[test]
    fn a_user_entry_holds_the_node_and_any_destination_names() {
        let record = SessionRecord {
            session: SessionId::new_v4(),
            user: "alice".into(),
            node: "relay-1.example".into(),
            connected_at: 1,
            destinations: vec!["a b".into(), "x.#/*".into(), "ünï".into()],
        };
        let entry = user_entry(&record);
        assert_eq!(
            parse_user_entry(&entry),
            ("relay-1.example", record.destinations.clone())
        );
        assert_eq!(parse_user_entry("n1"), ("n1", Vec::new()));
        assert_eq!(node_of_user_entry(&entry), "relay-1.example");
        assert_eq!(node_of_user_entry("n1"), "n1");
    }

    #[test]
    fn a_node_list_entry_keeps_a_user_name_with_spaces() {
        assert_eq!(
            parse_node_entry("1733222400000 Ada Lovelace"),
            Some((1_733_222_400_000, "Ada Lovelace"))
        );
        assert_eq!(parse_node_entry("garbage"), None);
    }
}
