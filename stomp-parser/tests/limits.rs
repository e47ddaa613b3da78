//! Each caller-set limit gives its own error as soon as it is known, without
//! waiting for (or buffering) the rest of the frame.

mod common;

use common::{decode_chunks, parse_error};
use stomp_parser::{Limits, ParseError, Version};

fn limits() -> Limits {
    Limits {
        max_frame_size: 1000,
        max_headers: 3,
        max_header_line: 40,
        max_body: 100,
    }
}

#[test]
fn too_many_headers() {
    let error = parse_error(b"SEND\na:1\nb:2\nc:3\nd:4", Version::V1_2, &limits());
    assert_eq!(error, ParseError::TooManyHeaders { max: 3 });
    assert!(decode_chunks([&b"SEND\na:1\nb:2\nc:3\n\n\0"[..]], Version::V1_2, limits()).is_ok());
}

#[test]
fn header_line_too_long_is_refused_before_its_end_arrives() {
    let long = format!("SEND\nname:{}", "x".repeat(40));
    let error = parse_error(long.as_bytes(), Version::V1_2, &limits());
    assert_eq!(error, ParseError::HeaderLineTooLong { max: 40 });
    let exactly = format!("SEND\nn:{}\r\n\n\0", "x".repeat(38));
    assert!(decode_chunks([exactly.as_bytes()], Version::V1_2, limits()).is_ok());
}

#[test]
fn body_too_large_by_content_length_is_refused_when_the_header_is_read() {
    let error = parse_error(b"SEND\ncontent-length:101\n\n", Version::V1_2, &limits());
    assert_eq!(error, ParseError::BodyTooLarge { max: 100 });
    let error = parse_error(
        b"SEND\ncontent-length:99999999999999\n\n",
        Version::V1_2,
        &limits(),
    );
    assert_eq!(error, ParseError::BodyTooLarge { max: 100 });
}

#[test]
fn body_too_large_without_content_length_is_refused_past_the_limit() {
    let mut wire = b"SEND\n\n".to_vec();
    wire.extend(std::iter::repeat_n(b'x', 100));
    // 100 body bytes may still be followed by the NUL.
    assert!(
        decode_chunks([&wire[..]], Version::V1_2, limits())
            .unwrap()
            .is_empty()
    );
    wire.push(b'x');
    assert_eq!(
        parse_error(&wire, Version::V1_2, &limits()),
        ParseError::BodyTooLarge { max: 100 }
    );
    // The same, arriving in small pieces.
    let error = decode_chunks(wire.chunks(7), Version::V1_2, limits()).unwrap_err();
    assert_eq!(error, ParseError::BodyTooLarge { max: 100 });
}

#[test]
fn frame_too_large_counts_head_and_body() {
    let tight = Limits {
        max_frame_size: 30,
        ..limits()
    };
    // 23 bytes of head, so a 6-byte body plus its NUL is exactly 30.
    assert!(
        decode_chunks(
            [&b"SEND\ncontent-length:6\n\nabcdef\0"[..]],
            Version::V1_2,
            tight
        )
        .is_ok()
    );
    let error = parse_error(b"SEND\ncontent-length:7\n\n", Version::V1_2, &tight);
    assert_eq!(error, ParseError::FrameTooLarge { max: 30 });
    let error = parse_error(b"SEND\n\nabcdefghijklmnopqrstuvwxyz", Version::V1_2, &tight);
    assert_eq!(error, ParseError::FrameTooLarge { max: 30 });
    let error = parse_error(
        b"SEND\na:1\nb:2\nc:34567890123456789",
        Version::V1_2,
        &tight,
    );
    assert_eq!(error, ParseError::FrameTooLarge { max: 30 });
}

#[test]
fn a_command_line_longer_than_any_command_is_refused_at_once() {
    let error = parse_error(b"SUBSCRIBEXYZ", Version::V1_2, &Limits::default());
    assert_eq!(error, ParseError::UnknownCommand("SUBSCRIBEXYZ".into()));
}

#[test]
fn endless_heart_beats_are_fine() {
    let beats = vec![b'\n'; 100_000];
    let decoded = decode_chunks(beats.chunks(1000), Version::V1_2, limits()).unwrap();
    assert_eq!(decoded.len(), 100_000);
}
