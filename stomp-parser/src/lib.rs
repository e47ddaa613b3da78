//! STOMP 1.0, 1.1 and 1.2 frames, without I/O.
//!
//! The relay reads bytes from WebSocket and SockJS messages whose boundaries have
//! nothing to do with frame boundaries, so everything here is streaming: a
//! [`FrameDecoder`] (or the lower-level [`parse_frame`]) is fed whatever bytes
//! have arrived and answers with a whole [`Frame`], a heart-beat, or "not yet".
//! Bodies and header values are slices of the received buffer ([`bytes::Bytes`]),
//! so a large body is never copied by parsing.
//!
//! The encoder ([`encode_frame`]) is the exact inverse of the parser for the same
//! [`Version`]: `parse(encode(frame)) == frame`, or the encoder refuses a frame the
//! wire format of that version cannot carry.
//!
//! Module map: [`frame`] (the types), [`parse`] (the `nom` grammar and the
//! streaming decoder), [`encode`], [`escape`] (header escaping rules per version),
//! [`limits`] (what the caller allows), [`error`].

pub mod encode;
pub mod error;
pub mod escape;
pub mod frame;
pub mod limits;
pub mod parse;
pub mod version;

pub use encode::{encode_frame, encoded_frame};
pub use error::{EncodeError, ParseError};
pub use escape::portable_header_problem;
pub use frame::{Command, Frame, Headers};
pub use limits::Limits;
pub use parse::{Decoded, FrameDecoder, Parsed, parse_frame};
pub use version::Version;
