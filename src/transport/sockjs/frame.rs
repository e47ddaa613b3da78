//! SockJS frames: `o` (open), `h` (heartbeat), `a[...]` (messages) and
//! `c[code,"reason"]` (close), and the JSON strings inside them.
//!
//! SockJS escapes more than JSON requires: characters that browsers or
//! proxies mangle on some transports (control characters, the U+200C..,
//! U+2028.., U+2060.. and U+FFF0.. ranges) go as `\uXXXX`, so that any
//! string survives every transport unchanged.

/// The frame that opens a session.
pub const OPEN: &str = "o";
/// The frame sent when nothing else was for a while.
pub const HEARTBEAT: &str = "h";

/// Why a session closed, as its close frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

/// The server (or its application) ended the session.
pub const GO_AWAY: CloseReason = CloseReason {
    code: 3000,
    reason: "Go away!",
};
/// A second receiving connection for a session that has one.
pub const ANOTHER_CONNECTION: CloseReason = CloseReason {
    code: 2010,
    reason: "Another connection still open",
};
/// The client sent a message over the size limit (as WebSocket's 1009).
pub const MESSAGE_TOO_BIG: CloseReason = CloseReason {
    code: 1009,
    reason: "Message too big",
};
/// The receiving connection went away before its response was complete.
pub const INTERRUPTED: CloseReason = CloseReason {
    code: 1002,
    reason: "Connection interrupted",
};

/// `c[code,"reason"]`.
pub fn close(reason: &CloseReason) -> String {
    let mut frame = format!("c[{},", reason.code);
    push_json_string(&mut frame, reason.reason);
    frame.push(']');
    frame
}

/// `a["...","..."]`.
pub fn messages<'a>(messages: impl IntoIterator<Item = &'a str>) -> String {
    let mut frame = String::from("a[");
    for (n, message) in messages.into_iter().enumerate() {
        if n > 0 {
            frame.push(',');
        }
        push_json_string(&mut frame, message);
    }
    frame.push(']');
    frame
}

/// Writes `text` as a JSON string with SockJS's escaping.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn must_escape(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00..=0x1f | 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff
    )
}

/// Why a client's payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("Payload expected.")]
    Empty,
    #[error("Broken JSON encoding.")]
    BrokenJson,
}

/// The messages a client sent: a JSON array of strings (or, over
/// WebSocket, a single JSON string).
pub fn decode_messages(payload: &[u8]) -> Result<Vec<String>, PayloadError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(text) => Ok(text),
                _ => Err(PayloadError::BrokenJson),
            })
            .collect(),
        Ok(serde_json::Value::String(text)) => Ok(vec![text]),
        _ => Err(PayloadError::BrokenJson),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_as_the_protocol_writes_them() {
        assert_eq!(close(&GO_AWAY), r#"c[3000,"Go away!"]"#);
        assert_eq!(messages(["a", "b\"c"]), r#"a["a","b\"c"]"#);
        assert_eq!(messages(["x\u{0}y\n\u{1}"]), r#"a["x\u0000y\n\u0001"]"#);
        assert_eq!(messages(["\u{2028}\u{ffff}é"]), r#"a["\u2028\uffffé"]"#);
    }

    #[test]
    fn client_payloads_are_arrays_of_strings() {
        assert_eq!(
            decode_messages(br#"["a","b"]"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(decode_messages(br#""a""#), Ok(vec!["a".into()]));
        assert_eq!(decode_messages(b""), Err(PayloadError::Empty));
        assert_eq!(decode_messages(br#"["a"#), Err(PayloadError::BrokenJson));
        assert_eq!(decode_messages(b"[1]"), Err(PayloadError::BrokenJson));
    }
}
