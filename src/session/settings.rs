//! What a session core runs with: its share of the node's configuration
//! and the node's ACL. Built once per node and shared by its sessions.

use std::sync::Arc;

use super::connect::HeartBeatBounds;
use crate::auth::acl::Acl;
use crate::history::HistoryTopics;

/// The limits and choices of a STOMP session, from the configuration.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// What the relay allows of the heart-beats clients ask for.
    pub heart_beat: HeartBeatBounds,
    pub max_subscriptions: usize,
    /// Messages a session may hold delivered and unacknowledged.
    pub max_unacked: usize,
    /// Open transactions per session, and frames held by each.
    pub max_transactions: usize,
    pub max_transaction_frames: usize,
    /// A new login of a user ends the user's older sessions
    /// (`--second-login replace`).
    pub replace_older_logins: bool,
    /// The one virtual host a CONNECT may name (`--virtual-host`).
    pub virtual_host: String,
    /// With the node's histories: a SUBSCRIBE to a user destination, or to
    /// one of these topics, may ask for what it missed (`x-stream-offset`).
    pub replay: Option<HistoryTopics>,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            heart_beat: HeartBeatBounds::default(),
            max_subscriptions: 256,
            max_unacked: 1000,
            max_transactions: 16,
            max_transaction_frames: 1024,
            replace_older_logins: false,
            virtual_host: "/".to_owned(),
            replay: Some(HistoryTopics::default()),
        }
    }
}

/// Everything a session core consults besides its own state: the settings,
/// where clients may go, and the node it runs on. There is no default: a
/// node states its ACL.
#[derive(Debug)]
pub struct SessionContext {
    pub settings: SessionSettings,
    pub acl: Acl,
    /// The node's id, which its sessions' keys (temp queues' reply
    /// addresses) name.
    pub node: String,
}

impl SessionContext {
    pub fn new(settings: SessionSettings, acl: Acl, node: String) -> Arc<SessionContext> {
        Arc::new(SessionContext {
            settings,
            acl,
            node,
        })
    }
}
