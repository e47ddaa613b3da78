//! Why a frame was refused, in words a client can read in an ERROR frame.

use crate::frame::Command;
use crate::version::Version;

/// A malformed or oversize frame. Every variant names the rule that was
/// broken; the relay copies the message into the ERROR frame it sends before
/// closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("a line ends with CR that is not followed by LF")]
    BareCarriageReturn,
    #[error("header line {line:?} has no ':' between name and value")]
    MissingColon { line: String },
    #[error("a header has an empty name")]
    EmptyHeaderName,
    #[error("header {name:?} has an invalid escape sequence \"\\{sequence}\" (STOMP {version})")]
    InvalidEscape {
        name: String,
        sequence: String,
        version: Version,
    },
    #[error("a header is not valid UTF-8")]
    InvalidUtf8,
    #[error("content-length {0:?} is not a non-negative integer")]
    InvalidContentLength(String),
    #[error("the body of content-length {content_length} is not followed by a NUL byte")]
    MissingNul { content_length: usize },
    #[error("frame exceeds the maximum size of {max} bytes")]
    FrameTooLarge { max: usize },
    #[error("frame has more than {max} headers")]
    TooManyHeaders { max: usize },
    #[error("a header line exceeds the maximum length of {max} bytes")]
    HeaderLineTooLong { max: usize },
    #[error("body exceeds the maximum size of {max} bytes")]
    BodyTooLarge { max: usize },
}

/// A frame the encoder refuses because the wire format of the chosen version
/// cannot carry it unchanged (the encoder never writes something the parser
/// would read back differently).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{command} header {name:?} cannot be written in STOMP {version}: {reason}")]
    UnrepresentableHeader {
        command: Command,
        version: Version,
        name: String,
        reason: &'static str,
    },
    #[error("the body contains a NUL byte but the frame has no content-length header")]
    NulWithoutContentLength,
    #[error("content-length {header:?} does not match the body of {actual} bytes")]
    ContentLengthMismatch { header: String, actual: usize },
}
