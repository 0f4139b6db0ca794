//! When to try a failed request again, and after how long: exponential backoff with jitter,
//! bounded by a retry count and a deadline. Pure functions of (error, attempt, elapsed time,
//! jitter), so the policy is tested without clocks or brokers.

use std::time::Duration;

use super::error::ClientError;

/// Exponential backoff: `initial * 2^attempt`, capped at `max`, then scaled by a jitter
/// factor in `[0.8, 1.2)` so that many clients do not retry in lockstep (as Kafka's
/// `retry.backoff.ms` / `retry.backoff.max.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt + 1`; `jitter` is uniform in `[0, 1)`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.min(31);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        base.mul_f64(factor).min(self.max.max(self.initial))
    }
}

/// What to do about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Report the error.
    GiveUp,
}

/// Retries retriable errors, at most `max_retries` times and never past `deadline` measured
/// from the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    pub max_retries: u32,
    pub deadline: Duration,
}

impl RetryPolicy {
    /// `attempt` counts the failures so far, starting at 0 for the first.
    pub fn decide(
        &self,
        err: &ClientError,
        attempt: u32,
        elapsed: Duration,
        jitter: f64,
    ) -> Decision {
        if !err.is_retriable() || attempt >= self.max_retries {
            return Decision::GiveUp;
        }
        let wait = self.backoff.delay(attempt, jitter);
        if elapsed.saturating_add(wait) > self.deadline {
            return Decision::GiveUp;
        }
        Decision::Retry(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::error::KafkaApiError;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                initial: 100 * MS,
                max: 1000 * MS,
            },
            max_retries: 5,
            deadline: 3000 * MS,
        }
    }

    fn kafka(code: i16) -> ClientError {
        ClientError::Kafka(KafkaApiError::new(code, None, ""))
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let b = policy().backoff;
        let mid = 0.5; // factor 1.0
        assert_eq!(b.delay(0, mid), 100 * MS);
        assert_eq!(b.delay(1, mid), 200 * MS);
        assert_eq!(b.delay(3, mid), 800 * MS);
        assert_eq!(b.delay(4, mid), 1000 * MS);
        assert_eq!(b.delay(40, mid), 1000 * MS);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_never_exceeds_max() {
        let b = policy().backoff;
        assert_eq!(b.delay(0, 0.0), 80 * MS);
        assert!(b.delay(0, 0.999) < 120 * MS);
        assert_eq!(b.delay(10, 0.999), 1000 * MS);
    }

    #[test]
    fn not_leader_and_leader_not_available_and_network_errors_are_retried() {
        let p = policy();
        for e in [
            kafka(6),
            kafka(5),
            ClientError::Disconnected {
                peer: "b".into(),
                reason: "reset".into(),
            },
        ] {
            assert!(
                matches!(p.decide(&e, 0, Duration::ZERO, 0.5), Decision::Retry(_)),
                "{e}"
            );
        }
    }

    #[test]
    fn non_retriable_errors_give_up_at_once() {
        let p = policy();
        assert_eq!(
            p.decide(&kafka(36), 0, Duration::ZERO, 0.5),
            Decision::GiveUp
        );
        assert_eq!(
            p.decide(
                &ClientError::UnknownTopic("t".into()),
                0,
                Duration::ZERO,
                0.5
            ),
            Decision::GiveUp
        );
    }

    #[test]
    fn retries_stop_at_the_count_and_at_the_deadline() {
        let p = policy();
        assert_eq!(
            p.decide(&kafka(6), 5, Duration::ZERO, 0.5),
            Decision::GiveUp
        );
        assert_eq!(p.decide(&kafka(6), 1, 2900 * MS, 0.5), Decision::GiveUp);
        assert_eq!(
            p.decide(&kafka(6), 1, 2700 * MS, 0.5),
            Decision::Retry(200 * MS)
        );
    }
}
