//! Per-user abuse limits of the Telegram bot: a rate with bursts (the generic cell rate
//! algorithm, GCRA — a token bucket kept as one instant per user) and a count per UTC day for
//! the quota. The operator sets the defaults (`RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_BURST`,
//! `DAILY_MESSAGE_QUOTA`); support staff set per-user exceptions on the profile
//! (`profile_admin limits`).
//!
//! Why here: a local model is CPU-bound and shared by everyone, so one user who floods the bot
//! slows every other user down. Refused messages are answered once per streak (not once per
//! message, which would itself flood the chat) and never reach memory or the model.
//!
//! **Decided at arrival.** A message is judged at the instant it *arrived* (the inbox's
//! `received_at`), not when it is answered. A user's messages are answered one after another,
//! so with a model that takes seconds per reply, judging at answer time would let a whole
//! burst through (the bucket refills while the model writes); judged at arrival, a burst behind
//! a slow model is refused exactly as behind a fast one. That is why the bucket is computed by
//! hand here: rate-limiting crates (`governor`) read their own clock, not a given instant.
//!
//! Memory stays bounded: users whose bucket is full again are dropped periodically, the day's
//! counts are cleared at midnight UTC and capped, and the "already told" set is bounded.
//!
//! The counts live in this process: a restart forgets today's counts, and each replica counts
//! the messages it answers.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use butler_domain::{UserId, UserLimits};
use time::{Date, OffsetDateTime};

use super::recent::RecentKeys;

/// The operator's default limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Average messages per minute; 0 = no rate limit.
    pub per_minute: u32,
    /// Messages at once before the rate applies (at least 1).
    pub burst: u32,
    /// Messages per UTC day; 0 = no quota.
    pub per_day: u32,
}

impl Default for Limits {
    /// The defaults of the settings table: 20 a minute, bursts of 10, 500 a day.
    fn default() -> Self {
        Self {
            per_minute: 20,
            burst: 10,
            per_day: 500,
        }
    }
}

impl Limits {
    /// No limits at all (tests, and operators who opt out).
    #[must_use]
    pub const fn none() -> Self {
        Self {
            per_minute: 0,
            burst: 1,
            per_day: 0,
        }
    }

    /// These limits with a user's exceptions applied.
    #[must_use]
    pub fn for_user(self, exceptions: &UserLimits) -> Self {
        Self {
            per_minute: exceptions.per_minute.unwrap_or(self.per_minute),
            burst: exceptions.burst.unwrap_or(self.burst),
            per_day: exceptions.per_day.unwrap_or(self.per_day),
        }
    }
}

/// Whether a message may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go ahead.
    Allowed,
    /// Over the rate: the next message is welcome after `retry_after`. `first` is true for the
    /// first refusal of a streak (the only one answered).
    TooFast { retry_after: Duration, first: bool },
    /// Today's quota is used up. `first` as above, per day.
    QuotaExhausted { quota: u32, first: bool },
}

/// Most users counted per day; past it, new users are refused for the day (a flood of fresh
/// accounts must not grow memory without bound).
const MAX_DAILY_USERS: usize = 1_000_000;
/// Checks between two sweeps of full buckets.
const SWEEP_EVERY: u64 = 4_096;
/// Most users remembered as "already told they are over a limit".
const MAX_TOLD: usize = 65_536;

struct Daily {
    day: Option<Date>,
    counts: HashMap<UserId, u32>,
}

/// The rate state: per user, the theoretical arrival time (TAT) of the next message on an
/// empty bucket; a user whose TAT has passed has a full bucket and needs no entry.
#[derive(Default)]
struct Rates {
    tat: HashMap<UserId, OffsetDateTime>,
    /// The latest arrival judged, for sweeping.
    latest: Option<OffsetDateTime>,
}

/// The limiter shared by every answering task.
pub(crate) struct UserLimiter {
    defaults: Limits,
    rates: Mutex<Rates>,
    daily: Mutex<Daily>,
    told_rate: Mutex<RecentKeys<UserId>>,
    told_quota: Mutex<RecentKeys<(UserId, Date)>>,
    checks: std::sync::atomic::AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below is a single operation; a panicked holder leaves consistent state.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UserLimiter {
    /// A limiter with the operator's defaults.
    pub(crate) fn new(defaults: Limits) -> Self {
        Self {
            defaults,
            rates: Mutex::new(Rates::default()),
            daily: Mutex::new(Daily {
                day: None,
                counts: HashMap::new(),
            }),
            told_rate: Mutex::new(RecentKeys::new(MAX_TOLD)),
            told_quota: Mutex::new(RecentKeys::new(MAX_TOLD)),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Decides on one message from `user` that arrived at `arrived`, with the user's
    /// exceptions. An allowed message counts towards the quota of its arrival's UTC day; a
    /// refused one counts towards nothing.
    pub(crate) fn admit(
        &self,
        user: UserId,
        exceptions: &UserLimits,
        arrived: OffsetDateTime,
    ) -> Verdict {
        let limits = self.defaults.for_user(exceptions);
        let today = arrived.to_offset(time::UtcOffset::UTC).date();
        self.sweep_now_and_then(arrived);
        if limits.per_day > 0 && self.used_today(user, today) >= limits.per_day {
            let first = lock(&self.told_quota).insert((user, today));
            return Verdict::QuotaExhausted {
                quota: limits.per_day,
                first,
            };
        }
        if let Some(retry_after) = self.over_rate(user, limits, arrived) {
            let first = lock(&self.told_rate).insert(user);
            return Verdict::TooFast { retry_after, first };
        }
        lock(&self.told_rate).remove(&user);
        if limits.per_day > 0 && !self.count(user, today) {
            let first = lock(&self.told_quota).insert((user, today));
            return Verdict::QuotaExhausted {
                quota: limits.per_day,
                first,
            };
        }
        Verdict::Allowed
    }

    fn used_today(&self, user: UserId, today: Date) -> u32 {
        let daily = lock(&self.daily);
        if daily.day == Some(today) {
            daily.counts.get(&user).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// Counts one message; `false` when the day's table is full and `user` is not in it.
    fn count(&self, user: UserId, today: Date) -> bool {
        let mut daily = lock(&self.daily);
        if daily.day.is_none_or(|day| day < today) {
            daily.day = Some(today);
            daily.counts = HashMap::new();
        }
        if daily.counts.len() >= MAX_DAILY_USERS && !daily.counts.contains_key(&user) {
            tracing::warn!("daily quota table is full; new users are refused until midnight UTC");
            return false;
        }
        *daily.counts.entry(user).or_insert(0) += 1;
        true
    }

    /// GCRA at `arrived`: `Some(wait)` when the user's bucket is empty, else takes one token.
    fn over_rate(&self, user: UserId, limits: Limits, arrived: OffsetDateTime) -> Option<Duration> {
        if limits.per_minute == 0 {
            return None;
        }
        let interval = time::Duration::seconds(60) / limits.per_minute;
        let tolerance = interval * (limits.burst.max(1) - 1);
        let mut rates = lock(&self.rates);
        let tat = rates
            .tat
            .get(&user)
            .copied()
            .map_or(arrived, |tat| tat.max(arrived));
        let ahead = tat - arrived;
        if ahead > tolerance {
            let wait = ahead - tolerance;
            return Some(Duration::try_from(wait).unwrap_or(Duration::ZERO));
        }
        rates.tat.insert(user, tat + interval);
        None
    }

    /// Drops the users whose bucket is full again (their TAT has passed): they hold no state a
    /// fresh bucket would not.
    fn sweep_now_and_then(&self, arrived: OffsetDateTime) {
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rates = lock(&self.rates);
        let latest = rates.latest.map_or(arrived, |l| l.max(arrived));
        rates.latest = Some(latest);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            rates.tat.retain(|_, tat| *tat > latest);
            rates.tat.shrink_to_fit();
        }
    }

    /// Users with a live bucket (for tests of the sweep).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.rates).tat.len()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);
    const ALICE: UserId = UserId::new(1);
    const BOB: UserId = UserId::new(2);

    /// Arrival instants on a hand-moved clock.
    struct Arrivals(std::cell::Cell<OffsetDateTime>);

    impl Arrivals {
        fn now(&self) -> OffsetDateTime {
            self.0.get()
        }

        fn advance(&self, by: Duration) {
            self.0.set(self.0.get() + by);
        }
    }

    fn limiter(limits: Limits) -> (UserLimiter, Arrivals) {
        (UserLimiter::new(limits), Arrivals(std::cell::Cell::new(T0)))
    }

    #[test]
    fn past_a_million_users_in_a_day_new_users_are_refused_and_known_ones_go_on() {
        let (limiter, clock) = limiter(Limits {
            per_minute: 0,
            burst: 0,
            per_day: 100,
        });
        let none = UserLimits::default();
        assert_eq!(limiter.admit(ALICE, &none, clock.now()), Verdict::Allowed);
        {
            // The rest of the table, filled as a flood of fresh accounts would.
            let mut daily = lock(&limiter.daily);
            let others = MAX_DAILY_USERS - daily.counts.len();
            daily.counts.reserve(others);
            daily
                .counts
                .extend((0..others).map(|i| (UserId::new(1_000 + i as i64), 1)));
        }
        assert_eq!(MAX_DAILY_USERS, 1_000_000);
        assert!(matches!(
            limiter.admit(BOB, &none, clock.now()),
            Verdict::QuotaExhausted { first: true, .. }
        ));
        assert_eq!(limiter.admit(ALICE, &none, clock.now()), Verdict::Allowed);
        // A new day empties the table.
        clock.advance(Duration::from_secs(24 * 3600));
        assert_eq!(limiter.admit(BOB, &none, clock.now()), Verdict::Allowed);
    }

    #[test]
    fn a_burst_passes_then_the_rate_applies_and_the_first_refusal_is_marked() {
        let (limiter, clock) = limiter(Limits {
            per_minute: 6,
            burst: 3,
            per_day: 0,
        });
        let none = UserLimits::default();
        for _ in 0..3 {
            assert_eq!(limiter.admit(ALICE, &none, clock.now()), Verdict::Allowed);
        }
        let Verdict::TooFast { retry_after, first } = limiter.admit(ALICE, &none, clock.now())
        else {
            panic!("the fourth message at once is too fast");
        };
        assert!(first);
        assert_eq!(retry_after, Duration::from_secs(10), "one message per 10 s");
        assert!(matches!(
            limiter.admit(ALICE, &none, clock.now()),
            Verdict::TooFast { first: false, .. }
        ));
        assert_eq!(
            limiter.admit(BOB, &none, clock.now()),
            Verdict::Allowed,
            "users have their own buckets"
        );
        clock.advance(Duration::from_secs(10));
        assert_eq!(limiter.admit(ALICE, &none, clock.now()), Verdict::Allowed);
        assert!(
            matches!(
                limiter.admit(ALICE, &none, clock.now()),
                Verdict::TooFast { first: true, .. }
            ),
            "a new streak is told again"
        );
    }

    #[test]
    fn the_daily_quota_counts_only_allowed_messages_and_resets_the_next_day() {
        let (limiter, clock) = limiter(Limits {
            per_minute: 0,
            burst: 1,
            per_day: 2,
        });
        let none = UserLimits::default();
        assert_eq!(limiter.admit(ALICE, &none, clock.now()), Verdict::Allowed);
        assert_eq!(limiter.admit(ALICE, &none, clock.now()), Verdict::Allowed);
        assert_eq!(
            limiter.admit(ALICE, &none, clock.now()),
            Verdict::QuotaExhausted {
                quota: 2,
                first: true
            }
        );
        assert_eq!(
            limiter.admit(ALICE, &none, clock.now()),
            Verdict::QuotaExhausted {
                quota: 2,
                first: false
            }
        );
        assert_eq!(
            limiter.admit(ALICE, &none, clock.now() + time::Duration::days(1)),
            Verdict::Allowed
        );
    }

    #[test]
    fn per_user_exceptions_override_the_defaults_and_zero_lifts_a_limit() {
        let (limiter, clock) = limiter(Limits {
            per_minute: 1,
            burst: 1,
            per_day: 1,
        });
        let vip = UserLimits {
            per_minute: Some(0),
            burst: None,
            per_day: Some(0),
        };
        for _ in 0..100 {
            assert_eq!(limiter.admit(ALICE, &vip, clock.now()), Verdict::Allowed);
        }
        let strict = UserLimits {
            per_minute: Some(60),
            burst: Some(2),
            per_day: Some(0),
        };
        assert_eq!(limiter.admit(BOB, &strict, clock.now()), Verdict::Allowed);
        assert_eq!(limiter.admit(BOB, &strict, clock.now()), Verdict::Allowed);
        assert!(matches!(
            limiter.admit(BOB, &strict, clock.now()),
            Verdict::TooFast { .. }
        ));
    }

    #[test]
    fn idle_buckets_are_swept_so_memory_stays_bounded() {
        let (limiter, clock) = limiter(Limits {
            per_minute: 60,
            burst: 1,
            per_day: 0,
        });
        let none = UserLimits::default();
        for id in 0..100 {
            limiter.admit(UserId::new(id), &none, clock.now());
        }
        assert_eq!(limiter.tracked(), 100);
        clock.advance(Duration::from_secs(2));
        for _ in 0..SWEEP_EVERY {
            limiter.admit(ALICE, &none, clock.now());
        }
        assert!(limiter.tracked() <= 1, "{} buckets left", limiter.tracked());
    }

    #[test]
    fn a_burst_is_judged_by_its_arrival_however_late_it_is_answered() {
        let limiter = UserLimiter::new(Limits {
            per_minute: 60,
            burst: 2,
            per_day: 0,
        });
        let none = UserLimits::default();
        // Eight messages arrive within 70 ms; the model takes seconds per reply, so they are
        // judged long after they arrived — but by their arrival.
        let verdicts: Vec<bool> = (0..8)
            .map(|i| {
                let arrived = T0 + time::Duration::milliseconds(10 * i);
                limiter.admit(ALICE, &none, arrived) == Verdict::Allowed
            })
            .collect();
        assert_eq!(
            verdicts,
            [true, true, false, false, false, false, false, false]
        );
        assert_eq!(
            limiter.admit(ALICE, &none, T0 + time::Duration::seconds(1)),
            Verdict::Allowed,
            "a second later one token is back"
        );
    }

    #[test]
    fn the_quota_day_is_the_day_of_arrival() {
        let limiter = UserLimiter::new(Limits {
            per_minute: 0,
            burst: 1,
            per_day: 1,
        });
        let none = UserLimits::default();
        let before_midnight = datetime!(2026-11-29 23:59:59.900 UTC);
        assert_eq!(
            limiter.admit(ALICE, &none, before_midnight),
            Verdict::Allowed
        );
        assert!(matches!(
            limiter.admit(
                ALICE,
                &none,
                before_midnight + time::Duration::milliseconds(50)
            ),
            Verdict::QuotaExhausted { .. }
        ));
        assert_eq!(
            limiter.admit(ALICE, &none, datetime!(2026-11-30 00:00:00.100 UTC)),
            Verdict::Allowed
        );
    }
}
