//! Header escaping as each version defines it, in whole frames.

mod common;

use common::{parse_error, parse_one};
use stomp_parser::{Limits, ParseError, Version};

const ESCAPED: &[u8] = b"MESSAGE\nkey\\cname:a\\nb\\\\c\\cd\n\n\0";

#[test]
fn v12_resolves_escapes_in_names_and_values() {
    let frame = parse_one(ESCAPED, Version::V1_2);
    assert_eq!(frame.get("key:name"), Some("a\nb\\c:d"));
    let frame = parse_one(b"SEND\ncr:a\\rb\n\n\0", Version::V1_2);
    assert_eq!(frame.get("cr"), Some("a\rb"));
}

#[test]
fn v11_resolves_its_three_escapes_and_refuses_cr() {
    let frame = parse_one(ESCAPED, Version::V1_1);
    assert_eq!(frame.get("key:name"), Some("a\nb\\c:d"));
    let error = parse_error(b"SEND\ncr:a\\rb\n\n\0", Version::V1_1, &Limits::default());
    assert!(
        matches!(error, ParseError::InvalidEscape { ref sequence, .. } if sequence == "r"),
        "{error}"
    );
}

#[test]
fn v10_leaves_values_as_they_are() {
    let frame = parse_one(b"SEND\npath:c\\dir\\t\\n\n\n\0", Version::V1_0);
    assert_eq!(frame.get("path"), Some("c\\dir\\t\\n"));
}

#[test]
fn connect_and_connected_are_never_unescaped() {
    for wire in [
        &b"CONNECT\npasscode:a\\tb\\c\n\n\0"[..],
        b"STOMP\npasscode:a\\tb\\c\n\n\0",
    ] {
        let frame = parse_one(wire, Version::V1_2);
        assert_eq!(frame.get("passcode"), Some("a\\tb\\c"));
    }
    let frame = parse_one(b"CONNECTED\nserver:x\\y\n\n\0", Version::V1_2);
    assert_eq!(frame.get("server"), Some("x\\y"));
}

#[test]
fn undefined_escapes_are_fatal_from_v11_on() {
    for version in [Version::V1_1, Version::V1_2] {
        for wire in [
            &b"SEND\na:\\t\n\n\0"[..],
            b"SEND\na:x\\\n\n\0",
            b"SEND\n\\x:v\n\n\0",
        ] {
            let error = parse_error(wire, version, &Limits::default());
            assert!(
                matches!(error, ParseError::InvalidEscape { .. }),
                "{version}: {error}"
            );
        }
    }
}

#[test]
fn a_raw_colon_in_a_value_is_kept() {
    let frame = parse_one(b"SEND\nreply-to:http://x:1/y\n\n\0", Version::V1_2);
    assert_eq!(frame.get("reply-to"), Some("http://x:1/y"));
}

#[test]
fn values_keep_their_whitespace() {
    let frame = parse_one(b"SEND\n a : b \n\n\0", Version::V1_2);
    assert_eq!(frame.get(" a "), Some(" b "));
}
