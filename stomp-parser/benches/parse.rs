//! How fast frames are parsed and encoded. Prints time per frame (frames/s is
//! its inverse) and throughput in bytes/s; nothing is asserted.
//!
//! `cargo bench -p stomp-parser`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stomp_parser::{
    Command, Frame, FrameDecoder, Limits, Parsed, Version, encode_frame, encoded_frame, parse_frame,
};

fn send_100_bytes() -> Frame {
    Frame::new(Command::Send)
        .header("destination", "/topic/chat.general")
        .header("content-type", "text/plain")
        .header("content-length", "100")
        .body(vec![b'x'; 100])
}

fn message(body_len: usize, extra_headers: usize) -> Frame {
    let mut frame = Frame::new(Command::Message)
        .header("destination", "/topic/prices.eur")
        .header("message-id", "T_sub-0@@session-7d1f@@42")
        .header("subscription", "sub-0")
        .header("content-type", "application/json")
        .header("content-length", body_len.to_string());
    for n in 0..extra_headers.saturating_sub(5) {
        frame = frame.header(&format!("x-custom-{n}"), format!("value {n}"));
    }
    frame.body(vec![b'y'; body_len])
}

fn cases() -> Vec<(&'static str, Bytes)> {
    let wire = |frame: Frame| encoded_frame(&frame, Version::V1_2).unwrap();
    let mut no_length = BytesMut::from(&b"SEND\ndestination:/queue/bulk\n\n"[..]);
    no_length.extend_from_slice(&vec![b'z'; 64 * 1024]);
    no_length.extend_from_slice(b"\0");
    vec![
        ("send_100B", wire(send_100_bytes())),
        ("message_10_headers_4KiB", wire(message(4096, 10))),
        ("message_64KiB", wire(message(64 * 1024, 5))),
        ("send_64KiB_without_content_length", no_length.freeze()),
    ]
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_frame");
    let limits = Limits::UNLIMITED;
    for (name, wire) in cases() {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter(
                || match parse_frame(black_box(&wire), Version::V1_2, &limits) {
                    Ok(Parsed::Frame { frame, .. }) => frame,
                    other => panic!("{other:?}"),
                },
            )
        });
    }
    group.finish();
}

/// The transport's path: a received message pushed, then its frame decoded.
fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_decoder");
    for (name, wire) in cases() {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut decoder = FrameDecoder::new(Limits::UNLIMITED);
        group.bench_function(name, |b| {
            b.iter(|| {
                decoder.push(black_box(&wire).clone());
                decoder.decode().unwrap().unwrap()
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_frame");
    for (name, frame) in [
        ("send_100B", send_100_bytes()),
        ("message_10_headers_4KiB", message(4096, 10)),
    ] {
        let mut dst = BytesMut::with_capacity(8192);
        group.bench_function(name, |b| {
            b.iter(|| {
                dst.clear();
                encode_frame(black_box(&frame), Version::V1_2, &mut dst).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse, decode, encode);
criterion_main!(benches);
