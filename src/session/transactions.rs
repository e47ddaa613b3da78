//! BEGIN, COMMIT, ABORT: frames held until their transaction ends.

use std::collections::HashMap;

use stomp_parser::Frame;

use super::{SessionError, StompCommand};

/// The open transactions of a session and the SEND, ACK and NACK frames
/// each holds, in arrival order.
#[derive(Debug, Default)]
pub struct Transactions {
    open: HashMap<String, Vec<Frame>>,
}

impl Transactions {
    pub fn begin(&mut self, id: &str, max_open: usize) -> Result<(), SessionError> {
        if self.open.contains_key(id) {
            return Err(SessionError::DuplicateTransaction(id.to_owned()));
        }
        if self.open.len() >= max_open {
            return Err(SessionError::TooManyTransactions(max_open));
        }
        self.open.insert(id.to_owned(), Vec::new());
        Ok(())
    }

    /// Holds a frame until COMMIT.
    pub fn hold(&mut self, id: &str, frame: Frame, max_frames: usize) -> Result<(), SessionError> {
        let held = self
            .open
            .get_mut(id)
            .ok_or_else(|| SessionError::UnknownTransaction(id.to_owned()))?;
        if held.len() >= max_frames {
            return Err(SessionError::TransactionTooLarge(max_frames));
        }
        held.push(frame);
        Ok(())
    }

    /// Ends a transaction, giving back what it held (to run on COMMIT, to
    /// drop on ABORT).
    pub fn end(&mut self, id: &str) -> Result<Vec<Frame>, SessionError> {
        self.open
            .remove(id)
            .ok_or_else(|| SessionError::UnknownTransaction(id.to_owned()))
    }
}

/// True for a frame that a transaction holds until it ends.
pub fn held_in_transaction(frame: &Frame) -> bool {
    matches!(
        frame.command,
        StompCommand::Send | StompCommand::Ack | StompCommand::Nack
    ) && frame.get("transaction").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stomp_parser::Command;

    #[test]
    fn frames_are_held_in_order_until_the_end() {
        let mut transactions = Transactions::default();
        transactions.begin("tx", 4).unwrap();
        for n in 0..3 {
            let frame = Frame::new(Command::Send).header("n", n.to_string());
            transactions.hold("tx", frame, 10).unwrap();
        }
        let held = transactions.end("tx").unwrap();
        let order: Vec<_> = held
            .iter()
            .map(|f| f.get("n").unwrap().to_owned())
            .collect();
        assert_eq!(order, ["0", "1", "2"]);
        assert!(transactions.end("tx").is_err());
    }

    #[test]
    fn misuse_is_refused() {
        let mut transactions = Transactions::default();
        transactions.begin("tx", 1).unwrap();
        assert!(matches!(
            transactions.begin("tx", 1),
            Err(SessionError::DuplicateTransaction(id)) if id == "tx"
        ));
        assert!(matches!(
            transactions.begin("other", 1),
            Err(SessionError::TooManyTransactions(1))
        ));
        assert!(
            transactions
                .hold("nope", Frame::new(Command::Send), 1)
                .is_err()
        );
        transactions
            .hold("tx", Frame::new(Command::Send), 1)
            .unwrap();
        assert!(matches!(
            transactions.hold("tx", Frame::new(Command::Send), 1),
            Err(SessionError::TransactionTooLarge(1))
        ));
    }
}
