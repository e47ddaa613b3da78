//! The frame model: a command, ordered headers, a body.

use std::fmt;

use bytes::Bytes;

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

/// The headers of a frame, in wire order, repeated names kept.
///
/// STOMP says that when a header is repeated only the first occurrence counts,
/// but a relay must still forward what it received, so nothing is merged.
///
/// All names and values live in one string, each header being two spans of
/// it: parsing a frame's headers costs one copy of the header block and two
/// allocations, whatever their number, which is most of what makes a small
/// frame cheap to parse.
#[derive(Clone, Default)]
pub struct Headers {
    text: String,
    entries: Vec<Entry>,
}

/// Where one header's name and value lie in [`Headers::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    name: (usize, usize),
    value: (usize, usize),
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Room for `count` headers of `text_len` bytes in all.
    pub fn with_capacity(count: usize, text_len: usize) -> Headers {
        Headers {
            text: String::with_capacity(text_len),
            entries: Vec::with_capacity(count),
        }
    }

    fn span(&self, (start, end): (usize, usize)) -> &str {
        &self.text[start..end]
    }

    /// Appends `text` to the shared string, returning its span.
    fn append(&mut self, text: &str) -> (usize, usize) {
        let start = self.text.len();
        self.text.push_str(text);
        (start, self.text.len())
    }

    /// The value of the first header with this name, as the spec requires.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    /// Every value given for this name, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The first header with this name read as a boolean, as RabbitMQ's
    /// STOMP plugin reads one: `true` and `false`, and `True` and `False`
    /// (Python clients write those); anything else, or no header, is
    /// `None`.
    pub fn boolean(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            "true" | "True" => Some(true),
            "false" | "False" => Some(false),
            _ => None,
        }
    }

    /// Appends a header after the existing ones (so an earlier one of the same
    /// name still wins).
    pub fn push(&mut self, name: &str, value: &str) {
        let name = self.append(name);
        let value = self.append(value);
        self.entries.push(Entry { name, value });
    }

    /// Replaces every header of this name with a single one, placed where the
    /// first one was (or at the end). Used when the relay must own a header,
    /// such as the sender it stamps on a message.
    pub fn set(&mut self, name: &str, value: &str) {
        let Some(first) = self.iter().position(|(n, _)| n == name) else {
            self.push(name, value);
            return;
        };
        let value = self.append(value);
        self.entries[first].value = value;
        let mut index = 0;
        let text = &self.text;
        self.entries.retain(|entry| {
            let keep = index <= first || &text[entry.name.0..entry.name.1] != name;
            index += 1;
            keep
        });
    }

    /// Removes every header of this name, returning how many there were.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        let text = &self.text;
        self.entries
            .retain(|entry| &text[entry.name.0..entry.name.1] != name);
        before - self.entries.len()
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries
            .iter()
            .map(|entry| (self.span(entry.name), self.span(entry.value)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of header text held, for sizing buffers.
    pub fn text_len(&self) -> usize {
        self.iter()
            .map(|(name, value)| name.len() + value.len())
            .sum()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::hash::Hash for Headers {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for pair in self.iter() {
            pair.hash(state);
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.push(name.as_ref(), value.as_ref());
        }
        headers
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
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Frame {
        self.headers.push(name, value.as_ref());
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

    /// The first header with this name as a boolean ([`Headers::boolean`]).
    pub fn boolean(&self, name: &str) -> Option<bool> {
        self.headers.boolean(name)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_boolean_header_is_read_as_rabbitmq_reads_it() {
        let frame = Frame::new(Command::Nack)
            .header("a", "true")
            .header("b", "False")
            .header("c", "TRUE")
            .header("d", "1");
        assert_eq!(frame.boolean("a"), Some(true));
        assert_eq!(frame.boolean("b"), Some(false));
        assert_eq!(frame.boolean("c"), None);
        assert_eq!(frame.boolean("d"), None);
        assert_eq!(frame.boolean("missing"), None);
    }

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
        let pairs: Vec<_> = headers.iter().collect();
        assert_eq!(pairs, [("a", "1"), ("user", "alice"), ("b", "2")]);
        headers.set("new", "v");
        assert_eq!(headers.get("new"), Some("v"));
        assert_eq!(headers.remove("user"), 1);
        assert_eq!(headers.len(), 3);
        let same: Headers = [("a", "1"), ("b", "2"), ("new", "v")].into_iter().collect();
        assert_eq!(headers, same);
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
