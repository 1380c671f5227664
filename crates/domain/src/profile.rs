//! The user profile: who the butler is for this user (persona, tone, language, topics) and the
//! rolling summary of everything older than the recent memory window.
//!
//! Profiles are validated values: every constructor and update goes through [`UserProfile::validate`],
//! so adapters and use cases never see an unknown language, an empty persona or a hundred topics.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use time::OffsetDateTime;

use crate::memory::EventCursor;
use crate::reminder::UserTimeZone;
use crate::timestamp::truncate_to_millis;
use crate::user::UserId;

/// Longest persona accepted, in characters (the prompt budget trims further, in tokens).
pub const MAX_PERSONA_CHARS: usize = 1_000;
/// Most preferred topics a profile may list.
pub const MAX_TOPICS: usize = 10;
/// Longest single topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 60;
/// Longest stored memory summary, in characters (a safety net; the summariser aims at tokens).
pub const MAX_SUMMARY_CHARS: usize = 8_000;

/// Highest per-user message rate an administrator may set, per minute.
pub const MAX_RATE_PER_MINUTE: u32 = 10_000;
/// Largest per-user burst an administrator may set.
pub const MAX_BURST: u32 = 10_000;
/// Highest per-user daily quota an administrator may set.
pub const MAX_DAILY_QUOTA: u32 = 1_000_000;
/// How many offered events a profile remembers (the oldest are forgotten first; an event that
/// far back is long past).
pub const MAX_OFFERS_REMEMBERED: usize = 200;

/// The persona every new user meets.
pub const DEFAULT_PERSONA: &str = "Alfred-style дворецкий";

/// The persona a group conversation starts with: the same butler, told that it hears several
/// people, whose lines carry their names, and that it answers the one who addressed it.
pub const DEFAULT_GROUP_PERSONA: &str = "Alfred-style дворецкий в групповом чате: реплики \
     участников подписаны их именами; отвечай тому, кто к тебе обратился, и не рассказывай \
     одним участникам того, что другие доверили тебе наедине";

/// The language the butler answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Language {
    /// Russian (the default).
    #[default]
    Ru,
    /// English.
    En,
}

impl Language {
    /// Every accepted value, as written in configuration and the admin CLI.
    pub const ALLOWED: &'static [&'static str] = &["ru", "en"];

    /// The code stored and accepted on input: `ru` or `en`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Ru => "ru",
            Self::En => "en",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Language {
    type Err = ProfileValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ru" => Ok(Self::Ru),
            "en" => Ok(Self::En),
            _ => Err(ProfileValidationError::UnknownLanguage {
                value: s.to_owned(),
            }),
        }
    }
}

/// The register the butler speaks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tone {
    /// Ironic, dry English humour (the default).
    #[default]
    Witty,
    /// Strictly formal.
    Formal,
    /// Relaxed and friendly.
    Casual,
}

impl Tone {
    /// Every accepted value, as written in configuration and the admin CLI.
    pub const ALLOWED: &'static [&'static str] = &["witty", "formal", "casual"];

    /// The code stored and accepted on input.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Witty => "witty",
            Self::Formal => "formal",
            Self::Casual => "casual",
        }
    }
}

impl fmt::Display for Tone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Tone {
    type Err = ProfileValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "witty" => Ok(Self::Witty),
            "formal" => Ok(Self::Formal),
            "casual" => Ok(Self::Casual),
            _ => Err(ProfileValidationError::UnknownTone {
                value: s.to_owned(),
            }),
        }
    }
}

/// Why a profile (or a change to one) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProfileValidationError {
    /// The language is not one of [`Language::ALLOWED`].
    #[error("unknown language {value:?}: expected one of ru, en")]
    UnknownLanguage {
        /// The rejected value.
        value: String,
    },
    /// The tone is not one of [`Tone::ALLOWED`].
    #[error("unknown tone {value:?}: expected one of witty, formal, casual")]
    UnknownTone {
        /// The rejected value.
        value: String,
    },
    /// The persona is empty or only whitespace.
    #[error("persona must not be empty")]
    EmptyPersona,
    /// The persona is longer than [`MAX_PERSONA_CHARS`].
    #[error("persona is {chars} characters long: at most {max} are allowed")]
    PersonaTooLong {
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_TOPICS`] topics.
    #[error("{count} preferred topics given: at most {max} are allowed")]
    TooManyTopics {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A topic is empty or longer than [`MAX_TOPIC_CHARS`].
    #[error("invalid topic {topic:?}: topics are 1 to {max} characters")]
    InvalidTopic {
        /// The rejected topic.
        topic: String,
        /// The length limit.
        max: usize,
    },
    /// A per-user limit is out of its range.
    #[error("{limit} {value} is out of range: expected {min} to {max}")]
    LimitOutOfRange {
        /// Which limit (`per-minute`, `burst`, `per-day`).
        limit: &'static str,
        /// The rejected value.
        value: u32,
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
    },
    /// The summary is longer than [`MAX_SUMMARY_CHARS`].
    #[error("memory summary is {chars} characters long: at most {max} are allowed")]
    SummaryTooLong {
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
}

/// Everything the butler knows about how to address one user, plus the rolling summary of
/// older conversation.
///
/// `version` is the optimistic-concurrency token: repositories only save a profile whose
/// version equals the stored one, then increment it. A profile that was never stored has
/// version 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    /// Whose profile this is.
    pub user_id: UserId,
    /// The language replies are written in.
    pub language: Language,
    /// Who the butler plays (free text, validated for length).
    pub persona: String,
    /// The register of the replies.
    pub tone: Tone,
    /// Topics the user cares about, in the order given.
    pub preferred_topics: Vec<String>,
    /// Rolling summary of all events at or before `summary_watermark`.
    pub memory_summary: Option<String>,
    /// The newest event folded into `memory_summary`; events at or before it may be deleted.
    pub summary_watermark: Option<EventCursor>,
    /// Exceptions to the operator's abuse limits for this user (none by default).
    pub limits: UserLimits,
    /// The user's time zone (reminders are resolved and shown in it); `None` = the
    /// operator's `DEFAULT_TIME_ZONE`.
    pub time_zone: Option<UserTimeZone>,
    /// The zone the butler last proposed from the conversation (asked once per zone, whatever
    /// the answer); `None` = none proposed yet.
    pub time_zone_offered: Option<UserTimeZone>,
    /// Whether the butler may offer reminders for dated events it remembers (off by default;
    /// the user turns it on with `/offers on`, support staff with `profile_admin`).
    pub reminder_offers: bool,
    /// The events already offered as reminders (each offered once, whatever the answer): keys
    /// of the form `fact-key@YYYY-MM-DD`, oldest first, at most [`MAX_OFFERS_REMEMBERED`].
    pub reminder_offers_made: Vec<String>,
    /// When the profile was first stored.
    pub created_at: OffsetDateTime,
    /// When the profile last changed.
    pub updated_at: OffsetDateTime,
    /// Optimistic-concurrency version (see the type documentation).
    pub version: u64,
}

impl UserProfile {
    /// The profile a new user starts with: the Alfred persona ([`DEFAULT_GROUP_PERSONA`] for a
    /// group conversation), Russian, witty, no topics, no summary, stamped with the current
    /// time.
    #[must_use]
    pub fn default_for(user_id: UserId) -> Self {
        Self::default_at(user_id, OffsetDateTime::now_utc())
    }

    /// Like [`UserProfile::default_for`] with an explicit creation time (for deterministic
    /// callers and tests).
    #[must_use]
    pub fn default_at(user_id: UserId, now: OffsetDateTime) -> Self {
        let now = truncate_to_millis(now);
        Self {
            user_id,
            language: Language::Ru,
            persona: if user_id.is_group() {
                DEFAULT_GROUP_PERSONA
            } else {
                DEFAULT_PERSONA
            }
            .to_owned(),
            tone: Tone::Witty,
            preferred_topics: Vec::new(),
            memory_summary: None,
            summary_watermark: None,
            limits: UserLimits::default(),
            time_zone: None,
            time_zone_offered: None,
            reminder_offers: false,
            reminder_offers_made: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// Checks every field against the limits in this module.
    ///
    /// # Errors
    /// The first [`ProfileValidationError`] found.
    pub fn validate(&self) -> Result<(), ProfileValidationError> {
        validate_persona(&self.persona)?;
        validate_topics(&self.preferred_topics)?;
        self.limits.validate()?;
        if let Some(summary) = &self.memory_summary {
            let chars = summary.chars().count();
            if chars > MAX_SUMMARY_CHARS {
                return Err(ProfileValidationError::SummaryTooLong {
                    chars,
                    max: MAX_SUMMARY_CHARS,
                });
            }
        }
        Ok(())
    }

    /// Applies an administrative change, validating the result. The version is left as it is:
    /// saving through a repository is what checks and bumps it.
    ///
    /// # Errors
    /// A [`ProfileValidationError`] if the changed profile would be invalid; `self` is untouched.
    pub fn apply(
        &self,
        update: &ProfileUpdate,
        now: OffsetDateTime,
    ) -> Result<Self, ProfileValidationError> {
        let mut next = self.clone();
        if let Some(persona) = &update.persona {
            next.persona = persona.trim().to_owned();
        }
        if let Some(tone) = update.tone {
            next.tone = tone;
        }
        if let Some(language) = update.language {
            next.language = language;
        }
        if let Some(topics) = &update.preferred_topics {
            next.preferred_topics = topics.iter().map(|t| t.trim().to_owned()).collect();
        }
        if let Some(per_minute) = update.per_minute {
            next.limits.per_minute = per_minute;
        }
        if let Some(burst) = update.burst {
            next.limits.burst = burst;
        }
        if let Some(per_day) = update.per_day {
            next.limits.per_day = per_day;
        }
        if let Some(zone) = &update.time_zone {
            next.time_zone.clone_from(zone);
        }
        if let Some(offers) = update.reminder_offers {
            next.reminder_offers = offers;
        }
        next.validate()?;
        next.updated_at = truncate_to_millis(now);
        Ok(next)
    }

    /// The zone reminders are resolved in: the profile's own, or `default` (the operator's
    /// `DEFAULT_TIME_ZONE`) when it names none.
    #[must_use]
    pub fn zone_or(&self, default: &UserTimeZone) -> UserTimeZone {
        self.time_zone.clone().unwrap_or_else(|| default.clone())
    }

    /// Records that the event `key` was offered as a reminder, forgetting the oldest record
    /// beyond [`MAX_OFFERS_REMEMBERED`]; `false` when it was recorded already.
    pub fn record_offer(&mut self, key: &str) -> bool {
        if self.reminder_offers_made.iter().any(|k| k == key) {
            return false;
        }
        self.reminder_offers_made.push(key.to_owned());
        let excess = self
            .reminder_offers_made
            .len()
            .saturating_sub(MAX_OFFERS_REMEMBERED);
        self.reminder_offers_made.drain(..excess);
        true
    }

    /// Whether a summary of older conversation exists.
    #[must_use]
    pub fn has_summary(&self) -> bool {
        self.memory_summary
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty())
    }
}

/// A partial change to a profile, as requested by an administrator. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// New persona text.
    pub persona: Option<String>,
    /// New tone.
    pub tone: Option<Tone>,
    /// New language.
    pub language: Option<Language>,
    /// New list of topics (replaces the old list).
    pub preferred_topics: Option<Vec<String>>,
    /// New per-minute rate: `Some(None)` returns the user to the operator's default.
    pub per_minute: Option<Option<u32>>,
    /// New burst: `Some(None)` returns the user to the operator's default.
    pub burst: Option<Option<u32>>,
    /// New daily quota: `Some(None)` returns the user to the operator's default.
    pub per_day: Option<Option<u32>>,
    /// New time zone: `Some(None)` returns the user to the operator's `DEFAULT_TIME_ZONE`.
    pub time_zone: Option<Option<UserTimeZone>>,
    /// Turns reminder offers from memory on or off.
    pub reminder_offers: Option<bool>,
}

/// Per-user exceptions to the bot's abuse limits, set by support staff. `None` means the
/// operator's default (`RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_BURST`, `DAILY_MESSAGE_QUOTA`);
/// for the rate and the quota, `Some(0)` means no limit for this user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserLimits {
    /// Average messages per minute; `Some(0)` = unlimited.
    pub per_minute: Option<u32>,
    /// Messages at once before the rate applies (at least 1).
    pub burst: Option<u32>,
    /// Messages per UTC day; `Some(0)` = unlimited.
    pub per_day: Option<u32>,
}

impl UserLimits {
    /// Whether every limit is the operator's default.
    #[must_use]
    pub const fn is_default(&self) -> bool {
        self.per_minute.is_none() && self.burst.is_none() && self.per_day.is_none()
    }

    /// Checks each limit against its range.
    ///
    /// # Errors
    /// [`ProfileValidationError::LimitOutOfRange`] naming the first limit out of range.
    pub fn validate(&self) -> Result<(), ProfileValidationError> {
        let checks = [
            ("per-minute", self.per_minute, 0, MAX_RATE_PER_MINUTE),
            ("burst", self.burst, 1, MAX_BURST),
            ("per-day", self.per_day, 0, MAX_DAILY_QUOTA),
        ];
        for (limit, value, min, max) in checks {
            if let Some(value) = value.filter(|v| !(min..=max).contains(v)) {
                return Err(ProfileValidationError::LimitOutOfRange {
                    limit,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

impl ProfileUpdate {
    /// Whether the update changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.persona.is_none()
            && self.tone.is_none()
            && self.language.is_none()
            && self.preferred_topics.is_none()
            && self.per_minute.is_none()
            && self.burst.is_none()
            && self.per_day.is_none()
            && self.time_zone.is_none()
            && self.reminder_offers.is_none()
    }
}

fn validate_persona(persona: &str) -> Result<(), ProfileValidationError> {
    if persona.trim().is_empty() {
        return Err(ProfileValidationError::EmptyPersona);
    }
    let chars = persona.chars().count();
    if chars > MAX_PERSONA_CHARS {
        return Err(ProfileValidationError::PersonaTooLong {
            chars,
            max: MAX_PERSONA_CHARS,
        });
    }
    Ok(())
}

fn validate_topics(topics: &[String]) -> Result<(), ProfileValidationError> {
    if topics.len() > MAX_TOPICS {
        return Err(ProfileValidationError::TooManyTopics {
            count: topics.len(),
            max: MAX_TOPICS,
        });
    }
    if let Some(bad) = topics
        .iter()
        .find(|t| t.trim().is_empty() || t.chars().count() > MAX_TOPIC_CHARS)
    {
        return Err(ProfileValidationError::InvalidTopic {
            topic: bad.clone(),
            max: MAX_TOPIC_CHARS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00:00 UTC);

    #[test]
    fn a_new_user_meets_alfred_in_russian_with_a_witty_tone() {
        let p = UserProfile::default_at(UserId::new(7), NOW);
        assert_eq!(p.persona, DEFAULT_PERSONA);
        assert_eq!(p.language, Language::Ru);
        assert_eq!(p.tone, Tone::Witty);
        assert!(p.preferred_topics.is_empty());
        assert!(!p.has_summary());
        assert_eq!(p.version, 0);
        assert_eq!(p.created_at, NOW);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn per_user_limits_are_validated_and_can_return_to_the_default() {
        let p = UserProfile::default_at(UserId::new(1), NOW);
        assert!(p.limits.is_default());
        let update = ProfileUpdate {
            per_minute: Some(Some(5)),
            per_day: Some(Some(0)),
            ..ProfileUpdate::default()
        };
        assert!(!update.is_empty());
        let limited = p.apply(&update, NOW).unwrap();
        assert_eq!(limited.limits.per_minute, Some(5));
        assert_eq!(limited.limits.per_day, Some(0));
        let back = limited
            .apply(
                &ProfileUpdate {
                    per_minute: Some(None),
                    ..ProfileUpdate::default()
                },
                NOW,
            )
            .unwrap();
        assert_eq!(back.limits.per_minute, None);
        let err = p
            .apply(
                &ProfileUpdate {
                    burst: Some(Some(0)),
                    ..ProfileUpdate::default()
                },
                NOW,
            )
            .unwrap_err();
        assert!(err.to_string().contains("burst 0 is out of range"), "{err}");
    }

    #[test]
    fn a_time_zone_is_set_and_cleared_and_the_default_applies_without_one() {
        let p = UserProfile::default_at(UserId::new(1), NOW);
        let moscow = UserTimeZone::new("Europe/Moscow").unwrap();
        let perm = UserTimeZone::new("Asia/Yekaterinburg").unwrap();
        assert_eq!(p.time_zone, None);
        assert_eq!(p.zone_or(&moscow), moscow);
        let set = ProfileUpdate {
            time_zone: Some(Some(perm.clone())),
            ..ProfileUpdate::default()
        };
        assert!(!set.is_empty());
        let there = p.apply(&set, NOW).unwrap();
        assert_eq!(there.zone_or(&moscow), perm);
        let cleared = there
            .apply(
                &ProfileUpdate {
                    time_zone: Some(None),
                    ..ProfileUpdate::default()
                },
                NOW,
            )
            .unwrap();
        assert_eq!(cleared.time_zone, None);
    }

    #[test]
    fn default_for_stamps_the_current_time_in_whole_milliseconds() {
        let p = UserProfile::default_for(UserId::new(1));
        assert_eq!(p.created_at.nanosecond() % 1_000_000, 0);
    }

    #[test]
    fn languages_and_tones_parse_case_insensitively_and_reject_unknown_values_with_the_allowed_ones(
    ) {
        assert_eq!("EN".parse::<Language>(), Ok(Language::En));
        assert_eq!("Formal".parse::<Tone>(), Ok(Tone::Formal));
        let err = "de".parse::<Language>().unwrap_err();
        assert!(err.to_string().contains("ru, en"), "{err}");
        let err = "sarcastic".parse::<Tone>().unwrap_err();
        assert!(err.to_string().contains("witty, formal, casual"), "{err}");
        for code in Language::ALLOWED {
            assert_eq!(code.parse::<Language>().unwrap().code(), *code);
        }
        for code in Tone::ALLOWED {
            assert_eq!(code.parse::<Tone>().unwrap().to_string(), *code);
        }
    }

    #[test]
    fn updates_are_validated_and_leave_the_original_untouched() {
        let p = UserProfile::default_at(UserId::new(1), NOW);
        let later = datetime!(2026-11-26 00:00:00.123_999 UTC);
        let update = ProfileUpdate {
            persona: Some("  Jeeves  ".into()),
            tone: Some(Tone::Formal),
            language: Some(Language::En),
            preferred_topics: Some(vec!["cello".into(), " chess ".into()]),
            ..ProfileUpdate::default()
        };
        let next = p.apply(&update, later).unwrap();
        assert_eq!(next.persona, "Jeeves");
        assert_eq!(next.tone, Tone::Formal);
        assert_eq!(next.language, Language::En);
        assert_eq!(next.preferred_topics, vec!["cello", "chess"]);
        assert_eq!(next.updated_at, datetime!(2026-11-26 00:00:00.123 UTC));
        assert_eq!(next.version, p.version);
        assert_eq!(p.persona, DEFAULT_PERSONA);
    }

    #[test]
    fn empty_or_oversized_personas_are_rejected() {
        let p = UserProfile::default_at(UserId::new(1), NOW);
        let empty = ProfileUpdate {
            persona: Some("   ".into()),
            ..ProfileUpdate::default()
        };
        assert_eq!(
            p.apply(&empty, NOW),
            Err(ProfileValidationError::EmptyPersona)
        );
        let long = ProfileUpdate {
            persona: Some("я".repeat(MAX_PERSONA_CHARS + 1)),
            ..ProfileUpdate::default()
        };
        assert!(matches!(
            p.apply(&long, NOW),
            Err(ProfileValidationError::PersonaTooLong { chars, .. }) if chars == MAX_PERSONA_CHARS + 1
        ));
    }

    #[test]
    fn too_many_or_malformed_topics_are_rejected() {
        let p = UserProfile::default_at(UserId::new(1), NOW);
        let many = ProfileUpdate {
            preferred_topics: Some((0..=MAX_TOPICS).map(|i| format!("t{i}")).collect()),
            ..ProfileUpdate::default()
        };
        assert!(matches!(
            p.apply(&many, NOW),
            Err(ProfileValidationError::TooManyTopics { .. })
        ));
        let blank = ProfileUpdate {
            preferred_topics: Some(vec!["ok".into(), String::new()]),
            ..ProfileUpdate::default()
        };
        assert!(matches!(
            p.apply(&blank, NOW),
            Err(ProfileValidationError::InvalidTopic { .. })
        ));
        let long = ProfileUpdate {
            preferred_topics: Some(vec!["x".repeat(MAX_TOPIC_CHARS + 1)]),
            ..ProfileUpdate::default()
        };
        assert!(matches!(
            p.apply(&long, NOW),
            Err(ProfileValidationError::InvalidTopic { .. })
        ));
    }

    #[test]
    fn oversized_summaries_fail_validation() {
        let mut p = UserProfile::default_at(UserId::new(1), NOW);
        p.memory_summary = Some("s".repeat(MAX_SUMMARY_CHARS + 1));
        assert!(matches!(
            p.validate(),
            Err(ProfileValidationError::SummaryTooLong { .. })
        ));
        p.memory_summary = Some("  ".into());
        assert!(!p.has_summary());
    }

    #[test]
    fn an_empty_update_is_recognised() {
        assert!(ProfileUpdate::default().is_empty());
        assert!(!ProfileUpdate {
            tone: Some(Tone::Casual),
            ..ProfileUpdate::default()
        }
        .is_empty());
    }
}
