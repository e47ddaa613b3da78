//! Errors are told twice: in full to the log, as the error and every
//! source below it (the lapin or redis error that caused it), and briefly
//! to the client, as a short text that stays the same whatever the cause,
//! so that nothing internal (addresses, server replies, queue arguments)
//! needs to reach a client.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The error below one of the relay's own, kept for the log. Shared, so
/// that the relay's errors stay `Clone`.
pub type ErrorSource = Arc<dyn Error + Send + Sync>;

/// Keeps `error` as the source of one of the relay's errors.
pub fn source_of(error: impl Error + Send + Sync + 'static) -> Option<ErrorSource> {
    Some(Arc::new(error))
}

/// The short, stable text of an error that a client may be shown.
pub trait ClientText {
    fn client_text(&self) -> Cow<'_, str>;

    /// The ERROR frame's `message` for it, where it has one of its own (as
    /// RabbitMQ's `not_found`); otherwise the failing service names it.
    fn client_summary(&self) -> Option<&'static str> {
        None
    }
}

/// Displays an error and each of its sources, `: `-separated, for the log.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the registry could not read")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_tells_every_cause() {
        let error = Outer(std::io::Error::other("connection reset"));
        assert_eq!(
            Chain(&error).to_string(),
            "the registry could not read: connection reset"
        );
    }
}
