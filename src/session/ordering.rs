//! Command numbers, and what waits for them.
//!
//! STOMP promises that a RECEIPT comes after everything its frame, and every
//! frame before it, asked for; CONNECTED after the session is attached and
//! registered; an ERROR for a bad frame after the work of the frames before
//! it. The session numbers each command it gives, in order, and holds such
//! a frame behind a mark: it goes out once no command numbered below the
//! mark is still in flight, however the results come back.

use stomp_parser::Frame;

use super::{
    Command, CommandId, Connected, Event, Outbound, Output, Rejection, Session, SessionError,
    State, StompCommand, pop_front_releasing,
};

/// What waits for the commands given before it.
pub enum Waiting {
    Frame(Frame),
    /// The CONNECTED frame, and the session it opens.
    Connected(Connected, Frame),
    Close(Option<Rejection>),
}

impl Session {
    /// Takes the result of command `id`.
    pub fn complete(&mut self, id: CommandId, event: Event) {
        let Some(receipt) = self.in_flight.remove(&id) else {
            return;
        };
        if matches!(self.state, State::Closed) {
            return;
        }
        match event {
            Event::Done(Ok(())) => {}
            Event::Done(Err(mut rejection)) => {
                if rejection.receipt_id.is_none() {
                    rejection.receipt_id = receipt.map(|receipt| receipt.to_string());
                }
                return self.close_now(Some(rejection));
            }
            Event::Authenticated(Ok(_))
                if let State::Connecting {
                    denied_host: Some(host),
                    ..
                } = &self.state =>
            {
                let denied = SessionError::VirtualHostDenied(host.clone());
                return self.close_now(Some(denied.into()));
            }
            Event::Authenticated(Ok(identity)) => self.connect_as(identity),
            Event::Authenticated(Err(error)) => {
                return self.close_now(Some(SessionError::Auth(error).into()));
            }
            Event::Offline(kept) => {
                if let Some(subscription) = self.reading_offline.remove(&id) {
                    self.deliver_offline(&subscription, kept);
                }
            }
            Event::History(replay) => {
                if let Some(subscription) = self.replays.reading.remove(&id) {
                    self.deliver_replay(&subscription, replay);
                }
            }
        }
        self.release_held();
    }

    /// Gives an ordered command to the driver, numbered.
    pub(super) fn give(&mut self, command: Command) -> CommandId {
        match command {
            Command::Attach => self.attached = true,
            Command::Register { .. } => self.registered = true,
            _ => {}
        }
        let id = self.number();
        self.output.push_back(Output::Command(id, command));
        id
    }

    /// Gives a SEND to the driver, numbered among the ordered commands.
    pub(super) fn give_send(&mut self, send: Outbound) {
        let id = self.number();
        self.output.push_back(Output::Send(id, send));
    }

    /// The number of what is given now, in flight from now on.
    fn number(&mut self) -> CommandId {
        let id = self.next_command;
        self.next_command += 1;
        self.in_flight.insert(id, self.current_receipt.clone());
        id
    }

    pub(super) fn hold_receipt(&mut self, receipt: &str) {
        let frame = Frame::new(StompCommand::Receipt).header("receipt-id", receipt);
        self.hold(Waiting::Frame(frame));
    }

    /// Holds what must wait for every command given so far.
    pub(super) fn hold(&mut self, held: Waiting) {
        self.held.push_back((self.next_command, held));
        self.release_held();
    }

    fn release_held(&mut self) {
        while let Some((mark, _)) = self.held.front() {
            let oldest_in_flight = self.in_flight.keys().next();
            if oldest_in_flight.is_some_and(|oldest| oldest < mark) {
                return;
            }
            let Some((_, held)) = pop_front_releasing(&mut self.held) else {
                return;
            };
            match held {
                Waiting::Frame(frame) => self.output.push_back(Output::Frame(frame)),
                Waiting::Connected(connected, frame) => {
                    self.state = State::Connected(connected);
                    self.output.push_back(Output::Frame(frame));
                }
                Waiting::Close(rejection) => return self.close_now(rejection),
            }
        }
    }
}
