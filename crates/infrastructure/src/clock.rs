//! The system clock adapter: UTC, whole milliseconds, never going backwards within a process
//! (memory events are ordered by the time they were stamped, so a clock step back must not
//! reorder them).

use std::sync::Mutex;

use butler_domain::ports::Clock;
use butler_domain::timestamp::truncate_to_millis;
use time::OffsetDateTime;

/// The machine's clock, clamped to be monotonic.
#[derive(Debug)]
pub struct SystemClock {
    last: Mutex<OffsetDateTime>,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            last: Mutex::new(OffsetDateTime::UNIX_EPOCH),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = truncate_to_millis(OffsetDateTime::now_utc());
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now > *last {
            *last = now;
        }
        *last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_never_go_backwards_and_have_millisecond_precision() {
        let clock = SystemClock::default();
        let mut previous = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= previous);
            assert_eq!(now.nanosecond() % 1_000_000, 0);
            previous = now;
        }
    }
}
