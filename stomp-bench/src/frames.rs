//! Just enough STOMP reading for a benchmark client: split what arrives at
//! the NUL that ends each frame, and look into a frame only for what the
//! run needs (its command, its body's stamp, an `ack` header). The client
//! shares the machine's cores with the servers it measures, so it parses
//! no more than that; the bodies it sends carry no NUL, which makes the
//! NUL a safe frame boundary.

/// Splits incoming bytes into frames, keeping a frame that a WebSocket
/// message ended mid-way until the rest comes.
#[derive(Debug, Default)]
pub struct FrameScanner {
    partial: Vec<u8>,
}

impl FrameScanner {
    /// Calls `each` with every frame (without its NUL) that `data`
    /// completes, and returns how many there were.
    pub fn push(&mut self, data: &[u8], mut each: impl FnMut(&[u8])) -> usize {
        let mut rest = data;
        let mut frames = 0;
        if !self.partial.is_empty() {
            let Some(end) = rest.iter().position(|&byte| byte == 0) else {
                self.partial.extend_from_slice(rest);
                return 0;
            };
            self.partial.extend_from_slice(&rest[..end]);
            each(trim_heart_beats(&self.partial));
            self.partial.clear();
            frames += 1;
            rest = &rest[end + 1..];
        }
        while let Some(end) = rest.iter().position(|&byte| byte == 0) {
            each(trim_heart_beats(&rest[..end]));
            frames += 1;
            rest = &rest[end + 1..];
        }
        // What is left is either the start of a frame or heart-beat EOLs
        // between frames, which are no frame at all.
        if !trim_heart_beats(rest).is_empty() {
            self.partial.extend_from_slice(rest);
        }
        frames
    }
}

/// A frame without the EOLs (heart-beats) that may come before it.
fn trim_heart_beats(frame: &[u8]) -> &[u8] {
    let start = frame
        .iter()
        .position(|&byte| byte != b'\n' && byte != b'\r')
        .unwrap_or(frame.len());
    &frame[start..]
}

/// The frame's command line (`MESSAGE`, `RECEIPT`, `ERROR`, ...).
pub fn command(frame: &[u8]) -> &[u8] {
    let end = frame
        .iter()
        .position(|&byte| byte == b'\n')
        .unwrap_or(frame.len());
    frame[..end].strip_suffix(b"\r").unwrap_or(&frame[..end])
}

/// Where the headers end and the body begins (after the blank line).
fn body_start(frame: &[u8]) -> Option<usize> {
    frame.windows(2).enumerate().find_map(|(at, pair)| {
        if pair == b"\n\n" {
            Some(at + 2)
        } else if pair == b"\n\r" && frame.get(at + 2) == Some(&b'\n') {
            Some(at + 3)
        } else {
            None
        }
    })
}

/// The frame's body (everything after the blank line).
pub fn body(frame: &[u8]) -> &[u8] {
    body_start(frame).map_or(&[][..], |start| &frame[start..])
}

/// The value of header `name`, as sent (the benchmark's header values need
/// no unescaping: ack ids and message ids are plain).
pub fn header<'f>(frame: &'f [u8], name: &str) -> Option<&'f str> {
    let headers = &frame[..body_start(frame).unwrap_or(frame.len())];
    headers
        .split(|&byte| byte == b'\n')
        .skip(1)
        .find_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let value = line.strip_prefix(name.as_bytes())?.strip_prefix(b":")?;
            std::str::from_utf8(value).ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(scanner: &mut FrameScanner, data: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        scanner.push(data, |frame| frames.push(frame.to_vec()));
        frames
    }

    #[test]
    fn one_message_may_hold_several_frames() {
        let mut scanner = FrameScanner::default();
        let frames = frames_of(&mut scanner, b"MESSAGE\n\na\0\nMESSAGE\n\nb\0\n");
        assert_eq!(frames, [b"MESSAGE\n\na".to_vec(), b"MESSAGE\n\nb".to_vec()]);
    }

    #[test]
    fn a_frame_split_between_messages_is_joined() {
        let mut scanner = FrameScanner::default();
        assert!(frames_of(&mut scanner, b"MESS").is_empty());
        assert!(frames_of(&mut scanner, b"AGE\n\nbo").is_empty());
        assert_eq!(
            frames_of(&mut scanner, b"dy\0"),
            [b"MESSAGE\n\nbody".to_vec()]
        );
    }

    #[test]
    fn command_body_and_headers_of_a_frame() {
        let frame = b"MESSAGE\ndestination:/topic/a\nack:42\n\n0001xx";
        assert_eq!(command(frame), b"MESSAGE");
        assert_eq!(body(frame), b"0001xx");
        assert_eq!(header(frame, "ack"), Some("42"));
        assert_eq!(header(frame, "destination"), Some("/topic/a"));
        assert_eq!(header(frame, "message-id"), None);
    }

    #[test]
    fn crlf_frames_are_read_alike() {
        let frame = b"RECEIPT\r\nreceipt-id:r\r\n\r\nbody";
        assert_eq!(command(frame), b"RECEIPT");
        assert_eq!(header(frame, "receipt-id"), Some("r"));
        assert_eq!(body(frame), b"body");
    }

    #[test]
    fn a_header_in_the_body_is_not_a_header() {
        assert_eq!(header(b"MESSAGE\n\nack:1", "ack"), None);
    }
}
