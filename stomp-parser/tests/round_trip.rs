//! Property tests: the encoder and parser are exact inverses for every
//! version, however the bytes are split, and no input makes the parser panic.

mod common;

use bytes::Bytes;
use common::{decode_chunks, frames};
use proptest::prelude::*;
use stomp_parser::escape::Escaping;
use stomp_parser::{Command, Decoded, Frame, Headers, Limits, Version, encoded_frame, parse_frame};

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

fn command() -> impl Strategy<Value = Command> {
    prop::sample::select(Command::ALL.to_vec())
}

/// Header text drawn from the characters escaping is about, and some others.
const NAME: &str = "[a-z0-9:\\\\\r\n é\u{1F600}-]{1,10}";
const VALUE: &str = "[a-z0-9:\\\\\r\n é\u{1F600}-]{0,16}";

/// Names and values that `escaping` can carry, per the rules of the spec.
fn header(escaping: Escaping) -> impl Strategy<Value = (String, String)> {
    (NAME, VALUE).prop_filter("the version cannot carry it", move |(name, value)| {
        let raw = escaping == Escaping::None;
        let cr_escapable = escaping == Escaping::V12;
        name != "content-length"
            && !(raw && (name.contains(':') || name.contains('\n') || value.contains('\n')))
            && !(!cr_escapable && (name.starts_with('\r') || value.ends_with('\r')))
    })
}

prop_compose! {
    fn frame_for(version: Version)(command in command())
        (headers in prop::collection::vec(header(Escaping::for_frame(version, command)), 0..6),
         body in prop::collection::vec(any::<u8>(), 0..64),
         with_length in any::<bool>(),
         command in Just(command)) -> Frame {
        let mut frame = Frame { command, headers: Headers::new(), body: Bytes::from(body) };
        if with_length || frame.body.contains(&0) {
            frame.headers.push("content-length", &frame.body.len().to_string());
        }
        for (name, value) in headers {
            frame.headers.push(&name, &value);
        }
        frame
    }
}

fn versioned_frame() -> impl Strategy<Value = (Version, Frame)> {
    version().prop_flat_map(|version| (Just(version), frame_for(version)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_parse_gives_the_same_frame((version, frame) in versioned_frame()) {
        let wire = encoded_frame(&frame, version).expect("generated frames are representable");
        match parse_frame(&wire, version, &Limits::UNLIMITED) {
            Ok(stomp_parser::Parsed::Frame { frame: parsed, len }) => {
                prop_assert_eq!(len, wire.len());
                prop_assert_eq!(parsed, frame);
            }
            other => prop_assert!(false, "{:?} from {:?}", other, wire),
        }
    }

    #[test]
    fn split_anywhere_gives_the_same_frames(
        (version, first) in versioned_frame(),
        second in frame_for(Version::V1_2),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut wire = encoded_frame(&first, version).unwrap().to_vec();
        wire.extend_from_slice(b"\r\n\n");
        // The second frame is read with the same version, so re-encode it so.
        let second_wire = encoded_frame(&second, version);
        prop_assume!(second_wire.is_ok());
        wire.extend_from_slice(&second_wire.unwrap());
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for point in points {
            chunks.push(&wire[start..point]);
            start = point;
        }
        chunks.push(&wire[start..]);
        let decoded = decode_chunks(chunks, version, Limits::UNLIMITED).unwrap();
        prop_assert_eq!(decoded.iter().filter(|item| **item == Decoded::HeartBeat).count(), 2);
        prop_assert_eq!(frames(decoded), vec![first, second]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        chunk in 1usize..64,
        version in version(),
        tight in any::<bool>(),
    ) {
        let limits = if tight {
            Limits { max_frame_size: 128, max_headers: 4, max_header_line: 32, max_body: 64 }
        } else {
            Limits::default()
        };
        let _ = decode_chunks(bytes.chunks(chunk), version, limits);
    }

    #[test]
    fn frame_shaped_garbage_never_panics(
        command in command(),
        head in prop::collection::vec(prop::sample::select(b"ab:\\\r\n\0cnlre-0123456789".to_vec()), 0..200),
        version in version(),
    ) {
        let mut wire = format!("{command}\n").into_bytes();
        wire.extend_from_slice(&head);
        let _ = decode_chunks([&wire[..]], version, Limits::default());
        let with_length = [b"SEND\ncontent-length:".as_slice(), &head].concat();
        let _ = decode_chunks([&with_length[..]], version, Limits::default());
    }
}
