//! The send time a message carries in its body, so that a receiver can tell
//! its latency without a header the server might drop or rename.
//!
//! The body starts with the nanoseconds since the run began as
//! [`DIGITS`] decimal digits, then `x` up to the body size asked for. Sender
//! and receivers are tasks of this one process and share one clock.

use std::time::Instant;

/// Enough digits for 3 000 years of nanoseconds: a stamp never overflows.
pub const DIGITS: usize = 20;

/// The clock a run's messages are stamped with.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    started: Instant,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock {
            started: Instant::now(),
        }
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A body of `size` bytes (at least [`DIGITS`]) stamped with now.
    pub fn stamped_body(&self, size: usize) -> String {
        encode(self.now(), size)
    }
}

/// A body of `size` bytes (at least [`DIGITS`]) that starts with `nanos`.
pub fn encode(nanos: u64, size: usize) -> String {
    let mut body = format!("{nanos:0width$}", width = DIGITS);
    let padding = size.saturating_sub(body.len());
    body.extend(std::iter::repeat_n('x', padding));
    body
}

/// The stamp at the start of `body`, if it has one.
pub fn decode(body: &[u8]) -> Option<u64> {
    let digits = body.get(..DIGITS)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |sum, digit| {
        sum.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_round_trip_and_fills_the_body() {
        let body = encode(1_234_567_890, 100);
        assert_eq!(body.len(), 100);
        assert!(body.ends_with('x'));
        assert_eq!(decode(body.as_bytes()), Some(1_234_567_890));
    }

    #[test]
    fn a_body_smaller_than_the_stamp_still_holds_it_whole() {
        let body = encode(u64::MAX, 4);
        assert_eq!(body.len(), DIGITS);
        assert_eq!(decode(body.as_bytes()), Some(u64::MAX));
    }

    #[test]
    fn a_body_without_a_stamp_has_no_latency() {
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(b"0000000000000000000x0000"), None);
        assert_eq!(decode(b"99999999999999999999"), None, "past u64::MAX");
    }
}
