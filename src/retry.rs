//! How long to wait before trying RabbitMQ or Redis again: at start, when a
//! node comes up before them, and after a connection is lost.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::Chain;

/// The first wait, and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// The waits between attempts, for ever: doubling from half a second to
/// thirty, each lengthened by up to as much again at random, so that nodes
/// that lost a service together do not all knock on it at once.
pub fn backoff() -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY)
        .with_max_delay(LONGEST_RETRY)
        .with_jitter()
        .without_max_times()
        .build()
}

/// What `attempt` gives, once it gives it, with [`backoff`]'s waits
/// between attempts, each failure logged: a node started before RabbitMQ
/// or Redis waits for them rather than exit, and one that lost RabbitMQ
/// connects again.
pub async fn until_reachable<T, E, F, Fut>(service: &'static str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let mut waits = backoff();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                let wait = waits.next().unwrap_or(LONGEST_RETRY);
                tracing::warn!(
                    error = %Chain(&error),
                    retry_in = ?wait,
                    "waiting for {service}: not reachable yet"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_a_cap_and_never_end() {
        let waits: Vec<Duration> = backoff().take(20).collect();
        assert!(waits[0] >= FIRST_RETRY && waits[0] <= FIRST_RETRY * 2);
        assert!(waits.iter().all(|wait| *wait <= LONGEST_RETRY * 2));
        assert!(waits[19] >= LONGEST_RETRY);
    }
}
