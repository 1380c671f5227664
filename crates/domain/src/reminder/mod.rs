//! Reminders: what to remind a user of and when, asked for in plain language and delivered by
//! the scheduler exactly once (see [`crate::ports::ReminderRepository`]).
//!
//! - [`when`]: "when, as the user said it" and its resolution, in code, to an instant;
//! - [`zone`]: the user's IANA time zone;
//! - [`places`]: where a user says they live, and that place's zone;
//! - [`words`]: the resolved moment in words, for the confirmation;
//! - [`event_date`](mod@event_date): the calendar date a remembered fact states, for reminders offered from
//!   memory.

pub mod event_date;
pub mod places;
pub mod when;
pub mod words;
pub mod zone;

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::timestamp::truncate_to_millis;
use crate::user::UserId;

pub use event_date::{event_date, month_word, EventDate};
pub use when::{
    weekday_from_code, AskBack, DaySaid, LocalTime, PartOfDay, Resolved, TimeSaid, WhenSaid,
};
pub use words::moment_in_words;
pub use zone::{UnknownTimeZone, UserTimeZone, FALLBACK_TIME_ZONE};

/// Longest reminder text kept, in characters.
pub const MAX_REMINDER_TEXT_CHARS: usize = 500;

/// Identifies one reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReminderId(Uuid);

impl ReminderId {
    /// A new random id.
    #[must_use]
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id of the reminder asked for by message `message_id` of chat `chat_id`: the same
    /// every time that message is handled, so a request handled again after a crash (the reply
    /// sent, the update not yet marked done) stores no second reminder.
    #[must_use]
    pub fn of_message(chat_id: i64, message_id: i32) -> Self {
        // A Telegram message is named by its chat and its number in that chat; the upper half
        // of the low word is a fixed mark («REM»), so these ids stay apart from random ones.
        let low = 0x5245_4D00_0000_0000 | u64::from(message_id.cast_unsigned());
        Self(Uuid::from_u64_pair(chat_id.cast_unsigned(), low))
    }

    /// The id of the reminder set from the offer about the fact `fact_id`: the same for every
    /// press of its "yes" (the store keeps the first), apart from message and random ids.
    #[must_use]
    pub fn of_offer(fact_id: Uuid) -> Self {
        let (high, low) = fact_id.as_u64_pair();
        Self(Uuid::from_u64_pair(high ^ 0x4f46_4645_5200_0000, low))
    }

    /// Wraps a stored id.
    #[must_use]
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The id as a UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The first eight hex digits: enough to tell a user's reminders apart in a button or the
    /// admin CLI.
    #[must_use]
    pub fn short(&self) -> String {
        self.0.simple().to_string()[..8].to_owned()
    }
}

impl fmt::Display for ReminderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ReminderId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where a reminder is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReminderStatus {
    /// Waiting for its time (or being delivered under a lease).
    Pending,
    /// Delivered at the given time.
    Delivered(OffsetDateTime),
    /// Cancelled at the given time.
    Cancelled(OffsetDateTime),
}

impl ReminderStatus {
    /// When it stopped being pending, if it has.
    #[must_use]
    pub const fn finished_at(&self) -> Option<OffsetDateTime> {
        match self {
            Self::Pending => None,
            Self::Delivered(at) | Self::Cancelled(at) => Some(*at),
        }
    }
}

/// An invalid reminder.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReminderError {
    /// Nothing to remind of.
    #[error("a reminder needs a text")]
    EmptyText,
    /// Longer than [`MAX_REMINDER_TEXT_CHARS`].
    #[error("a reminder's text is limited to {MAX_REMINDER_TEXT_CHARS} characters")]
    TextTooLong,
}

/// One reminder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    /// Its id.
    pub id: ReminderId,
    /// Whose it is.
    pub user_id: UserId,
    /// The chat it is delivered to (the private chat it was asked in).
    pub chat_id: i64,
    /// What to remind of, as the user said it («позвонить маме»).
    pub text: String,
    /// When it is due, UTC, whole milliseconds.
    pub due_at: OffsetDateTime,
    /// The IANA zone it was resolved in, for words at delivery.
    pub time_zone: String,
    /// When it was asked for.
    pub created_at: OffsetDateTime,
    /// Pending, delivered or cancelled.
    pub status: ReminderStatus,
    /// How many times a scheduler has claimed it (more than one: a claimer crashed).
    pub attempts: u32,
}

impl Reminder {
    /// A new pending reminder.
    ///
    /// # Errors
    /// [`ReminderError`] if the text is empty or too long.
    pub fn new(
        user_id: UserId,
        chat_id: i64,
        text: &str,
        due_at: OffsetDateTime,
        time_zone: &UserTimeZone,
        now: OffsetDateTime,
    ) -> Result<Self, ReminderError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ReminderError::EmptyText);
        }
        if text.chars().count() > MAX_REMINDER_TEXT_CHARS {
            return Err(ReminderError::TextTooLong);
        }
        Ok(Self {
            id: ReminderId::random(),
            user_id,
            chat_id,
            text: text.to_owned(),
            due_at: truncate_to_millis(due_at),
            time_zone: time_zone.name().to_owned(),
            created_at: truncate_to_millis(now),
            status: ReminderStatus::Pending,
            attempts: 0,
        })
    }

    /// The zone it was resolved in (UTC if the stored name is no longer known).
    #[must_use]
    pub fn zone(&self) -> UserTimeZone {
        UserTimeZone::new(&self.time_zone).unwrap_or_else(|_| UserTimeZone::utc())
    }
}

#[cfg(test)]
mod tests;
