//! Helpers shared by the parser's integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use stomp_parser::{
    Decoded, Frame, FrameDecoder, Limits, ParseError, Parsed, Version, parse_frame,
};

/// Parses one whole frame that must take all of `wire`.
pub fn parse_one(wire: &[u8], version: Version) -> Frame {
    match parse_frame(&Bytes::copy_from_slice(wire), version, &Limits::default()) {
        Ok(Parsed::Frame { frame, len }) => {
            assert_eq!(len, wire.len(), "frame did not use all its bytes");
            frame
        }
        other => panic!("expected a frame from {wire:?}, got {other:?}"),
    }
}

/// The error that parsing `wire` ends with.
pub fn parse_error(wire: &[u8], version: Version, limits: &Limits) -> ParseError {
    match parse_frame(&Bytes::copy_from_slice(wire), version, limits) {
        Err(error) => error,
        other => panic!("expected an error from {wire:?}, got {other:?}"),
    }
}

/// Feeds `chunks` to one decoder, as messages arriving one after another,
/// and collects everything it decodes.
pub fn decode_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    version: Version,
    limits: Limits,
) -> Result<Vec<Decoded>, ParseError> {
    let mut decoder = FrameDecoder::new(limits);
    decoder.set_version(version);
    let mut decoded = Vec::new();
    for chunk in chunks {
        decoder.push(Bytes::copy_from_slice(chunk));
        while let Some(item) = decoder.decode()? {
            decoded.push(item);
        }
    }
    Ok(decoded)
}

/// The frames among decoded items, heart-beats left out.
pub fn frames(decoded: Vec<Decoded>) -> Vec<Frame> {
    decoded
        .into_iter()
        .filter_map(|item| match item {
            Decoded::Frame(frame) => Some(frame),
            Decoded::HeartBeat => None,
        })
        .collect()
}

/// Header name/value pairs, for comparing against literals.
pub fn pairs(frame: &Frame) -> Vec<(String, String)> {
    frame
        .headers
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
