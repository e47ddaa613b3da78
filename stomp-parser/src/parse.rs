//! The STOMP grammar as small `nom` parsers, and the streaming decoder.
//!
//! ```text
//! frame      = command EOL *( header EOL ) EOL body NUL
//! heart-beat = EOL | NUL                (between frames; a stray NUL is
//!                                        skipped, as RabbitMQ skips it)
//! EOL        = [CR] LF
//! header     = name ":" value           (split at the first ':')
//! body       = content-length octets    (may contain NUL)
//!            | *<any octet but NUL>     (without content-length)
//! ```
//!
//! [`scan`] walks the bytes with the grammar: it decodes the command and
//! headers (escapes resolved, UTF-8 checked) and finds where the body lies;
//! it is where "not enough bytes yet" and every limit are decided. The body
//! is then taken as a slice of the input, never copied, which lets
//! [`FrameDecoder`] detach a complete frame from its growing receive buffer
//! with an O(1) `split_to().freeze()`.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use memchr::memchr;
use nom::bytes::complete::{tag, take_till1};
use nom::character::complete::u64 as decimal_u64;
use nom::combinator::{all_consuming, rest};
use nom::sequence::separated_pair;
use nom::{IResult, Needed, Offset, Parser};

use crate::error::ParseError;
use crate::escape::Escaping;
use crate::frame::{Command, Frame, Headers};
use crate::limits::Limits;
use crate::version::Version;

/// What [`parse_frame`] found at the start of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame, and how many input bytes it used.
    Frame { frame: Frame, len: usize },
    /// An end-of-line (a heart-beat) or a stray NUL between frames, and its
    /// length (1 or 2).
    HeartBeat { len: usize },
    /// The input is the beginning of a frame; more bytes are needed.
    Incomplete,
}

/// Parses the frame (or heart-beat) at the start of `input`.
///
/// `version` decides header escaping; it does not change the grammar. The
/// frame's header values and body are slices of `input`.
pub fn parse_frame(input: &Bytes, version: Version, limits: &Limits) -> Result<Parsed, ParseError> {
    Ok(match scan(input, version, limits, 0)? {
        Scan::HeartBeat { len } => Parsed::HeartBeat { len },
        Scan::Incomplete { .. } => Parsed::Incomplete,
        Scan::Frame(found) => Parsed::Frame {
            len: found.len,
            frame: found.into_frame(input),
        },
    })
}

/// One item taken off a connection's byte stream by [`FrameDecoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    HeartBeat,
}

/// Turns a connection's bytes, arriving in chunks of any size, into frames.
///
/// The transport [`push`](FrameDecoder::push)es each received message and
/// calls [`decode`](FrameDecoder::decode) until it answers `None`. When a
/// message holds whole frames (the usual case) their bodies are slices of
/// the message itself; only the unfinished tail of a message is ever copied,
/// to join it with what follows. The decoder remembers how far an unfinished
/// frame has been examined, so a frame that trickles in byte by byte costs
/// linear, not quadratic, time to find its end.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    version: Version,
    limits: Limits,
    buffer: Buffer,
    progress: Progress,
}

/// Bytes received and not yet decoded.
#[derive(Debug, Clone)]
enum Buffer {
    /// A received message (or what is left of it), shared, not copied.
    Received(Bytes),
    /// An unfinished frame joined with the messages that followed it.
    Joined(BytesMut),
}

/// What is known of the unfinished frame at the start of the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The buffer cannot hold a whole frame before it reaches this length.
    min_len: usize,
    /// The body holds no NUL before this offset.
    nul_searched_to: usize,
    /// How far the head has been searched for its end.
    head: HeadSearch,
}

/// A cheap search for the blank line that ends a frame's head, resumed
/// where the previous one stopped. Until it finds it, re-parsing the head
/// on every received chunk is pointless (and would make a head trickling
/// in byte by byte cost quadratic time), unless a limit may have been
/// passed, which the full parse then reports precisely.
#[derive(Debug, Clone, Copy, Default)]
struct HeadSearch {
    /// Bytes before this offset hold no end of head.
    searched_to: usize,
    /// Where the line being searched starts.
    line_start: usize,
    /// Whole lines seen (the command line included).
    lines: usize,
}

impl HeadSearch {
    /// True when `bytes` (a frame's beginning, not a heart-beat) may hold a
    /// whole head or break a limit, so that the full parse must run.
    fn worth_parsing(&mut self, bytes: &[u8], limits: &Limits) -> bool {
        while let Some(lf) = memchr(b'\n', &bytes[self.searched_to..]) {
            let lf = self.searched_to + lf;
            let line = &bytes[self.line_start..lf];
            if self.lines > 0 && (line.is_empty() || line == b"\r") {
                return true;
            }
            self.lines += 1;
            self.line_start = lf + 1;
            self.searched_to = lf + 1;
        }
        self.searched_to = bytes.len();
        let line_limit = if self.lines == 0 {
            Command::MAX_LEN
        } else {
            limits.max_header_line
        };
        // The partial line may end with the CR of its CRLF.
        bytes.len() - self.line_start > line_limit.saturating_add(1)
            || self.lines > limits.max_headers
            || bytes.len() >= limits.max_frame_size
    }
}

impl FrameDecoder {
    /// A decoder for STOMP 1.2 until the session agrees another version.
    pub fn new(limits: Limits) -> FrameDecoder {
        FrameDecoder {
            version: Version::V1_2,
            limits,
            buffer: Buffer::Received(Bytes::new()),
            progress: Progress::default(),
        }
    }

    /// Switches header escaping to the version the session negotiated.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.bytes().len()
    }

    fn bytes(&self) -> &[u8] {
        match &self.buffer {
            Buffer::Received(bytes) => bytes,
            Buffer::Joined(joined) => joined,
        }
    }

    /// Adds received bytes after those not yet decoded.
    pub fn push(&mut self, chunk: Bytes) {
        match &mut self.buffer {
            Buffer::Received(rest) if rest.is_empty() => self.buffer = Buffer::Received(chunk),
            Buffer::Received(rest) => {
                let mut joined = BytesMut::with_capacity(rest.len() + chunk.len());
                joined.extend_from_slice(rest);
                joined.extend_from_slice(&chunk);
                self.buffer = Buffer::Joined(joined);
            }
            Buffer::Joined(joined) => joined.extend_from_slice(&chunk),
        }
    }

    /// Takes the next frame or heart-beat off the received bytes, or answers
    /// `None` when they hold only part of one. After an error the stream is
    /// beyond repair: the connection should report it and close.
    pub fn decode(&mut self) -> Result<Option<Decoded>, ParseError> {
        let bytes = match &self.buffer {
            Buffer::Received(bytes) => &bytes[..],
            Buffer::Joined(joined) => &joined[..],
        };
        if bytes.is_empty() || bytes.len() < self.progress.min_len {
            return Ok(None);
        }
        let at_heart_beat = matches!(bytes[0], b'\n' | b'\r' | 0);
        if !at_heart_beat && !self.progress.head.worth_parsing(bytes, &self.limits) {
            return Ok(None);
        }
        let scanned = scan(
            bytes,
            self.version,
            &self.limits,
            self.progress.nul_searched_to,
        )?;
        let (len, found) = match scanned {
            Scan::Incomplete {
                min_len,
                nul_searched_to,
            } => {
                self.progress.min_len = min_len;
                self.progress.nul_searched_to = nul_searched_to;
                return Ok(None);
            }
            Scan::HeartBeat { len } => (len, None),
            Scan::Frame(found) => (found.len, Some(found)),
        };
        self.progress = Progress::default();
        let taken = match &mut self.buffer {
            Buffer::Received(rest) => rest.split_to(len),
            Buffer::Joined(joined) => joined.split_to(len).freeze(),
        };
        if let Buffer::Joined(joined) = &self.buffer
            && joined.is_empty()
        {
            // Back to sharing received messages instead of copying them.
            self.buffer = Buffer::Received(Bytes::new());
        }
        Ok(Some(match found {
            Some(found) => Decoded::Frame(found.into_frame(&taken)),
            None => Decoded::HeartBeat,
        }))
    }
}

/// A whole frame found by [`scan`]: its decoded head, and where its body lies.
#[derive(Debug)]
struct Found {
    command: Command,
    headers: Headers,
    body: Range<usize>,
    len: usize,
}

impl Found {
    /// The frame, its body a slice of `source` (the bytes that were scanned).
    fn into_frame(self, source: &Bytes) -> Frame {
        Frame {
            command: self.command,
            headers: self.headers,
            body: source.slice(self.body),
        }
    }
}

/// The outcome of [`scan`].
#[derive(Debug)]
enum Scan {
    Frame(Found),
    HeartBeat {
        len: usize,
    },
    Incomplete {
        /// The least total input length that could hold the frame.
        min_len: usize,
        /// How far the body has been searched for its NUL without finding it.
        nul_searched_to: usize,
    },
}

/// Finds the frame or heart-beat at the start of `input`. `nul_searched_to`
/// says how much of a content-length-less body an earlier call has already
/// searched for its terminating NUL.
fn scan(
    input: &[u8],
    version: Version,
    limits: &Limits,
    nul_searched_to: usize,
) -> Result<Scan, ParseError> {
    let incomplete = |min_len: usize, nul_searched_to: usize| Scan::Incomplete {
        min_len,
        nul_searched_to,
    };
    if input.first() == Some(&0) {
        return Ok(Scan::HeartBeat { len: 1 });
    }
    match eol(input) {
        Ok((after, ())) => {
            return Ok(Scan::HeartBeat {
                len: input.offset(after),
            });
        }
        Err(nom::Err::Incomplete(_)) => return Ok(incomplete(input.len() + 1, 0)),
        Err(nom::Err::Failure(broken)) => return Err(broken.into()),
        Err(nom::Err::Error(_)) => {}
    }

    let (at_body, head) = match frame_head(input, version, limits) {
        Ok(parsed) => parsed,
        Err(nom::Err::Incomplete(_)) if input.len() >= limits.max_frame_size => {
            return Err(ParseError::FrameTooLarge {
                max: limits.max_frame_size,
            });
        }
        Err(nom::Err::Incomplete(_)) => return Ok(incomplete(input.len() + 1, 0)),
        Err(nom::Err::Error(broken) | nom::Err::Failure(broken)) => return Err(broken.into()),
    };
    let head_len = input.offset(at_body);
    let body_room = limits.max_frame_size.saturating_sub(head_len);

    let body_len = match head.content_length {
        Some(content_length) => {
            if content_length > limits.max_body {
                return Err(ParseError::BodyTooLarge {
                    max: limits.max_body,
                });
            }
            // The body and its NUL must fit in what the frame has left.
            if content_length >= body_room {
                return Err(ParseError::FrameTooLarge {
                    max: limits.max_frame_size,
                });
            }
            match at_body.get(content_length) {
                None => return Ok(incomplete(head_len + content_length + 1, 0)),
                Some(0) => content_length,
                Some(_) => return Err(ParseError::MissingNul { content_length }),
            }
        }
        None => {
            // Search only as far as a NUL could legally be: within the body
            // limit and within what the frame has left.
            let body_limit = limits.max_body.saturating_add(1);
            let reach = body_limit.min(body_room);
            let window = at_body.len().min(reach);
            let from = nul_searched_to.saturating_sub(head_len).min(window);
            match memchr(0, &at_body[from..window]) {
                Some(nul) => from + nul,
                None if window < reach => return Ok(incomplete(input.len() + 1, input.len())),
                None if body_limit <= body_room => {
                    return Err(ParseError::BodyTooLarge {
                        max: limits.max_body,
                    });
                }
                None => {
                    return Err(ParseError::FrameTooLarge {
                        max: limits.max_frame_size,
                    });
                }
            }
        }
    };

    Ok(Scan::Frame(Found {
        command: head.command,
        headers: head.headers,
        body: head_len..head_len + body_len,
        len: head_len + body_len + 1,
    }))
}

/// A rule of the grammar either does not apply here (`Mismatch`, so another
/// may be tried) or found the frame broken beyond repair.
#[derive(Debug)]
enum GrammarError {
    Mismatch,
    Broken(ParseError),
}

impl<I> nom::error::ParseError<I> for GrammarError {
    fn from_error_kind(_: I, _: nom::error::ErrorKind) -> GrammarError {
        GrammarError::Mismatch
    }

    fn append(_: I, _: nom::error::ErrorKind, other: GrammarError) -> GrammarError {
        other
    }
}

impl From<GrammarError> for ParseError {
    fn from(error: GrammarError) -> ParseError {
        match error {
            GrammarError::Broken(broken) => broken,
            // Every rule that can end a frame turns a mismatch into a reason
            // of its own; this only guards against a rule that forgot to.
            GrammarError::Mismatch => ParseError::UnknownCommand(String::new()),
        }
    }
}

type GrammarResult<'a, O, I = &'a [u8]> = IResult<I, O, GrammarError>;

fn broken<O>(error: ParseError) -> GrammarResult<'static, O> {
    Err(nom::Err::Failure(GrammarError::Broken(error)))
}

/// `EOL = [CR] LF`. A CR followed by anything else is an error.
fn eol(input: &[u8]) -> GrammarResult<'_, ()> {
    match input {
        [b'\n', after @ ..] | [b'\r', b'\n', after @ ..] => Ok((after, ())),
        [] | [b'\r'] => Err(nom::Err::Incomplete(Needed::new(1))),
        [b'\r', ..] => broken(ParseError::BareCarriageReturn),
        _ => Err(nom::Err::Error(GrammarError::Mismatch)),
    }
}

/// One line, without its EOL, at most `max` bytes long. A longer line is
/// refused as soon as more than `max` bytes (and a possible CR) have arrived
/// without an LF.
fn line(input: &[u8], max: usize) -> GrammarResult<'_, &[u8]> {
    let window = &input[..input.len().min(max.saturating_add(2))];
    let (content, after) = match memchr(b'\n', window) {
        Some(lf) => (&window[..lf], Some(&input[lf + 1..])),
        None => (window, None),
    };
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    match after {
        _ if content.len() > max => broken(ParseError::HeaderLineTooLong { max }),
        Some(after) => Ok((after, content)),
        None => Err(nom::Err::Incomplete(Needed::Unknown)),
    }
}

/// `command EOL`, case-sensitive.
fn command(input: &[u8]) -> GrammarResult<'_, Command> {
    let unknown = |bytes: &[u8]| {
        let shown = &bytes[..bytes.len().min(32)];
        ParseError::UnknownCommand(String::from_utf8_lossy(shown).into_owned())
    };
    match line(input, Command::MAX_LEN) {
        Ok((after, name)) => match Command::from_bytes(name) {
            Some(command) => Ok((after, command)),
            None => broken(unknown(name)),
        },
        Err(nom::Err::Failure(_)) => broken(unknown(input)),
        Err(other) => Err(other),
    }
}

/// One header line, UTF-8 checked, escapes not yet resolved.
#[derive(Debug, PartialEq, Eq)]
struct HeaderLine<'a> {
    name: &'a str,
    value: &'a str,
    /// The line has a backslash, so it may need unescaping.
    has_escapes: bool,
}

/// `name ":" value`, split at the first colon; the name may not be empty.
fn header(input: &[u8], max_line: usize) -> GrammarResult<'_, HeaderLine<'_>> {
    let (after, bytes) = line(input, max_line)?;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return broken(ParseError::InvalidUtf8);
    };
    let parts: GrammarResult<'_, _, &str> =
        separated_pair(take_till1(|c| c == ':'), tag(":"), rest).parse(text);
    match parts {
        Ok((_, (name, value))) => Ok((
            after,
            HeaderLine {
                name,
                value,
                has_escapes: memchr(b'\\', bytes).is_some(),
            },
        )),
        Err(_) if text.starts_with(':') => broken(ParseError::EmptyHeaderName),
        Err(_) => broken(ParseError::MissingColon {
            line: text.chars().take(64).collect(),
        }),
    }
}

/// The decimal value of a `content-length` header.
fn content_length(value: &[u8]) -> Result<usize, ParseError> {
    let digits: GrammarResult<'_, u64> = all_consuming(decimal_u64).parse(value);
    digits
        .ok()
        .and_then(|(_, length)| usize::try_from(length).ok())
        .ok_or_else(|| {
            ParseError::InvalidContentLength(String::from_utf8_lossy(value).into_owned())
        })
}

/// The command and headers of a frame, up to and including the blank line.
struct Head {
    command: Command,
    headers: Headers,
    /// From the first `content-length` header, which is the one that counts.
    content_length: Option<usize>,
}

/// `command EOL *( header EOL ) EOL`, within the header limits, headers
/// decoded by the escaping rule of `version` and the command.
fn frame_head<'a>(input: &'a [u8], version: Version, limits: &Limits) -> GrammarResult<'a, Head> {
    let (mut input, command) = command(input)?;
    let escaping = Escaping::for_frame(version, command);
    let mut head = Head {
        command,
        // Most heads are a few short headers: one allocation each, usually.
        headers: Headers::with_capacity(4, input.len().min(256)),
        content_length: None,
    };
    loop {
        match eol(input) {
            Ok((after, ())) => return Ok((after, head)),
            Err(nom::Err::Error(_)) => {}
            Err(end) => return Err(end),
        }
        if head.headers.len() == limits.max_headers {
            return broken(ParseError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        let (after, line) = header(input, limits.max_header_line)?;
        if line.name == "content-length" && head.content_length.is_none() {
            match content_length(line.value.as_bytes()) {
                Ok(length) => head.content_length = Some(length),
                Err(invalid) => return broken(invalid),
            }
        }
        if let Err(invalid) = push_decoded(&mut head.headers, escaping, &line) {
            return broken(invalid);
        }
        input = after;
    }
}

/// Resolves a header's escapes and appends it.
fn push_decoded(
    headers: &mut Headers,
    escaping: Escaping,
    line: &HeaderLine<'_>,
) -> Result<(), ParseError> {
    if !line.has_escapes {
        headers.push(line.name, line.value);
        return Ok(());
    }
    let name = escaping.unescape(line.name, line.name)?;
    let value = escaping.unescape(line.value, &name)?;
    headers.push(&name, &value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<Scan, ParseError> {
        scan(input, Version::V1_2, &Limits::default(), 0)
    }

    #[test]
    fn eol_accepts_lf_and_crlf_only() {
        assert!(matches!(eol(b"\nX"), Ok((b"X", ()))));
        assert!(matches!(eol(b"\r\nX"), Ok((b"X", ()))));
        assert!(matches!(eol(b"\r"), Err(nom::Err::Incomplete(_))));
        assert!(matches!(
            eol(b"\rX"),
            Err(nom::Err::Failure(GrammarError::Broken(
                ParseError::BareCarriageReturn
            )))
        ));
        assert!(matches!(eol(b"SEND"), Err(nom::Err::Error(_))));
    }

    #[test]
    fn line_strips_its_crlf_and_respects_its_bound() {
        assert!(matches!(line(b"abc\r\nrest", 3), Ok((b"rest", b"abc"))));
        assert!(matches!(line(b"abc", 3), Err(nom::Err::Incomplete(_))));
        assert!(matches!(line(b"abc\r", 3), Err(nom::Err::Incomplete(_))));
        assert!(matches!(line(b"abcde", 3), Err(nom::Err::Failure(_))));
        assert!(matches!(line(b"abcd\n", 3), Err(nom::Err::Failure(_))));
    }

    #[test]
    fn command_is_case_sensitive_and_bounded() {
        assert!(matches!(command(b"SEND\n"), Ok((b"", Command::Send))));
        let Err(nom::Err::Failure(GrammarError::Broken(error))) = command(b"send\n") else {
            panic!("lower-case command accepted");
        };
        assert_eq!(error, ParseError::UnknownCommand("send".into()));
        // No EOL within the longest command's length: refused at once.
        assert!(matches!(
            command(b"GET / HTTP/1.1"),
            Err(nom::Err::Failure(_))
        ));
        assert!(matches!(command(b"SUBSCR"), Err(nom::Err::Incomplete(_))));
    }

    #[test]
    fn header_splits_at_the_first_colon() {
        let (_, line) = header(b"url:http://x:80\n", 100).unwrap();
        assert_eq!((line.name, line.value), ("url", "http://x:80"));
        assert!(!line.has_escapes);
        let (_, line) = header(b"empty:\\n\n", 100).unwrap();
        assert_eq!((line.value, line.has_escapes), ("\\n", true));
        assert!(matches!(
            header(b"novalue\n", 100),
            Err(nom::Err::Failure(GrammarError::Broken(
                ParseError::MissingColon { .. }
            )))
        ));
        assert!(matches!(
            header(b":v\n", 100),
            Err(nom::Err::Failure(GrammarError::Broken(
                ParseError::EmptyHeaderName
            )))
        ));
    }

    #[test]
    fn content_length_must_be_decimal_digits() {
        assert_eq!(content_length(b"0"), Ok(0));
        assert_eq!(content_length(b"123"), Ok(123));
        for bad in [&b""[..], b"-1", b"12a", b" 12", b"99999999999999999999999"] {
            assert!(content_length(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scan_reports_where_each_part_lies() {
        let Ok(Scan::Frame(found)) = scan_all(b"SEND\na:b\n\nhi\0\n") else {
            panic!("no frame");
        };
        assert_eq!(found.command, Command::Send);
        assert_eq!(found.headers.iter().collect::<Vec<_>>(), [("a", "b")]);
        assert_eq!(found.body, 10..12);
        assert_eq!(found.len, 13);
    }

    #[test]
    fn a_stray_nul_between_frames_is_skipped() {
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.push(Bytes::from_static(b"\0SEND\n\na\0\0\n\0SEND\n\nb\0"));
        let mut bodies = Vec::new();
        while let Some(decoded) = decoder.decode().expect("no error") {
            if let Decoded::Frame(frame) = decoded {
                bodies.push(frame.body);
            }
        }
        assert_eq!(bodies, [&b"a"[..], &b"b"[..]]);
    }

    #[test]
    fn decoder_resumes_the_nul_search_where_it_stopped() {
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.push(Bytes::from_static(b"SEND\n\nabc"));
        assert_eq!(decoder.decode(), Ok(None));
        assert_eq!(decoder.progress.nul_searched_to, 9);
        decoder.push(Bytes::from_static(b"def\0"));
        let Ok(Some(Decoded::Frame(frame))) = decoder.decode() else {
            panic!("no frame");
        };
        assert_eq!(&frame.body[..], b"abcdef");
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn decoder_waits_for_the_whole_content_length() {
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.push(Bytes::from_static(b"SEND\ncontent-length:5\n\nab"));
        assert_eq!(decoder.decode(), Ok(None));
        assert_eq!(decoder.progress.min_len, 23 + 5 + 1);
        decoder.push(Bytes::from_static(b"c"));
        assert_eq!(decoder.decode(), Ok(None));
        decoder.push(Bytes::from_static(b"\0d\0"));
        let Ok(Some(Decoded::Frame(frame))) = decoder.decode() else {
            panic!("no frame");
        };
        assert_eq!(&frame.body[..], b"abc\0d");
    }

    #[test]
    fn a_trickling_head_is_not_parsed_again_and_again() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let head = b"SEND\ndestination:/queue/a\nx:1\n";
        for byte in head {
            decoder.push(Bytes::copy_from_slice(&[*byte]));
            assert_eq!(decoder.decode(), Ok(None));
        }
        assert_eq!(decoder.progress.head.lines, 3);
        assert_eq!(decoder.progress.head.searched_to, head.len());
        decoder.push(Bytes::from_static(b"\nbody\0"));
        let Ok(Some(Decoded::Frame(frame))) = decoder.decode() else {
            panic!("no frame");
        };
        assert_eq!(frame.headers.len(), 2);
        assert_eq!(&frame.body[..], b"body");
    }

    #[test]
    fn whole_frames_in_a_message_are_not_copied() {
        let message = Bytes::from(b"SEND\n\nfirst\0SEND\n\nsecond\0".to_vec());
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.push(message.clone());
        for expected in ["first", "second"] {
            let Ok(Some(Decoded::Frame(frame))) = decoder.decode() else {
                panic!("no frame");
            };
            assert_eq!(&frame.body[..], expected.as_bytes());
            let offset = frame.body.as_ptr() as usize - message.as_ptr() as usize;
            assert!(offset < message.len(), "the body was copied");
        }
        assert_eq!(decoder.decode(), Ok(None));
    }
}
