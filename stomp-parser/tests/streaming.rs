//! Frames arrive in WebSocket messages whose boundaries are arbitrary: split
//! anywhere, several in one message, heart-beats in between.

mod common;

use bytes::Bytes;
use common::{decode_chunks, frames};
use stomp_parser::{Decoded, Limits, Parsed, Version, parse_frame};

const FRAMES: &[u8] = b"CONNECT\r\naccept-version:1.2\r\nhost:h\r\n\r\n\0\n\
SEND\ndestination:/queue/a\ncontent-length:4\n\nx\0y\n\0\r\n\n\
SEND\ndestination:/topic/b\\cc\n\nhello\0\
MESSAGE\nsubscription:0\nmessage-id:1\n\n\0";

fn expected() -> Vec<Decoded> {
    decode_chunks([FRAMES], Version::V1_2, Limits::default()).unwrap()
}

#[test]
fn several_frames_and_heart_beats_in_one_message() {
    let decoded = expected();
    let kinds: Vec<_> = decoded
        .iter()
        .map(|item| match item {
            Decoded::Frame(frame) => frame.command.as_str(),
            Decoded::HeartBeat => "heart-beat",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "CONNECT",
            "heart-beat",
            "SEND",
            "heart-beat",
            "heart-beat",
            "SEND",
            "MESSAGE"
        ]
    );
    let frames = frames(decoded);
    assert_eq!(&frames[1].body[..], b"x\0y\n");
    assert_eq!(frames[2].get("destination"), Some("/topic/b:c"));
}

#[test]
fn a_split_at_every_byte_position_gives_the_same_frames() {
    let whole = expected();
    for at in 0..=FRAMES.len() {
        let (first, second) = FRAMES.split_at(at);
        let decoded = decode_chunks([first, second], Version::V1_2, Limits::default()).unwrap();
        assert_eq!(decoded, whole, "split at {at}");
    }
}

#[test]
fn byte_by_byte_arrival_gives_the_same_frames() {
    let decoded = decode_chunks(FRAMES.chunks(1), Version::V1_2, Limits::default()).unwrap();
    assert_eq!(decoded, expected());
}

#[test]
fn every_three_way_split_of_a_frame_gives_the_same_frame() {
    let wire = b"SEND\r\ndestination:/queue/a\r\ncontent-length:3\r\n\r\na\0b\0";
    let whole = decode_chunks([&wire[..]], Version::V1_2, Limits::default()).unwrap();
    for i in 0..=wire.len() {
        for j in i..=wire.len() {
            let parts = [&wire[..i], &wire[i..j], &wire[j..]];
            assert_eq!(
                decode_chunks(parts, Version::V1_2, Limits::default()).unwrap(),
                whole,
                "{i} {j}"
            );
        }
    }
}

#[test]
fn a_partial_frame_asks_for_more_bytes() {
    let wire = b"SEND\ndestination:/queue/a\n\nbody\0";
    for len in 1..wire.len() {
        let partial = Bytes::copy_from_slice(&wire[..len]);
        assert_eq!(
            parse_frame(&partial, Version::V1_2, &Limits::default()),
            Ok(Parsed::Incomplete),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn parse_frame_reports_how_many_bytes_it_used() {
    let input = Bytes::from_static(b"\r\nSEND\n\nab\0\nNEXT");
    let limits = Limits::default();
    assert_eq!(
        parse_frame(&input, Version::V1_2, &limits),
        Ok(Parsed::HeartBeat { len: 2 })
    );
    let rest = input.slice(2..);
    let Ok(Parsed::Frame { frame, len }) = parse_frame(&rest, Version::V1_2, &limits) else {
        panic!("no frame");
    };
    assert_eq!((len, &frame.body[..]), (9, &b"ab"[..]));
    assert_eq!(
        parse_frame(&rest.slice(len..), Version::V1_2, &limits),
        Ok(Parsed::HeartBeat { len: 1 })
    );
}

#[test]
fn the_body_is_a_slice_of_the_input_not_a_copy() {
    let input = Bytes::from(b"SEND\ncontent-length:5\n\nhello\0".to_vec());
    let Ok(Parsed::Frame { frame, .. }) = parse_frame(&input, Version::V1_2, &Limits::default())
    else {
        panic!("no frame");
    };
    let body_at = frame.body.as_ptr() as usize;
    let input_at = input.as_ptr() as usize;
    assert_eq!(body_at - input_at, 23);
}
