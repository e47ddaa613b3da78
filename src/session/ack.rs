//! ACK and NACK: which deliveries a client's answer settles, and what that
//! asks of the broker and of the store of kept messages.

use stomp_parser::Frame;

use super::headers::ack_id;
use super::subscriptions::Pending;
use super::{Command, Session, SessionError};
use crate::broker::Settlement;

impl Session {
    pub(super) fn settle(
        &mut self,
        frame: &Frame,
        settlement: Settlement,
    ) -> Result<(), SessionError> {
        let id = ack_id(frame, self.version())?;
        let settled = self
            .subscriptions
            .settle(id)
            .ok_or_else(|| SessionError::UnknownAck(id.to_owned()))?;
        let (mut tags, mut kept) = (Vec::new(), Vec::new());
        for pending in settled {
            match pending {
                Pending::Broker(tag) => tags.push(tag),
                Pending::Offline(id) => kept.push(id),
                Pending::Replayed => {}
                Pending::BrokerAndOffline(tag, id) => {
                    tags.push(tag);
                    // Given back, it comes again, to be shown again.
                    if settlement == Settlement::Nack {
                        self.recent_offline.forget(&id);
                    }
                    kept.push(id);
                }
            }
        }
        if !tags.is_empty() {
            self.give(Command::Settle { tags, settlement });
        }
        // A NACKed kept message stays kept, to be delivered next time; a
        // discarded one is forgotten.
        if settlement != Settlement::Nack
            && !kept.is_empty()
            && let Some(user) = self.user()
        {
            let user = user.to_owned();
            self.give(Command::ForgetOffline { user, ids: kept });
        }
        Ok(())
    }
}
