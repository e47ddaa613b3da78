//! Bounds the caller sets on what a peer may send.

/// How much a peer may send in one frame. The parser checks each bound as soon
/// as it can be known (a `content-length` header is checked when it is read, a
/// line without its end when the buffer passes the bound), so an oversize
/// frame is refused before it is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of a whole frame: command, headers, body and the NUL.
    pub max_frame_size: usize,
    /// Number of header lines in one frame.
    pub max_headers: usize,
    /// Bytes of one header line, without its line ending.
    pub max_header_line: usize,
    /// Bytes of a body.
    pub max_body: usize,
}

impl Limits {
    /// No bound at all: for peers that are trusted, such as the relay itself
    /// seen from a test client.
    pub const UNLIMITED: Limits = Limits {
        max_frame_size: usize::MAX,
        max_headers: usize::MAX,
        max_header_line: usize::MAX,
        max_body: usize::MAX,
    };
}

impl Default for Limits {
    /// Generous for browser messaging (RabbitMQ's STOMP plugin and Spring
    /// allow 64 KiB to 4 MiB messages), small enough that a thousand hostile
    /// clients cannot exhaust a node.
    fn default() -> Limits {
        Limits {
            max_frame_size: 1024 * 1024 + 64 * 1024,
            max_headers: 64,
            max_header_line: 8 * 1024,
            max_body: 1024 * 1024,
        }
    }
}
