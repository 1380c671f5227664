//! "When", as the user said it, and its resolution — in code, never by the model — to one
//! instant in the user's time zone.
//!
//! The language model only transcribes what the user said into a [`WhenSaid`] (a date, a
//! relative day, a weekday, a clock time, a part of the day, an offset). Everything that needs
//! a calendar happens here: which Friday, which year, what "вечером" means, daylight-saving
//! gaps. Anything that would need a guess is asked back ([`AskBack`]).
//!
//! Documented defaults (docs/user_guide.md repeats them):
//! - parts of the day: morning («утром») 09:00, afternoon («днём») 13:00, evening
//!   («вечером») 19:00, night («ночью») 23:00;
//! - a clock hour 7–11 said without a part of the day is taken as morning, 12–23 as is; 0–6
//!   without a part of the day is asked back ("в 3" could be 03:00 or 15:00);
//! - with a part of the day, 12-hour clock hours move to it: «в 7 вечера» 19:00, «в 3 дня»
//!   15:00, «в 11 ночи» 23:00, «в 2 ночи» 02:00;
//! - a weekday is the next such day after today (said on a Friday, «в пятницу» is a week
//!   later);
//! - a date without a year is the next such date from today (this year, or next year if it has
//!   passed);
//! - a day without a time of day, and a time of day already passed today, are asked back;
//! - a local time that does not exist or exists twice because of a daylight-saving change is
//!   resolved like RFC 5545 does ("compatible": a skipped time moves forward by the gap, a
//!   repeated one takes the first).

use jiff::civil::{DateTime, Weekday};
use jiff::Timestamp;
use thiserror::Error;
use time::OffsetDateTime;

use crate::reminder::zone::UserTimeZone;
use crate::timestamp::{from_unix_millis, to_unix_millis, truncate_to_millis};

/// The longest offset accepted, in minutes («через N минут»): ten years.
pub const MAX_OFFSET_MINUTES: u32 = 10 * 366 * 24 * 60;

/// A part of the day, as the user said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartOfDay {
    /// «утром», "in the morning": 09:00 by default.
    Morning,
    /// «днём», "in the afternoon": 13:00 by default.
    Afternoon,
    /// «вечером», "in the evening": 19:00 by default.
    Evening,
    /// «ночью», "at night": 23:00 by default.
    Night,
}

impl PartOfDay {
    /// Every value as written in the structured request.
    pub const ALLOWED: &'static [&'static str] = &["morning", "afternoon", "evening", "night"];

    /// The value's name in the structured request.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Morning => "morning",
            Self::Afternoon => "afternoon",
            Self::Evening => "evening",
            Self::Night => "night",
        }
    }

    /// Parses a [`PartOfDay::code`].
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "morning" => Some(Self::Morning),
            "afternoon" => Some(Self::Afternoon),
            "evening" => Some(Self::Evening),
            "night" => Some(Self::Night),
            _ => None,
        }
    }

    /// The clock time it stands for when no time is said: (hour, minute).
    #[must_use]
    pub const fn default_time(self) -> (u8, u8) {
        match self {
            Self::Morning => (9, 0),
            Self::Afternoon => (13, 0),
            Self::Evening => (19, 0),
            Self::Night => (23, 0),
        }
    }

    /// The 24-hour hour of a clock hour said with this part of the day, or `None` when they
    /// contradict each other ("9 вечера" is 21; "20 утра" is a contradiction).
    #[must_use]
    pub const fn hour_24(self, hour: u8) -> Option<u8> {
        match (self, hour) {
            (_, 24..) => None,
            (Self::Morning, 0..=11) => Some(hour),
            (Self::Morning, _) => None,
            (Self::Afternoon, 12..=18) | (Self::Evening, 12..=23) => Some(hour),
            (Self::Afternoon, 1..=6) | (Self::Evening, 1..=11) => Some(hour + 12),
            (Self::Afternoon, _) | (Self::Evening, _) => None,
            (Self::Night, 0..=5 | 21..=23) => Some(hour),
            (Self::Night, 9..=11) => Some(hour + 12),
            (Self::Night, 12) => Some(0),
            (Self::Night, _) => None,
        }
    }
}

/// A weekday by its English name in lower case (`monday` … `sunday`), as the structured
/// request writes it.
#[must_use]
pub fn weekday_from_code(code: &str) -> Option<Weekday> {
    Some(match code {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

/// The day, as the user said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaySaid {
    /// A calendar date; the year only if the user said one.
    Date {
        /// The year, if said.
        year: Option<i16>,
        /// 1–12.
        month: u8,
        /// 1–31.
        day: u8,
    },
    /// Today (0), tomorrow (1), the day after tomorrow (2) …
    InDays(u8),
    /// A day of the week: the next one after today.
    Weekday(Weekday),
}

/// The time of day, as the user said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimeSaid {
    /// The clock hour as said (0–23; 1–12 may be 12-hour).
    pub hour: Option<u8>,
    /// The minute (0–59); 0 when not said.
    pub minute: Option<u8>,
    /// The part of the day, if said.
    pub part: Option<PartOfDay>,
}

/// When, as the user said it: either an offset from now, or a day and/or a time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WhenSaid {
    /// «через 20 минут»: minutes from now.
    pub in_minutes: Option<u32>,
    /// The day.
    pub day: Option<DaySaid>,
    /// The time of day.
    pub time: TimeSaid,
}

/// Why a [`WhenSaid`] cannot be resolved without asking the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AskBack {
    /// Nothing about the time was said.
    #[error("no time was given")]
    NoTime,
    /// A day was said without a time of day.
    #[error("a day was given without a time of day")]
    NoTimeOfDay,
    /// A clock hour that could be morning or evening (0–6 without a part of the day).
    #[error("hour {hour} could be morning or evening")]
    AmbiguousHour {
        /// The hour as said.
        hour: u8,
    },
    /// The moment is not in the future (a date or a year that has passed, or a time of day
    /// said without a day that has passed today).
    #[error("the time has already passed")]
    Past,
    /// Not a real date or time ("31 февраля", "25:00", "9 утра" said as "21 утра").
    #[error("not a valid date or time")]
    Invalid,
    /// An offset together with a day or a time of day.
    #[error("the parts of the time contradict each other")]
    Conflicting,
    /// Further ahead than the resolver can represent.
    #[error("too far ahead")]
    TooFar,
}

/// A resolved moment: the instant and how it reads on the user's wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The instant, UTC, whole milliseconds.
    pub at: OffsetDateTime,
    /// The same instant on the user's wall clock.
    pub local: LocalTime,
}

/// A wall-clock reading in a time zone, for words («в пятницу, 12 декабря, в 19:00»).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalTime {
    /// The year.
    pub year: i16,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// Monday = 1 … Sunday = 7.
    pub weekday: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
}

impl LocalTime {
    /// How `at` reads on a wall clock in `zone`.
    #[must_use]
    pub fn of(at: OffsetDateTime, zone: &UserTimeZone) -> Self {
        let ts = Timestamp::from_millisecond(to_unix_millis(at)).unwrap_or(Timestamp::UNIX_EPOCH);
        Self::from_civil(zone.zone().to_datetime(ts))
    }

    fn from_civil(dt: DateTime) -> Self {
        // jiff's civil fields are always in range; the casts cannot lose anything.
        Self {
            year: dt.year(),
            month: dt.month().unsigned_abs(),
            day: dt.day().unsigned_abs(),
            weekday: dt.weekday().to_monday_one_offset().unsigned_abs(),
            hour: dt.hour().unsigned_abs(),
            minute: dt.minute().unsigned_abs(),
        }
    }

    /// The calendar date of this reading.
    #[must_use]
    pub fn date(&self) -> jiff::civil::Date {
        jiff::civil::Date::new(self.year, month_i8(self.month), day_i8(self.day))
            .unwrap_or(jiff::civil::Date::MIN)
    }

    /// Days from `self`'s date to `other`'s (negative when `other` is earlier).
    #[must_use]
    pub fn days_until(&self, other: &Self) -> i64 {
        let a = jiff::civil::Date::new(self.year, month_i8(self.month), day_i8(self.day));
        let b = jiff::civil::Date::new(other.year, month_i8(other.month), day_i8(other.day));
        match (a, b) {
            (Ok(a), Ok(b)) => b
                .since((jiff::Unit::Day, a))
                .map_or(0, |span| i64::from(span.get_days())),
            _ => 0,
        }
    }
}

fn month_i8(month: u8) -> i8 {
    i8::try_from(month).unwrap_or(i8::MAX)
}

fn day_i8(day: u8) -> i8 {
    i8::try_from(day).unwrap_or(i8::MAX)
}

impl WhenSaid {
    /// Resolves to an instant after `now`, on the wall clock of `zone`, following the defaults
    /// documented in this module; anything that would need a guess is an [`AskBack`].
    ///
    /// # Errors
    /// An [`AskBack`] naming what to ask the user.
    pub fn resolve(&self, now: OffsetDateTime, zone: &UserTimeZone) -> Result<Resolved, AskBack> {
        let now = truncate_to_millis(now);
        let tz = zone.zone();
        let now_ts =
            Timestamp::from_millisecond(to_unix_millis(now)).map_err(|_| AskBack::Invalid)?;
        let today = tz.to_datetime(now_ts).date();

        if let Some(minutes) = self.in_minutes {
            if self.day.is_some() || self.time != TimeSaid::default() {
                return Err(AskBack::Conflicting);
            }
            if minutes == 0 {
                return Err(AskBack::Past);
            }
            if minutes > MAX_OFFSET_MINUTES {
                return Err(AskBack::TooFar);
            }
            let at = now + time::Duration::minutes(i64::from(minutes));
            return Ok(Resolved {
                at,
                local: LocalTime::of(at, zone),
            });
        }

        let clock = self.time.clock()?;
        let date = match (self.day, clock) {
            (None, None) => return Err(AskBack::NoTime),
            (Some(_), None) => return Err(AskBack::NoTimeOfDay),
            (None, Some(_)) => today,
            (Some(DaySaid::InDays(n)), Some(_)) => today
                .checked_add(jiff::Span::new().days(i64::from(n)))
                .map_err(|_| AskBack::TooFar)?,
            (Some(DaySaid::Weekday(weekday)), Some(_)) => {
                let mut ahead = today.weekday().until(weekday);
                if ahead == 0 {
                    ahead = 7;
                }
                today
                    .checked_add(jiff::Span::new().days(i64::from(ahead)))
                    .map_err(|_| AskBack::TooFar)?
            }
            (Some(DaySaid::Date { year, month, day }), Some((hour, minute))) => {
                let (month, day) = (month_i8(month), day_i8(day));
                match year {
                    Some(year) => {
                        jiff::civil::Date::new(year, month, day).map_err(|_| AskBack::Invalid)?
                    }
                    None => {
                        let this_year = jiff::civil::Date::new(today.year(), month, day);
                        let next_year = jiff::civil::Date::new(today.year() + 1, month, day);
                        let future = |date: jiff::civil::Date| {
                            instant(date, hour, minute, zone).is_ok_and(|at| at > now)
                        };
                        match (this_year, next_year) {
                            (Ok(date), _) if future(date) => date,
                            (_, Ok(date)) => date,
                            // 29 February said in a year before a non-leap one.
                            (Ok(_), Err(_)) => return Err(AskBack::Past),
                            (Err(_), Err(_)) => return Err(AskBack::Invalid),
                        }
                    }
                }
            }
        };
        let Some((hour, minute)) = clock else {
            return Err(AskBack::NoTime);
        };
        let at = instant(date, hour, minute, zone)?;
        if at <= now {
            return Err(AskBack::Past);
        }
        Ok(Resolved {
            at,
            local: LocalTime::of(at, zone),
        })
    }
}

impl TimeSaid {
    /// The 24-hour (hour, minute) this stands for; `None` if no time of day was said.
    fn clock(&self) -> Result<Option<(u8, u8)>, AskBack> {
        let minute = self.minute.unwrap_or(0);
        if minute > 59 {
            return Err(AskBack::Invalid);
        }
        match (self.hour, self.part) {
            (None, None) => {
                if self.minute.is_some() {
                    Err(AskBack::Invalid)
                } else {
                    Ok(None)
                }
            }
            (None, Some(part)) => Ok(Some(part.default_time())),
            (Some(hour), Some(part)) => part
                .hour_24(hour)
                .map(|hour| Some((hour, minute)))
                .ok_or(AskBack::Invalid),
            (Some(hour @ 0..=6), None) => Err(AskBack::AmbiguousHour { hour }),
            (Some(hour @ 7..=23), None) => Ok(Some((hour, minute))),
            (Some(_), None) => Err(AskBack::Invalid),
        }
    }
}

/// The instant of a wall-clock reading in `zone`, daylight-saving gaps and folds resolved the
/// "compatible" way.
fn instant(
    date: jiff::civil::Date,
    hour: u8,
    minute: u8,
    zone: &UserTimeZone,
) -> Result<OffsetDateTime, AskBack> {
    let hour = i8::try_from(hour).map_err(|_| AskBack::Invalid)?;
    let minute = i8::try_from(minute).map_err(|_| AskBack::Invalid)?;
    let dt = DateTime::new(date.year(), date.month(), date.day(), hour, minute, 0, 0)
        .map_err(|_| AskBack::Invalid)?;
    let ts = zone
        .zone()
        .to_ambiguous_timestamp(dt)
        .compatible()
        .map_err(|_| AskBack::TooFar)?;
    from_unix_millis(ts.as_millisecond()).ok_or(AskBack::TooFar)
}
