//! When and how long to wait before retrying a failed call: exponential backoff with jitter,
//! capped, or exactly what the server asked for in `Retry-After`.

use std::time::Duration;

/// How failed calls are retried. Connection failures, `429` and `5xx` are retried; other
/// statuses are not. All retries happen inside the call's overall deadline: a pause that would
/// end after the deadline is not taken, and the last error is returned instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// The pause before the first retry; it doubles for each further retry.
    pub backoff_base: Duration,
    /// The longest pause between attempts (before jitter).
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    #[must_use]
    pub const fn never() -> Self {
        Self {
            max_retries: 0,
            backoff_base: Duration::ZERO,
            backoff_max: Duration::ZERO,
        }
    }

    /// The pause before retry number `retry` (0 for the first): `base · 2^retry`, capped at
    /// `backoff_max`, then "equal jitter" — uniformly random in `[d/2, d]`, so clients that
    /// failed together do not come back together, yet every pause is at least half the nominal.
    #[must_use]
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2_u32.saturating_pow(retry);
        let nominal = self
            .backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max);
        let half = nominal / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// `Retry-After` in delay-seconds form. The HTTP-date form is rare from inference servers and
/// falls back to the computed backoff.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stays_between_half_and_full_nominal() {
        let policy = RetryPolicy {
            max_retries: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
        };
        for _ in 0..200 {
            for (retry, nominal) in [(0, 100), (1, 200), (2, 350), (3, 350), (30, 350)] {
                let pause = policy.backoff(retry);
                let nominal = Duration::from_millis(nominal);
                assert!(
                    pause >= nominal / 2 && pause <= nominal,
                    "{retry}: {pause:?}"
                );
            }
        }
    }

    #[test]
    fn retry_after_seconds_are_understood_and_dates_are_not() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
