//! Frames to bytes: the exact inverse of the parser.

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;

use crate::error::EncodeError;
use crate::escape::Escaping;
use crate::frame::Frame;
use crate::version::Version;

/// Appends `frame` to `dst` as `version` writes it: command, escaped headers
/// in order, a blank line, the body and a NUL.
///
/// Headers are written as given; the encoder adds none. So that the parser
/// reads back exactly this frame, it refuses a body with a NUL but no
/// `content-length`, a `content-length` that disagrees with the body, and a
/// header the version's escaping cannot express. On error `dst` is unchanged.
pub fn encode_frame(
    frame: &Frame,
    version: Version,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let escaping = Escaping::for_frame(version, frame.command);
    check(frame, version, escaping)?;

    let headers_len = frame.headers.text_len() + 2 * frame.headers.len();
    dst.reserve(frame.command.as_str().len() + headers_len + frame.body.len() + 3);
    dst.put_slice(frame.command.as_str().as_bytes());
    dst.put_u8(b'\n');
    for (name, value) in frame.headers.iter() {
        escaping.escape_into(name, dst);
        dst.put_u8(b':');
        escaping.escape_into(value, dst);
        dst.put_u8(b'\n');
    }
    dst.put_u8(b'\n');
    dst.put_slice(&frame.body);
    dst.put_u8(0);
    Ok(())
}

/// [`encode_frame`] into a buffer of its own.
pub fn encoded_frame(frame: &Frame, version: Version) -> Result<Bytes, EncodeError> {
    let mut dst = BytesMut::new();
    encode_frame(frame, version, &mut dst)?;
    Ok(dst.freeze())
}

fn check(frame: &Frame, version: Version, escaping: Escaping) -> Result<(), EncodeError> {
    for (name, value) in frame.headers.iter() {
        let problem = escaping
            .name_problem(name)
            .or_else(|| escaping.value_problem(value));
        if let Some(reason) = problem {
            return Err(EncodeError::UnrepresentableHeader {
                command: frame.command,
                version,
                name: name.to_owned(),
                reason,
            });
        }
    }
    match frame.headers.get("content-length") {
        Some(declared) if declared.parse::<usize>() != Ok(frame.body.len()) => {
            Err(EncodeError::ContentLengthMismatch {
                header: declared.to_owned(),
                actual: frame.body.len(),
            })
        }
        None if memchr(0, &frame.body).is_some() => Err(EncodeError::NulWithoutContentLength),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Command;

    fn text(frame: &Frame, version: Version) -> String {
        String::from_utf8(encoded_frame(frame, version).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn writes_headers_in_order_then_body_and_nul() {
        let frame = Frame::new(Command::Send)
            .header("destination", "/queue/a")
            .header("receipt", "1")
            .body("hi");
        assert_eq!(
            text(&frame, Version::V1_2),
            "SEND\ndestination:/queue/a\nreceipt:1\n\nhi\0"
        );
    }

    #[test]
    fn escapes_by_version_but_never_in_connect() {
        let message = Frame::new(Command::Message).header("a:b", "x\\y");
        assert_eq!(text(&message, Version::V1_2), "MESSAGE\na\\cb:x\\\\y\n\n\0");
        assert_eq!(
            text(&message.clone(), Version::V1_1),
            "MESSAGE\na\\cb:x\\\\y\n\n\0"
        );
        let unescaped = Frame::new(Command::Message).header("a", "x\\y:z");
        assert_eq!(text(&unescaped, Version::V1_0), "MESSAGE\na:x\\y:z\n\n\0");
        let connected = Frame::new(Command::Connected).header("server", "relay:1\\2");
        assert_eq!(
            text(&connected, Version::V1_2),
            "CONNECTED\nserver:relay:1\\2\n\n\0"
        );
    }

    #[test]
    fn refuses_what_the_parser_would_read_differently() {
        let nul_body = Frame::new(Command::Send).body(&b"a\0b"[..]);
        assert_eq!(
            encoded_frame(&nul_body, Version::V1_2),
            Err(EncodeError::NulWithoutContentLength)
        );
        let with_length = nul_body.header("content-length", "3");
        assert!(encoded_frame(&with_length, Version::V1_2).is_ok());
        let wrong_length = Frame::new(Command::Send)
            .header("content-length", "5")
            .body("abc");
        assert!(matches!(
            encoded_frame(&wrong_length, Version::V1_2),
            Err(EncodeError::ContentLengthMismatch { actual: 3, .. })
        ));
        let newline = Frame::new(Command::Connect).header("login", "a\nb");
        let error = encoded_frame(&newline, Version::V1_2).unwrap_err();
        assert!(error.to_string().contains("login"), "{error}");
    }

    #[test]
    fn leaves_the_buffer_alone_on_error() {
        let mut dst = BytesMut::from(&b"before"[..]);
        let frame = Frame::new(Command::Send).header("", "v");
        assert!(encode_frame(&frame, Version::V1_2, &mut dst).is_err());
        assert_eq!(&dst[..], b"before");
    }
}
