//! Every example frame of the STOMP 1.2 specification, parsed as the spec
//! reads it, and malformed frames refused with a reason a client can act on.

mod common;

use common::{pairs, parse_error, parse_one};
use stomp_parser::{Command, Limits, ParseError, Version};

/// A frame as the spec prints it (`^@` for NUL), then the command, headers
/// and body the spec says it carries.
type SpecExample = (
    &'static str,
    Command,
    &'static [(&'static str, &'static str)],
    &'static str,
);

const SPEC_EXAMPLES: &[SpecExample] = &[
    (
        "CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n^@",
        Command::Connect,
        &[("accept-version", "1.2"), ("host", "stomp.github.org")],
        "",
    ),
    (
        "STOMP\naccept-version:1.2\nhost:stomp.github.org\n\n^@",
        Command::Stomp,
        &[("accept-version", "1.2"), ("host", "stomp.github.org")],
        "",
    ),
    (
        "CONNECTED\nversion:1.2\n\n^@",
        Command::Connected,
        &[("version", "1.2")],
        "",
    ),
    (
        "CONNECT\naccept-version:1.0,1.1,2.0\nhost:stomp.github.org\n\n^@",
        Command::Connect,
        &[
            ("accept-version", "1.0,1.1,2.0"),
            ("host", "stomp.github.org"),
        ],
        "",
    ),
    (
        "ERROR\nversion:1.2,2.1\ncontent-type:text/plain\n\nSupported protocol versions are 1.2 2.1^@",
        Command::Error,
        &[("version", "1.2,2.1"), ("content-type", "text/plain")],
        "Supported protocol versions are 1.2 2.1",
    ),
    (
        "CONNECT\naccept-version:1.2\nhost:stomp.github.org\nheart-beat:0,1000\n\n^@",
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("host", "stomp.github.org"),
            ("heart-beat", "0,1000"),
        ],
        "",
    ),
    (
        "MESSAGE\nfoo:World\nfoo:Hello\n\n^@",
        Command::Message,
        &[("foo", "World"), ("foo", "Hello")],
        "",
    ),
    (
        "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n^@",
        Command::Send,
        &[("destination", "/queue/a"), ("content-type", "text/plain")],
        "hello queue a\n",
    ),
    (
        "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a^@",
        Command::Send,
        &[("destination", "/queue/a"), ("content-type", "text/plain")],
        "hello queue a",
    ),
    (
        "SEND\ndestination:/queue/a\nreceipt:message-12345\n\nhello queue a^@",
        Command::Send,
        &[("destination", "/queue/a"), ("receipt", "message-12345")],
        "hello queue a",
    ),
    (
        "SEND\ndestination:/queue/a\ntransaction:tx1\ncontent-type:text/plain\n\nhello queue a^@",
        Command::Send,
        &[
            ("destination", "/queue/a"),
            ("transaction", "tx1"),
            ("content-type", "text/plain"),
        ],
        "hello queue a",
    ),
    (
        "SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n^@",
        Command::Subscribe,
        &[
            ("id", "0"),
            ("destination", "/queue/foo"),
            ("ack", "client"),
        ],
        "",
    ),
    (
        "UNSUBSCRIBE\nid:0\n\n^@",
        Command::Unsubscribe,
        &[("id", "0")],
        "",
    ),
    (
        "ACK\nid:12345\ntransaction:tx1\n\n^@",
        Command::Ack,
        &[("id", "12345"), ("transaction", "tx1")],
        "",
    ),
    (
        "NACK\nid:12345\ntransaction:tx1\n\n^@",
        Command::Nack,
        &[("id", "12345"), ("transaction", "tx1")],
        "",
    ),
    (
        "BEGIN\ntransaction:tx1\n\n^@",
        Command::Begin,
        &[("transaction", "tx1")],
        "",
    ),
    (
        "COMMIT\ntransaction:tx1\n\n^@",
        Command::Commit,
        &[("transaction", "tx1")],
        "",
    ),
    (
        "ABORT\ntransaction:tx1\n\n^@",
        Command::Abort,
        &[("transaction", "tx1")],
        "",
    ),
    (
        "DISCONNECT\nreceipt:77\n\n^@",
        Command::Disconnect,
        &[("receipt", "77")],
        "",
    ),
    (
        "RECEIPT\nreceipt-id:77\n\n^@",
        Command::Receipt,
        &[("receipt-id", "77")],
        "",
    ),
    (
        "MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a^@",
        Command::Message,
        &[
            ("subscription", "0"),
            ("message-id", "007"),
            ("destination", "/queue/a"),
            ("content-type", "text/plain"),
        ],
        "hello queue a",
    ),
    (
        "RECEIPT\nreceipt-id:message-12345\n\n^@",
        Command::Receipt,
        &[("receipt-id", "message-12345")],
        "",
    ),
    (
        "ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:170\nmessage:malformed frame received\n\nThe message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n^@",
        Command::Error,
        &[
            ("receipt-id", "message-12345"),
            ("content-type", "text/plain"),
            ("content-length", "170"),
            ("message", "malformed frame received"),
        ],
        "The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n",
    ),
];

fn wire(printed: &str) -> Vec<u8> {
    printed.replace("^@", "\0").into_bytes()
}

#[test]
fn every_spec_example_parses_as_the_spec_reads_it() {
    for (printed, command, headers, body) in SPEC_EXAMPLES {
        for version in Version::ALL {
            let frame = parse_one(&wire(printed), version);
            assert_eq!(frame.command, *command, "{printed}");
            let expected: Vec<_> = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(pairs(&frame), expected, "{printed}");
            assert_eq!(&frame.body[..], body.as_bytes(), "{printed}");
        }
    }
}

#[test]
fn every_spec_example_parses_with_crlf_line_endings() {
    for (printed, command, headers, _) in SPEC_EXAMPLES {
        // Only the head's line endings change; the body stays as it is.
        let (head, body) = printed.split_once("\n\n").expect("blank line");
        let crlf = format!("{}\r\n\r\n{}", head.replace('\n', "\r\n"), body);
        let frame = parse_one(&wire(&crlf), Version::V1_2);
        assert_eq!(frame.command, *command);
        assert_eq!(frame.headers.len(), headers.len());
    }
}

#[test]
fn repeated_header_lookup_returns_the_first() {
    let frame = parse_one(b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0", Version::V1_2);
    assert_eq!(frame.get("foo"), Some("World"));
}

#[test]
fn content_length_body_may_contain_nul() {
    let frame = parse_one(
        b"SEND\ndestination:/q\ncontent-length:5\n\na\0b\0c\0",
        Version::V1_2,
    );
    assert_eq!(&frame.body[..], b"a\0b\0c");
}

#[test]
fn only_the_first_content_length_counts() {
    let frame = parse_one(
        b"SEND\ncontent-length:2\ncontent-length:9\n\nab\0",
        Version::V1_2,
    );
    assert_eq!(&frame.body[..], b"ab");
}

#[test]
fn malformed_frames_are_refused_with_a_reason() {
    let cases: &[(&[u8], ParseError)] = &[
        (b"send\n\n\0", ParseError::UnknownCommand("send".into())),
        (b"HELLO\n\n\0", ParseError::UnknownCommand("HELLO".into())),
        (
            b"GET /ws HTTP/1.1\r\n",
            ParseError::UnknownCommand("GET /ws HTTP/1.1\r\n".into()),
        ),
        (
            b"SEND\nnocolon\n\n\0",
            ParseError::MissingColon {
                line: "nocolon".into(),
            },
        ),
        (b"SEND\n:value\n\n\0", ParseError::EmptyHeaderName),
        (
            b"SEND\ncontent-length:abc\n\n\0",
            ParseError::InvalidContentLength("abc".into()),
        ),
        (
            b"SEND\ncontent-length:-1\n\n\0",
            ParseError::InvalidContentLength("-1".into()),
        ),
        (
            b"SEND\ncontent-length:2\n\nabc\0",
            ParseError::MissingNul { content_length: 2 },
        ),
        (b"SEND\n\rX", ParseError::BareCarriageReturn),
        (b"\rSEND", ParseError::BareCarriageReturn),
        (b"SEND\na:\xff\xfe\n\n\0", ParseError::InvalidUtf8),
        (b"SEND\n\xc3\x28:v\n\n\0", ParseError::InvalidUtf8),
    ];
    for (wire, expected) in cases {
        let error = parse_error(wire, Version::V1_2, &Limits::default());
        assert_eq!(&error, expected, "{}", String::from_utf8_lossy(wire));
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn error_messages_read_well() {
    let error = parse_error(b"SEND\nnocolon\n\n\0", Version::V1_2, &Limits::default());
    assert_eq!(
        error.to_string(),
        "header line \"nocolon\" has no ':' between name and value"
    );
    let error = parse_error(b"SEND\na:b\\tc\n\n\0", Version::V1_2, &Limits::default());
    assert_eq!(
        error.to_string(),
        "header \"a\" has an invalid escape sequence \"\\t\" (STOMP 1.2)"
    );
}
