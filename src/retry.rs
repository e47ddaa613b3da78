//! How long to wait before trying RabbitMQ or Redis again: at start, when a
//! node comes up before them, and after a connection is lost.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

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
    loop {
        // Without a deadline it gives up never: the loop only satisfies
        // the types.
        if let Ok(value) = retrying(service, None, &mut attempt).await {
            return value;
        }
    }
}

/// [`until_reachable`] for up to `patience`, then the last failure: for
/// work worth finishing late but not for ever.
pub async fn within<T, E, F, Fut>(
    service: &'static str,
    patience: Duration,
    attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    retrying(service, Some(Instant::now() + patience), attempt).await
}

async fn retrying<T, E, F, Fut>(
    service: &'static str,
    deadline: Option<Instant>,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let mut waits = backoff();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                let wait = waits.next().unwrap_or(LONGEST_RETRY);
                if deadline.is_some_and(|deadline| Instant::now() + wait > deadline) {
                    return Err(error);
                }
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

    #[derive(Debug, thiserror::Error)]
    #[error("down")]
    struct Down;

    #[tokio::test(start_paused = true)]
    async fn within_gives_up_after_its_patience_and_succeeds_before() {
        let started = Instant::now();
        let never = within("a service", Duration::from_secs(10), || async {
            Err::<(), _>(Down)
        })
        .await;
        assert!(never.is_err());
        assert!(started.elapsed() <= Duration::from_secs(10));
        let mut failures = 2;
        let soon = within("a service", Duration::from_secs(10), || {
            failures -= 1;
            let result = if failures < 0 { Ok(7) } else { Err(Down) };
            async move { result }
        })
        .await;
        assert_eq!(soon.ok(), Some(7));
    }

    #[test]
    fn waits_grow_to_a_cap_and_never_end() {
        let waits: Vec<Duration> = backoff().take(20).collect();
        assert!(waits[0] >= FIRST_RETRY && waits[0] <= FIRST_RETRY * 2);
        assert!(waits.iter().all(|wait| *wait <= LONGEST_RETRY * 2));
        assert!(waits[19] >= LONGEST_RETRY);
    }
}
