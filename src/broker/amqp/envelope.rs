//! One AMQP message that carries many deliveries to the sessions of one
//! node: what dispatch has ready for that node at once goes to RabbitMQ as
//! one publish with one confirm, and the node unpacks it.
//!
//! An envelope's body is a sequence of STOMP 1.2 MESSAGE frames, one per
//! message it carries, read and written by the relay's own frame parser:
//! each frame's first header names the user destination
//! (`stomp-destination`), its second the sessions it is for
//! (`stomp-sessions`, their ids separated by `,`), its last is
//! `content-length`, and the headers between are the message's own, as
//! AMQP properties would have carried them (so that a session sees the
//! same headers whichever way a message came). It is published to the
//! node's key on `stomp.users` ([`SessionKey::envelope_key`]), with the
//! content type [`CONTENT_TYPE`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use stomp_parser::{Command, Frame, Headers, Limits, Parsed, Version, encode_frame, parse_frame};

use super::properties;
use crate::broker::{Message, SessionId};

/// The content type of an envelope.
pub const CONTENT_TYPE: &str = "application/vnd.stomp-relay.envelope";

const DESTINATION: &str = "stomp-destination";
const SESSIONS: &str = "stomp-sessions";
const CONTENT_LENGTH: &str = "content-length";

/// An envelope being filled.
#[derive(Debug, Default)]
pub struct Envelope {
    body: BytesMut,
    deliveries: usize,
}

/// One message an envelope carries, with whom it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enclosed {
    /// The user destination.
    pub name: String,
    pub sessions: Vec<SessionId>,
    pub message: Arc<Message>,
}

/// Why an envelope could not be read: it was not written by a relay.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("an envelope's frame cannot be read: {0}")]
    Frame(#[from] stomp_parser::ParseError),
    #[error("an envelope ends in the middle of a frame")]
    Truncated,
    #[error("an envelope's frame does not say {0}")]
    Missing(&'static str),
    #[error("an envelope names a session id {0:?} that is not one")]
    Session(String),
}

impl Envelope {
    /// Adds `message` for the user destination `name` of each of
    /// `sessions`. A message whose headers STOMP 1.2 cannot carry is
    /// refused (messages are checked for that where they enter).
    pub fn add(
        &mut self,
        name: &str,
        sessions: &[SessionId],
        message: &Message,
    ) -> Result<(), stomp_parser::EncodeError> {
        let carried = properties::as_carried(&message.headers);
        let mut headers = Headers::with_capacity(carried.len() + 3, carried.text_len() + 64);
        headers.push(DESTINATION, name);
        let ids: Vec<String> = sessions.iter().map(SessionId::to_string).collect();
        headers.push(SESSIONS, &ids.join(","));
        for (header, value) in carried.iter() {
            headers.push(header, value);
        }
        headers.push(CONTENT_LENGTH, &message.body.len().to_string());
        let frame = Frame {
            command: Command::Message,
            headers,
            body: message.body.clone(),
        };
        encode_frame(&frame, Version::V1_2, &mut self.body)?;
        self.deliveries += sessions.len();
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Deliveries added so far.
    pub fn deliveries(&self) -> usize {
        self.deliveries
    }

    /// The AMQP message to publish.
    pub fn seal(self) -> Message {
        let mut headers = Headers::new();
        headers.push("content-type", CONTENT_TYPE);
        Message {
            headers,
            body: self.body.freeze(),
        }
    }
}

/// The messages an envelope's body carries, in the order they were added.
pub fn open(body: &Bytes) -> Result<Vec<Enclosed>, EnvelopeError> {
    let mut enclosed = Vec::new();
    let mut rest = body.clone();
    while !rest.is_empty() {
        match parse_frame(&rest, Version::V1_2, &Limits::UNLIMITED)? {
            Parsed::Frame { frame, len } => {
                let _ = rest.split_to(len);
                enclosed.push(unpack(frame)?);
            }
            // Nothing a relay writes, but harmless.
            Parsed::HeartBeat { len } => {
                let _ = rest.split_to(len);
            }
            Parsed::Incomplete => return Err(EnvelopeError::Truncated),
        }
    }
    Ok(enclosed)
}

/// The message of one frame, and whom it is for.
fn unpack(frame: Frame) -> Result<Enclosed, EnvelopeError> {
    let count = frame.headers.len();
    let mut headers = frame.headers.iter();
    let (Some((DESTINATION, name)), Some((SESSIONS, ids))) = (headers.next(), headers.next())
    else {
        return Err(EnvelopeError::Missing("whom it is for"));
    };
    let sessions = ids
        .split(',')
        .map(|id| SessionId::try_parse(id).map_err(|_| EnvelopeError::Session(id.to_owned())))
        .collect::<Result<Vec<_>, _>>()?;
    // The last header is the frame's content-length, not the message's.
    let own = headers.take(count.saturating_sub(3));
    let mut message_headers = Headers::with_capacity(count.saturating_sub(3), 0);
    for (header, value) in own {
        message_headers.push(header, value);
    }
    Ok(Enclosed {
        name: name.to_owned(),
        sessions,
        message: Arc::new(Message {
            headers: message_headers,
            body: frame.body,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &[(&str, &str)], body: &[u8]) -> Message {
        Message {
            headers: headers.iter().copied().collect(),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn what_goes_in_comes_out_for_the_same_sessions() {
        let (one, two) = (SessionId::new_v4(), SessionId::new_v4());
        let first = message(
            &[
                ("content-type", "application/json"),
                ("x-odd", "a:b\nc"),
                // A message may carry headers named as the envelope's own.
                ("stomp-destination", "theirs"),
            ],
            b"{\"binary\":\"\0\"}",
        );
        let second = message(&[], b"");
        let mut envelope = Envelope::default();
        envelope.add("a.#*/ü x:y", &[one, two], &first).unwrap();
        envelope.add("inbox", &[two], &second).unwrap();
        assert_eq!(envelope.deliveries(), 3);
        let sealed = envelope.seal();
        assert_eq!(sealed.headers.get("content-type"), Some(CONTENT_TYPE));

        let opened = open(&sealed.body).unwrap();
        assert_eq!(opened.len(), 2);
        assert_eq!(opened[0].name, "a.#*/ü x:y");
        assert_eq!(opened[0].sessions, [one, two]);
        assert_eq!(
            opened[0].message.headers,
            properties::as_carried(&first.headers)
        );
        assert_eq!(opened[0].message.headers.get("x-odd"), Some("a:b\nc"));
        assert_eq!(
            opened[0].message.headers.get("stomp-destination"),
            Some("theirs")
        );
        assert_eq!(opened[0].message.body, first.body);
        assert_eq!(opened[1].name, "inbox");
        assert_eq!(opened[1].sessions, [two]);
        assert_eq!(*opened[1].message, second);
    }

    #[test]
    fn a_message_shows_the_headers_it_would_have_had_on_its_own() {
        let mut envelope = Envelope::default();
        let sent = message(
            &[("persistent", "false"), ("priority", "high"), ("x", "1")],
            b"",
        );
        envelope.add("n", &[SessionId::new_v4()], &sent).unwrap();
        let opened = open(&envelope.seal().body).unwrap();
        let alone = properties::from_amqp(&properties::to_amqp(&sent.headers), Vec::new());
        assert_eq!(opened[0].message.headers, alone.headers);
    }

    #[test]
    fn a_body_not_written_by_a_relay_is_refused() {
        for body in [
            &b"MESSAGE\n\nno sessions\0"[..],
            b"MESSAGE\nstomp-destination:n\nstomp-sessions:bob\ncontent-length:0\n\n\0",
            b"MESSAGE\nstomp-destination:n\n",
            b"garbage",
        ] {
            assert!(open(&Bytes::copy_from_slice(body)).is_err(), "{body:?}");
        }
        assert!(open(&Bytes::new()).unwrap().is_empty());
    }
}
