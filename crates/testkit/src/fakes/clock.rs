//! A manual clock: starts at a fixed time and ticks one millisecond per reading, so events
//! stamped in sequence get distinct, increasing times — as on a real machine, but repeatable.

use std::sync::Mutex;

use butler_domain::ports::Clock;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// A deterministic clock.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::starting_at(datetime!(2026-11-25 12:00:00 UTC))
    }
}

impl ManualClock {
    /// A clock whose first reading is `start`.
    #[must_use]
    pub fn starting_at(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().expect("clock mutex");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let mut now = self.now.lock().expect("clock mutex");
        let reading = *now;
        *now += Duration::milliseconds(1);
        reading
    }
}
