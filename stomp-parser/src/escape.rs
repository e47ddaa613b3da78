//! Header escaping, which differs by version and by command.
//!
//! STOMP 1.0 has no escaping at all. 1.1 escapes LF, `:` and `\` as `\n`, `\c`
//! and `\\`; 1.2 adds CR as `\r`. CONNECT, STOMP and CONNECTED are never
//! escaped, so that they read the same whatever version is agreed. Any other
//! backslash sequence is a fatal error from 1.1 on.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use memchr::memchr;

use crate::error::ParseError;
use crate::frame::Command;
use crate::version::Version;

/// Why some STOMP version could not carry this header on a MESSAGE, if one
/// could not: 1.0, which escapes nothing, is the strictest. A relay checks
/// a message's headers with this where the message enters, rather than
/// find out when writing it to a 1.0 subscriber.
pub fn portable_header_problem(name: &str, value: &str) -> Option<&'static str> {
    if name.contains('\0') || value.contains('\0') {
        return Some("a header cannot hold NUL");
    }
    Escaping::None
        .name_problem(name)
        .or_else(|| Escaping::None.value_problem(value))
}

/// Which escaping rule applies to the headers of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// Bytes are taken as they are (STOMP 1.0, and CONNECT/STOMP/CONNECTED).
    None,
    /// `\n`, `\c`, `\\` (STOMP 1.1).
    V11,
    /// `\r`, `\n`, `\c`, `\\` (STOMP 1.2).
    V12,
}

impl Escaping {
    pub fn for_frame(version: Version, command: Command) -> Escaping {
        if !command.escapes_headers() {
            return Escaping::None;
        }
        match version {
            Version::V1_0 => Escaping::None,
            Version::V1_1 => Escaping::V11,
            Version::V1_2 => Escaping::V12,
        }
    }

    fn version(self) -> Version {
        match self {
            Escaping::None => Version::V1_0,
            Escaping::V11 => Version::V1_1,
            Escaping::V12 => Version::V1_2,
        }
    }

    /// Resolves the escape sequences of a header name or value. Borrows when
    /// there is nothing to resolve, which is nearly always.
    ///
    /// `header` names the header in the error, for the client's benefit.
    pub fn unescape<'a>(self, raw: &'a str, header: &str) -> Result<Cow<'a, str>, ParseError> {
        if self == Escaping::None || memchr(b'\\', raw.as_bytes()).is_none() {
            return Ok(Cow::Borrowed(raw));
        }
        let mut decoded = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                decoded.push(c);
                continue;
            }
            let resolved = match chars.next() {
                Some('n') => '\n',
                Some('c') => ':',
                Some('\\') => '\\',
                Some('r') if self == Escaping::V12 => '\r',
                other => {
                    return Err(ParseError::InvalidEscape {
                        name: header.to_owned(),
                        sequence: other.map(String::from).unwrap_or_default(),
                        version: self.version(),
                    });
                }
            };
            decoded.push(resolved);
        }
        Ok(Cow::Owned(decoded))
    }

    /// Why this header name cannot be written under this rule, if it cannot.
    pub fn name_problem(self, name: &str) -> Option<&'static str> {
        if name.is_empty() {
            return Some("a header name cannot be empty");
        }
        match self {
            Escaping::None if name.contains([':', '\n']) => {
                Some("':' and LF cannot be escaped in a header name here")
            }
            // A line that starts with CR must be the blank line's CRLF.
            Escaping::None | Escaping::V11 if name.starts_with('\r') => {
                Some("a leading CR cannot be escaped here")
            }
            _ => None,
        }
    }

    /// Why this header value cannot be written under this rule, if it cannot.
    ///
    /// A raw CR is kept by the parser except right before the LF that ends the
    /// line, where it belongs to a CRLF line ending.
    pub fn value_problem(self, value: &str) -> Option<&'static str> {
        match self {
            Escaping::None if value.contains('\n') => Some("LF cannot be escaped here"),
            Escaping::None | Escaping::V11 if value.ends_with('\r') => {
                Some("a trailing CR cannot be escaped here")
            }
            _ => None,
        }
    }

    /// Writes a header name or value with this rule's escapes. The caller has
    /// checked that it is representable.
    pub fn escape_into(self, text: &str, dst: &mut BytesMut) {
        let needs_escape = |b: u8| match self {
            Escaping::None => false,
            Escaping::V11 => matches!(b, b'\n' | b':' | b'\\'),
            Escaping::V12 => matches!(b, b'\r' | b'\n' | b':' | b'\\'),
        };
        let bytes = text.as_bytes();
        if !bytes.iter().any(|&b| needs_escape(b)) {
            dst.put_slice(bytes);
            return;
        }
        for &b in bytes {
            if !needs_escape(b) {
                dst.put_u8(b);
                continue;
            }
            dst.put_slice(match b {
                b'\r' => b"\\r",
                b'\n' => b"\\n",
                b':' => b"\\c",
                _ => b"\\\\",
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(escaping: Escaping, text: &str) -> String {
        let mut dst = BytesMut::new();
        escaping.escape_into(text, &mut dst);
        String::from_utf8(dst.to_vec()).unwrap()
    }

    #[test]
    fn escaping_depends_on_version_and_command() {
        assert_eq!(
            Escaping::for_frame(Version::V1_2, Command::Send),
            Escaping::V12
        );
        assert_eq!(
            Escaping::for_frame(Version::V1_1, Command::Message),
            Escaping::V11
        );
        assert_eq!(
            Escaping::for_frame(Version::V1_0, Command::Send),
            Escaping::None
        );
        for command in [Command::Connect, Command::Stomp, Command::Connected] {
            assert_eq!(Escaping::for_frame(Version::V1_2, command), Escaping::None);
        }
    }

    #[test]
    fn v12_resolves_all_four_escapes() {
        let decoded = Escaping::V12.unescape(r"a\r\n\c\\b", "h").unwrap();
        assert_eq!(decoded, "a\r\n:\\b");
        assert!(matches!(
            Escaping::V12.unescape("plain", "h").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn v11_has_no_carriage_return_escape() {
        let error = Escaping::V11.unescape(r"a\rb", "h").unwrap_err();
        assert_eq!(
            error,
            ParseError::InvalidEscape {
                name: "h".into(),
                sequence: "r".into(),
                version: Version::V1_1
            }
        );
        assert_eq!(Escaping::V11.unescape(r"\n\c\\", "h").unwrap(), "\n:\\");
    }

    #[test]
    fn undefined_and_dangling_escapes_are_errors() {
        assert!(Escaping::V12.unescape(r"tab\there", "h").is_err());
        let dangling = Escaping::V12.unescape("end\\", "h").unwrap_err();
        assert!(
            dangling.to_string().contains("invalid escape"),
            "{dangling}"
        );
    }

    #[test]
    fn without_escaping_backslashes_stay() {
        assert_eq!(
            Escaping::None.unescape(r"c:\dir\n", "h").unwrap(),
            r"c:\dir\n"
        );
    }

    #[test]
    fn escape_is_the_inverse_of_unescape() {
        let text = "a:b\\c\nd\re";
        for escaping in [Escaping::V11, Escaping::V12] {
            let wire = escaped(escaping, text);
            assert_eq!(escaping.unescape(&wire, "h").unwrap(), text);
        }
        assert_eq!(escaped(Escaping::V12, text), r"a\cb\\c\nd\re");
        assert_eq!(escaped(Escaping::V11, text), "a\\cb\\\\c\\nd\re");
    }

    #[test]
    fn unrepresentable_headers_are_named() {
        assert!(Escaping::None.value_problem("a\nb").is_some());
        assert!(Escaping::None.name_problem("a:b").is_some());
        assert!(Escaping::V11.value_problem("ends\r").is_some());
        assert!(Escaping::V11.value_problem("mid\rdle").is_none());
        assert!(Escaping::V12.value_problem("ends\r").is_none());
        assert!(Escaping::V12.name_problem("").is_some());
        assert!(Escaping::V11.name_problem("\rname").is_some());
        assert!(Escaping::V12.name_problem("\rname").is_none());
    }
}
