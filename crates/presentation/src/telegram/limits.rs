//! Per-user abuse limits of the Telegram bot: a token bucket (GCRA, `governor`) for the
//! message rate and a count per UTC day for the quota. The operator sets the defaults
//! (`RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_BURST`, `DAILY_MESSAGE_QUOTA`); support staff set
//! per-user exceptions on the profile (`profile_admin limits`).
//!
//! Why here: a local model is CPU-bound and shared by everyone, so one user who floods the bot
//! slows every other user down. Refused messages are answered once per streak (not once per
//! message, which would itself flood the chat) and never reach memory or the model.
//!
//! Memory stays bounded: buckets of users not seen for longer than their refill period are
//! dropped periodically, the day's counts are cleared at midnight UTC and capped, and the
//! "already told" set is bounded.
//!
//! The counts live in this process: a restart forgets today's counts, and each replica counts
//! its own messages.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use butler_domain::{UserId, UserLimits};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use time::Date;

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
/// Checks between two sweeps of idle buckets.
const SWEEP_EVERY: u64 = 4_096;
/// Most users remembered as "already told they are over a limit".
const MAX_TOLD: usize = 65_536;

type Buckets<C> =
    RateLimiter<UserId, HashMapStateStore<UserId>, C, NoOpMiddleware<<C as Clock>::Instant>>;
/// Bucket sets by (rate per minute, burst).
type BucketSets<C> = HashMap<(u32, u32), Arc<Buckets<C>>>;

struct Daily {
    day: Option<Date>,
    counts: HashMap<UserId, u32>,
}

/// The limiter shared by every dispatcher worker.
pub(crate) struct UserLimiter<C: Clock = DefaultClock> {
    defaults: Limits,
    clock: C,
    /// One keyed bucket set per (rate, burst): users share the default one, exceptions get
    /// their own (there are few).
    buckets: Mutex<BucketSets<C>>,
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

impl UserLimiter<DefaultClock> {
    /// A limiter on the real clock.
    pub(crate) fn new(defaults: Limits) -> Self {
        Self::with_clock(defaults, DefaultClock::default())
    }
}

impl<C: Clock + Clone> UserLimiter<C> {
    /// A limiter on `clock` (tests use a fake one).
    pub(crate) fn with_clock(defaults: Limits, clock: C) -> Self {
        Self {
            defaults,
            clock,
            buckets: Mutex::new(HashMap::new()),
            daily: Mutex::new(Daily {
                day: None,
                counts: HashMap::new(),
            }),
            told_rate: Mutex::new(RecentKeys::new(MAX_TOLD)),
            told_quota: Mutex::new(RecentKeys::new(MAX_TOLD)),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Decides on one message from `user` on `today` (UTC), with the user's exceptions.
    /// An allowed message counts towards the day's quota; a refused one does not.
    pub(crate) fn admit(&self, user: UserId, exceptions: &UserLimits, today: Date) -> Verdict {
        let limits = self.defaults.for_user(exceptions);
        self.sweep_now_and_then();
        if limits.per_day > 0 && self.used_today(user, today) >= limits.per_day {
            let first = lock(&self.told_quota).insert((user, today));
            return Verdict::QuotaExhausted {
                quota: limits.per_day,
                first,
            };
        }
        if let Some(retry_after) = self.over_rate(user, limits) {
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
        if daily.day != Some(today) {
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

    /// `Some(wait)` when the user's bucket is empty.
    fn over_rate(&self, user: UserId, limits: Limits) -> Option<Duration> {
        let per_minute = NonZeroU32::new(limits.per_minute)?;
        let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
        let buckets = {
            let mut all = lock(&self.buckets);
            all.entry((per_minute.get(), burst.get()))
                .or_insert_with(|| {
                    let quota = Quota::per_minute(per_minute).allow_burst(burst);
                    Arc::new(RateLimiter::new(
                        quota,
                        HashMapStateStore::default(),
                        self.clock.clone(),
                    ))
                })
                .clone()
        };
        buckets
            .check_key(&user)
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the buckets of users idle long enough to be full again: they hold no state a
    /// fresh bucket would not.
    fn sweep_now_and_then(&self) {
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        for buckets in lock(&self.buckets).values() {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }

    /// Users with a live bucket (for tests of the sweep).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.buckets).values().map(|b| b.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;
    use time::macros::date;

    use super::*;

    const DAY: Date = date!(2026 - 11 - 29);
    const ALICE: UserId = UserId::new(1);
    const BOB: UserId = UserId::new(2);

    fn limiter(limits: Limits) -> (UserLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (UserLimiter::with_clock(limits, clock.clone()), clock)
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
            assert_eq!(limiter.admit(ALICE, &none, DAY), Verdict::Allowed);
        }
        let Verdict::TooFast { retry_after, first } = limiter.admit(ALICE, &none, DAY) else {
            panic!("the fourth message at once is too fast");
        };
        assert!(first);
        assert_eq!(retry_after, Duration::from_secs(10), "one message per 10 s");
        assert!(matches!(
            limiter.admit(ALICE, &none, DAY),
            Verdict::TooFast { first: false, .. }
        ));
        assert_eq!(
            limiter.admit(BOB, &none, DAY),
            Verdict::Allowed,
            "users have their own buckets"
        );
        clock.advance(Duration::from_secs(10));
        assert_eq!(limiter.admit(ALICE, &none, DAY), Verdict::Allowed);
        assert!(
            matches!(
                limiter.admit(ALICE, &none, DAY),
                Verdict::TooFast { first: true, .. }
            ),
            "a new streak is told again"
        );
    }

    #[test]
    fn the_daily_quota_counts_only_allowed_messages_and_resets_the_next_day() {
        let (limiter, _clock) = limiter(Limits {
            per_minute: 0,
            burst: 1,
            per_day: 2,
        });
        let none = UserLimits::default();
        assert_eq!(limiter.admit(ALICE, &none, DAY), Verdict::Allowed);
        assert_eq!(limiter.admit(ALICE, &none, DAY), Verdict::Allowed);
        assert_eq!(
            limiter.admit(ALICE, &none, DAY),
            Verdict::QuotaExhausted {
                quota: 2,
                first: true
            }
        );
        assert_eq!(
            limiter.admit(ALICE, &none, DAY),
            Verdict::QuotaExhausted {
                quota: 2,
                first: false
            }
        );
        assert_eq!(
            limiter.admit(ALICE, &none, DAY.next_day().unwrap()),
            Verdict::Allowed
        );
    }

    #[test]
    fn per_user_exceptions_override_the_defaults_and_zero_lifts_a_limit() {
        let (limiter, _clock) = limiter(Limits {
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
            assert_eq!(limiter.admit(ALICE, &vip, DAY), Verdict::Allowed);
        }
        let strict = UserLimits {
            per_minute: Some(60),
            burst: Some(2),
            per_day: Some(0),
        };
        assert_eq!(limiter.admit(BOB, &strict, DAY), Verdict::Allowed);
        assert_eq!(limiter.admit(BOB, &strict, DAY), Verdict::Allowed);
        assert!(matches!(
            limiter.admit(BOB, &strict, DAY),
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
            limiter.admit(UserId::new(id), &none, DAY);
        }
        assert_eq!(limiter.tracked(), 100);
        clock.advance(Duration::from_secs(2));
        for _ in 0..SWEEP_EVERY {
            limiter.admit(ALICE, &none, DAY);
        }
        assert!(limiter.tracked() <= 1, "{} buckets left", limiter.tracked());
    }
}
