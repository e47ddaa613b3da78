//! Feeds arbitrary bytes, in arbitrary chunks, to the streaming decoder.
//! Nothing may panic, and every frame decoded must survive encode -> parse
//! unchanged whenever the encoder accepts it.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stomp_parser::{Decoded, FrameDecoder, Limits, Parsed, Version, encoded_frame, parse_frame};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let version = Version::ALL[usize::from(control % 3)];
    let chunk = usize::from(control >> 2) + 1;
    let limits = if control & 0x80 == 0 {
        Limits::default()
    } else {
        Limits {
            max_frame_size: 256,
            max_headers: 4,
            max_header_line: 64,
            max_body: 128,
        }
    };

    let mut decoder = FrameDecoder::new(limits);
    decoder.set_version(version);
    for piece in input.chunks(chunk) {
        decoder.push(Bytes::copy_from_slice(piece));
        loop {
            match decoder.decode() {
                Ok(Some(Decoded::Frame(frame))) => {
                    if let Ok(wire) = encoded_frame(&frame, version) {
                        match parse_frame(&wire, version, &Limits::UNLIMITED) {
                            Ok(Parsed::Frame { frame: again, len }) => {
                                assert_eq!(len, wire.len());
                                assert_eq!(again, frame);
                            }
                            other => panic!("re-encoded frame did not parse: {other:?}"),
                        }
                    }
                }
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
