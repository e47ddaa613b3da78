//! How the session reads a client frame's headers where several frames
//! share the rule: a missing header is an ERROR that names it, and ACK and
//! NACK name their message by each version's own header.

use stomp_parser::{Frame, Version};

use super::{SessionError, StompCommand};

pub fn missing(command: StompCommand, header: &'static str) -> SessionError {
    SessionError::MissingHeader { command, header }
}

pub fn required<'a>(frame: &'a Frame, header: &'static str) -> Result<&'a str, SessionError> {
    frame
        .get(header)
        .ok_or_else(|| missing(frame.command, header))
}

/// The message an ACK or NACK names: `id` in 1.2, `message-id` before,
/// each version's header only, as RabbitMQ's STOMP plugin reads them.
pub fn ack_id(frame: &Frame, version: Version) -> Result<&str, SessionError> {
    let header = match version {
        Version::V1_2 => "id",
        Version::V1_0 | Version::V1_1 => "message-id",
    };
    required(frame, header)
}
