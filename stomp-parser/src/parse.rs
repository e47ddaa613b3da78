//! The STOMP grammar as small `nom` parsers, and the streaming decoder.
//!
//! ```text
//! frame      = command EOL *( header EOL ) EOL body NUL
//! heart-beat = EOL                      (between frames)
//! EOL        = [CR] LF
//! header     = name ":" value           (split at the first ':')
//! body       = content-length octets    (may contain NUL)
//!            | *<any octet but NUL>     (without content-length)
//! ```
//!
//! Parsing runs in two steps. [`scan`] walks the bytes with the grammar and
//! finds where each piece of a frame lies, without copying or decoding; it is
//! where "not enough bytes yet" and every limit are decided. [`materialize`]
//! then turns those positions into a [`Frame`] whose header values and body
//! are slices of one shared buffer, resolving escapes and checking UTF-8.
//! The split lets [`FrameDecoder`] detach a complete frame from its growing
//! receive buffer (an O(1) `split_to().freeze()`) before taking slices of it.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
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
    /// An end-of-line between frames (a heart-beat), and its length (1 or 2).
    HeartBeat { len: usize },
    /// The input is the beginning of a frame; more bytes are needed.
    Incomplete,
}

/// Parses the frame (or heart-beat) at the start of `input`.
///
/// `version` decides header escaping; it does not change the grammar. The
/// frame's header values and body are slices of `input`.
pub fn parse_frame(input: &Bytes, version: Version, limits: &Limits) -> Result<Parsed, ParseError> {
    Ok(match scan(input, limits, 0)? {
        Scan::HeartBeat { len } => Parsed::HeartBeat { len },
        Scan::Incomplete { .. } => Parsed::Incomplete,
        Scan::Frame(layout) => Parsed::Frame {
            len: layout.len,
            frame: materialize(input, &layout, version)?,
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
/// The transport appends each received message to a `BytesMut` and calls
/// [`FrameDecoder::decode`] until it answers `None`. A decoded frame's body
/// shares the receive buffer's memory; nothing is copied. The decoder
/// remembers how far an unfinished frame has been examined, so a frame that
/// trickles in byte by byte costs linear, not quadratic, time to find its end.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    version: Version,
    limits: Limits,
    progress: Progress,
}

/// What is known of the unfinished frame at the start of the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The buffer cannot hold a whole frame before it reaches this length.
    min_len: usize,
    /// The body holds no NUL before this offset.
    nul_searched_to: usize,
}

impl FrameDecoder {
    /// A decoder for STOMP 1.2 until the session agrees another version.
    pub fn new(limits: Limits) -> FrameDecoder {
        FrameDecoder {
            version: Version::V1_2,
            limits,
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

    /// Takes the next frame or heart-beat off the front of `buf`, or answers
    /// `None` when `buf` holds only part of one. After an error the stream is
    /// beyond repair: the connection should report it and close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ParseError> {
        if buf.len() < self.progress.min_len {
            return Ok(None);
        }
        match scan(buf, &self.limits, self.progress.nul_searched_to)? {
            Scan::Incomplete {
                min_len,
                nul_searched_to,
            } => {
                self.progress = Progress {
                    min_len,
                    nul_searched_to,
                };
                Ok(None)
            }
            Scan::HeartBeat { len } => {
                self.progress = Progress::default();
                buf.advance(len);
                Ok(Some(Decoded::HeartBeat))
            }
            Scan::Frame(layout) => {
                self.progress = Progress::default();
                let frame_bytes = buf.split_to(layout.len).freeze();
                materialize(&frame_bytes, &layout, self.version)
                    .map(|frame| Some(Decoded::Frame(frame)))
            }
        }
    }
}

/// Where a frame's parts lie in the buffer, found by [`scan`].
#[derive(Debug)]
struct Layout {
    command: Command,
    headers: Vec<(Range<usize>, Range<usize>)>,
    body: Range<usize>,
    len: usize,
}

/// The outcome of [`scan`].
#[derive(Debug)]
enum Scan {
    Frame(Layout),
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
fn scan(input: &[u8], limits: &Limits, nul_searched_to: usize) -> Result<Scan, ParseError> {
    let incomplete = |min_len: usize, nul_searched_to: usize| Scan::Incomplete {
        min_len,
        nul_searched_to,
    };
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

    let (at_body, head) = match frame_head(input, limits) {
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

    let span = |part: &[u8]| {
        let start = input.offset(part);
        start..start + part.len()
    };
    Ok(Scan::Frame(Layout {
        command: head.command,
        headers: head
            .headers
            .iter()
            .map(|(name, value)| (span(name), span(value)))
            .collect(),
        body: head_len..head_len + body_len,
        len: head_len + body_len + 1,
    }))
}

/// Builds the frame that `layout` describes, sharing `source`'s memory.
fn materialize(source: &Bytes, layout: &Layout, version: Version) -> Result<Frame, ParseError> {
    let escaping = Escaping::for_frame(version, layout.command);
    let text = |range: &Range<usize>| {
        ByteString::try_from(source.slice(range.clone())).map_err(|_| ParseError::InvalidUtf8)
    };
    let mut headers = Headers::with_capacity(layout.headers.len());
    for (name_range, value_range) in &layout.headers {
        let raw_name = text(name_range)?;
        let raw_value = text(value_range)?;
        let name = decoded(raw_name, escaping, None)?;
        let value = decoded(raw_value, escaping, Some(&name))?;
        headers.push(name, value);
    }
    Ok(Frame {
        command: layout.command,
        headers,
        body: source.slice(layout.body.clone()),
    })
}

/// Resolves escapes, keeping the shared buffer when there were none.
/// `name` is the header's (decoded) name when `raw` is its value.
fn decoded(
    raw: ByteString,
    escaping: Escaping,
    name: Option<&str>,
) -> Result<ByteString, ParseError> {
    let header = name.unwrap_or(&raw);
    match escaping.unescape(&raw, header)? {
        std::borrow::Cow::Borrowed(_) => Ok(raw),
        std::borrow::Cow::Owned(resolved) => Ok(ByteString::from(resolved)),
    }
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

type GrammarResult<'a, O> = IResult<&'a [u8], O, GrammarError>;

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

/// `name ":" value`, split at the first colon; the name may not be empty.
fn header(input: &[u8], max_line: usize) -> GrammarResult<'_, (&[u8], &[u8])> {
    let (after, text) = line(input, max_line)?;
    let parts: GrammarResult<'_, _> =
        separated_pair(take_till1(|b| b == b':'), tag(":"), rest).parse(text);
    match parts {
        Ok((_, name_value)) => Ok((after, name_value)),
        Err(_) if text.first() == Some(&b':') => broken(ParseError::EmptyHeaderName),
        Err(_) => broken(ParseError::MissingColon {
            line: String::from_utf8_lossy(&text[..text.len().min(64)]).into_owned(),
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
struct Head<'a> {
    command: Command,
    headers: Vec<(&'a [u8], &'a [u8])>,
    /// From the first `content-length` header, which is the one that counts.
    content_length: Option<usize>,
}

/// `command EOL *( header EOL ) EOL`, within the header limits.
fn frame_head<'a>(input: &'a [u8], limits: &Limits) -> GrammarResult<'a, Head<'a>> {
    let (mut input, command) = command(input)?;
    let mut head = Head {
        command,
        headers: Vec::new(),
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
        let (after, (name, value)) = header(input, limits.max_header_line)?;
        if name == b"content-length" && head.content_length.is_none() {
            match content_length(value) {
                Ok(length) => head.content_length = Some(length),
                Err(invalid) => return broken(invalid),
            }
        }
        head.headers.push((name, value));
        input = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<Scan, ParseError> {
        scan(input, &Limits::default(), 0)
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
        let (_, (name, value)) = header(b"url:http://x:80\n", 100).unwrap();
        assert_eq!((name, value), (&b"url"[..], &b"http://x:80"[..]));
        let (_, (_, value)) = header(b"empty:\n", 100).unwrap();
        assert_eq!(value, b"");
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
        let Ok(Scan::Frame(layout)) = scan_all(b"SEND\na:b\n\nhi\0\n") else {
            panic!("no frame");
        };
        assert_eq!(layout.command, Command::Send);
        assert_eq!(layout.headers, [(5..6, 7..8)]);
        assert_eq!(layout.body, 10..12);
        assert_eq!(layout.len, 13);
    }

    #[test]
    fn decoder_resumes_the_nul_search_where_it_stopped() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"SEND\n\nabc"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.progress.nul_searched_to, 9);
        buf.extend_from_slice(b"def\0");
        let Ok(Some(Decoded::Frame(frame))) = decoder.decode(&mut buf) else {
            panic!("no frame");
        };
        assert_eq!(&frame.body[..], b"abcdef");
        assert!(buf.is_empty());
    }

    #[test]
    fn decoder_waits_for_the_whole_content_length() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:5\n\nab"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.progress.min_len, 23 + 5 + 1);
        buf.extend_from_slice(b"c");
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\0d\0");
        let Ok(Some(Decoded::Frame(frame))) = decoder.decode(&mut buf) else {
            panic!("no frame");
        };
        assert_eq!(&frame.body[..], b"abc\0d");
    }
}
