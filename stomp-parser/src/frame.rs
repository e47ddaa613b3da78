//! The frame model: a command, ordered headers, a body.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

/// Every command of STOMP 1.0, 1.1 and 1.2, client frames and server frames.
///
/// The parser accepts both directions, so the same crate serves the relay and
/// the test clients that talk to it; the session decides which are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    // Client frames.
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    // Server frames.
    Connected,
    Message,
    Receipt,
    Error,
}

impl Command {
    /// Every command, in the order above.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The longest command name on the wire (`UNSUBSCRIBE`), which bounds how
    /// far the parser looks for the end of a command line.
    pub const MAX_LEN: usize = 11;

    /// The command as it is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Reads a command name; STOMP commands are case-sensitive.
    pub fn from_bytes(name: &[u8]) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|command| command.as_str().as_bytes() == name)
    }

    /// True for the frames a client sends.
    pub fn is_client_command(self) -> bool {
        !matches!(
            self,
            Command::Connected | Command::Message | Command::Receipt | Command::Error
        )
    }

    /// CONNECT, STOMP and CONNECTED never escape their headers, in any version,
    /// so that a 1.0 peer can read them before a version is agreed.
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header, decoded: escapes already resolved, so `name` and `value` are
/// what the sender meant. Both share the received buffer when no escape had to
/// be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub name: ByteString,
    pub value: ByteString,
}

impl Header {
    pub fn new(name: impl Into<ByteString>, value: impl Into<ByteString>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The headers of a frame, in wire order, repeated names kept.
///
/// STOMP says that when a header is repeated only the first occurrence counts,
/// but a relay must still forward what it received, so nothing is merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    pub fn with_capacity(capacity: usize) -> Headers {
        Headers(Vec::with_capacity(capacity))
    }

    /// The value of the first header with this name, as the spec requires.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| &*header.name == name)
            .map(|header| &*header.value)
    }

    /// Every value given for this name, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |header| &*header.name == name)
            .map(|header| &*header.value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a header after the existing ones (so an earlier one of the same
    /// name still wins).
    pub fn push(&mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) {
        self.0.push(Header::new(name, value));
    }

    /// Replaces every header of this name with a single one, placed where the
    /// first one was (or at the end). Used when the relay must own a header,
    /// such as the sender it stamps on a message.
    pub fn set(&mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) {
        let header = Header::new(name, value);
        match self.0.iter().position(|h| h.name == header.name) {
            Some(first) => {
                let name = header.name.clone();
                self.0[first] = header;
                let mut index = 0;
                self.0.retain(|h| {
                    let keep = index <= first || h.name != name;
                    index += 1;
                    keep
                });
            }
            None => self.0.push(header),
        }
    }

    /// Removes every header of this name, returning how many there were.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.0.len();
        self.0.retain(|header| &*header.name != name);
        before - self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Vec<Header>> for Headers {
    fn from(headers: Vec<Header>) -> Headers {
        Headers(headers)
    }
}

impl<N: Into<ByteString>, V: Into<ByteString>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Headers {
        Headers(
            iter.into_iter()
                .map(|(name, value)| Header::new(name, value))
                .collect(),
        )
    }
}

/// A STOMP frame: what one peer says to the other.
///
/// The body is a [`Bytes`] handle, so a frame can be cloned to many
/// subscribers without copying the payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    pub command: Command,
    pub headers: Headers,
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header, builder style.
    pub fn header(mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) -> Frame {
        self.headers.push(name, value);
        self
    }

    /// Sets the body, builder style.
    pub fn body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The value of the first header with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_returns_the_first_of_repeated_headers() {
        let frame = Frame::new(Command::Message)
            .header("foo", "World")
            .header("foo", "Hello");
        assert_eq!(frame.get("foo"), Some("World"));
        assert_eq!(
            frame.headers.get_all("foo").collect::<Vec<_>>(),
            ["World", "Hello"]
        );
        assert_eq!(frame.get("bar"), None);
    }

    #[test]
    fn set_replaces_every_occurrence_in_place_of_the_first() {
        let mut headers: Headers = [("a", "1"), ("user", "x"), ("b", "2"), ("user", "y")]
            .into_iter()
            .collect();
        headers.set("user", "alice");
        let pairs: Vec<_> = headers.iter().map(|h| (&*h.name, &*h.value)).collect();
        assert_eq!(pairs, [("a", "1"), ("user", "alice"), ("b", "2")]);
        headers.set("new", "v");
        assert_eq!(headers.get("new"), Some("v"));
        assert_eq!(headers.remove("user"), 1);
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn commands_round_trip_through_their_wire_names() {
        for command in Command::ALL {
            assert_eq!(
                Command::from_bytes(command.as_str().as_bytes()),
                Some(command)
            );
            assert!(command.as_str().len() <= Command::MAX_LEN);
        }
        assert_eq!(Command::from_bytes(b"send"), None);
        assert!(Command::Send.is_client_command());
        assert!(!Command::Message.is_client_command());
    }
}
