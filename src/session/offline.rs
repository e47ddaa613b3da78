//! Messages kept for the user while it was offline, as a session delivers
//! them: read from the store on SUBSCRIBE to a user destination and again
//! after the broker was away, delivered oldest first, and each delivered
//! once. A message sent with `persist` is kept before it is sent, and
//! reaches a session twice when the session reads the store while the live
//! copy is on its way: [`RecentOffline`] drops the second.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use super::subscriptions::Pending;
use super::{Command, Output, Rejection, Session, State};
use crate::broker::destination::Destination;
use crate::dispatch::offline::OfflineMessage;

/// Kept-message ids a session remembers, at most.
const REMEMBERED: usize = 1024;

/// The ids of the kept messages a session delivered lately, so that the
/// live copy and the stored copy of one message are not both shown.
#[derive(Debug, Default)]
pub struct RecentOffline {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentOffline {
    /// True the first time `id` is seen (and remembers it); false after.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }

    /// Forgets `id`, so that it is delivered again (a NACKed message that
    /// comes back).
    pub fn forget(&mut self, id: &str) {
        if self.ids.remove(id) {
            self.order.retain(|kept| kept != id);
        }
    }
}

impl Session {
    /// Reads again what is kept for the user at each of its user
    /// destinations; what was delivered already is not shown again.
    pub fn read_offline_again(&mut self) {
        if !matches!(self.state, State::Connected(_)) {
            return;
        }
        let Some(user) = self.user().map(str::to_owned) else {
            return;
        };
        let reads: Vec<(Arc<str>, String)> = self
            .subscriptions
            .specs()
            .filter_map(|spec| match &spec.destination {
                Destination::OwnUser { name } => Some((spec.id.clone(), name.clone())),
                _ => None,
            })
            .collect();
        for (subscription, name) in reads {
            let user = user.clone();
            let id = self.give(Command::ReadOffline { user, name });
            self.reading_offline.insert(id, subscription);
        }
    }

    /// The messages kept for this user while it was offline, as MESSAGEs of
    /// subscription `id`, oldest first. With `ack:auto` the store forgets
    /// them now; otherwise when acked. A store that cannot answer costs the
    /// subscription nothing: the messages stay kept for the next time.
    pub(super) fn deliver_offline(
        &mut self,
        id: &Arc<str>,
        kept: Result<Vec<OfflineMessage>, Rejection>,
    ) {
        let had_by_replay = self.replays.take_had(id);
        let kept = match kept {
            Ok(kept) => kept,
            Err(rejection) => {
                tracing::warn!(session = %self.id, error = %rejection.error, "cannot read messages kept for the user");
                return;
            }
        };
        let (Some(subscription), Some(user)) = (self.subscriptions.get(id), self.user()) else {
            return;
        };
        if kept.is_empty() {
            return;
        }
        let user = user.to_owned();
        let needs_ack = subscription.ack.needs_ack();
        let destination = subscription.destination_text.clone();
        let mut delivered = Vec::with_capacity(kept.len());
        let mut had = Vec::new();
        for OfflineMessage {
            id: offline_id,
            message,
            shown,
        } in kept
        {
            // Delivered live already (it was kept before it was sent).
            if !self.recent_offline.first_time(&offline_id) {
                continue;
            }
            // Replayed from the history, or had before the replay's start:
            // not shown again, and forgotten, but for a client-acked
            // subscription (whose replayed copy's ACK does not reach the
            // store), where it stays kept until a session has it ACKed.
            if had_by_replay.has(&message) {
                if !needs_ack {
                    had.push(offline_id);
                }
                continue;
            }
            let pending = needs_ack.then(|| Pending::Offline(offline_id.clone()));
            let frame = self.message_frame(
                id,
                &destination,
                &message,
                Some(&offline_id),
                pending,
                shown,
            );
            delivered.push(offline_id);
            self.output.push_back(Output::Frame(frame));
        }
        // A client-acked one is forgotten when acked.
        let mut forget = had;
        if !needs_ack {
            forget.extend(delivered);
        }
        if !forget.is_empty() {
            self.give(Command::ForgetOffline { user, ids: forget });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_until_forgotten_or_pushed_out() {
        let mut recent = RecentOffline::default();
        assert!(recent.first_time("a"));
        assert!(!recent.first_time("a"));
        recent.forget("a");
        assert!(recent.first_time("a"));
        for n in 0..REMEMBERED {
            assert!(recent.first_time(&n.to_string()));
        }
        assert!(recent.first_time("a"), "the oldest was pushed out");
    }
}
