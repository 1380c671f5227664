//! Conversation memory: the events a user and the butler exchanged, the cursor that orders
//! them, and the slice of memory a prompt is built from.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::code::UnknownCode;
use crate::timestamp::truncate_to_millis;
use crate::user::UserId;

/// Longest stored event, in characters. A Telegram message holds at most 4,096; a transcript or
/// a terminal line longer than this is cut (with [`CUT_MARK`]) before it is stored, so one
/// message can never bloat memory, exports or the summariser's input.
pub const MAX_EVENT_CHARS: usize = 16_384;

/// Ends content cut to [`MAX_EVENT_CHARS`].
pub const CUT_MARK: &str = " …[cut]";

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The user.
    User,
    /// The butler.
    Assistant,
}

impl Role {
    /// The code adapters store: `user` or `assistant`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// How the user's message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Source {
    /// Typed text.
    #[default]
    Text,
    /// A voice message, transcribed by speech-to-text.
    Voice,
}

impl Source {
    /// The code adapters store and metrics use: `text` or `voice`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Voice => "voice",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Role {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            _ => Err(UnknownCode {
                kind: "role",
                value: s.to_owned(),
            }),
        }
    }
}

impl FromStr for Source {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "voice" => Ok(Self::Voice),
            _ => Err(UnknownCode {
                kind: "source",
                value: s.to_owned(),
            }),
        }
    }
}

/// A position in one user's event stream: events are totally ordered by
/// `(created_at, event_id)`. The profile's summary watermark is a cursor; "newer than the
/// watermark" and "up to the watermark" use this order in every adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventCursor {
    /// Creation time of the event (whole milliseconds).
    pub created_at: OffsetDateTime,
    /// Tie-breaker for events created in the same millisecond.
    pub event_id: Uuid,
}

impl Ord for EventCursor {
    fn cmp(&self, other: &Self) -> Ordering {
        self.created_at
            .cmp(&other.created_at)
            .then_with(|| self.event_id.cmp(&other.event_id))
    }
}

impl PartialOrd for EventCursor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One message in a user's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMemoryEvent {
    /// Unique id (UUID v4).
    pub event_id: Uuid,
    /// Whose memory this belongs to.
    pub user_id: UserId,
    /// Who said it.
    pub role: Role,
    /// What was said (for voice, the transcript).
    pub content: String,
    /// How the user's message arrived (the butler's reply inherits the source it answered).
    pub source: Source,
    /// When it was said, in whole milliseconds.
    pub created_at: OffsetDateTime,
    /// Free-form labels (empty for ordinary chat).
    pub tags: Vec<String>,
}

/// `content`, cut to [`MAX_EVENT_CHARS`] characters (marker included) when longer.
fn bounded(content: String) -> String {
    if content.len() <= MAX_EVENT_CHARS || content.chars().count() <= MAX_EVENT_CHARS {
        return content;
    }
    let keep = MAX_EVENT_CHARS - CUT_MARK.chars().count();
    let mut cut: String = content.chars().take(keep).collect();
    cut.push_str(CUT_MARK);
    cut
}

impl UserMemoryEvent {
    /// A message from the user (cut to [`MAX_EVENT_CHARS`] if longer).
    #[must_use]
    pub fn user(
        user_id: UserId,
        content: impl Into<String>,
        source: Source,
        at: OffsetDateTime,
    ) -> Self {
        Self::new(user_id, Role::User, content.into(), source, at)
    }

    /// A reply from the butler (cut to [`MAX_EVENT_CHARS`] if longer).
    #[must_use]
    pub fn assistant(
        user_id: UserId,
        content: impl Into<String>,
        source: Source,
        at: OffsetDateTime,
    ) -> Self {
        Self::new(user_id, Role::Assistant, content.into(), source, at)
    }

    fn new(
        user_id: UserId,
        role: Role,
        content: String,
        source: Source,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            event_id: Uuid::new_v4(),
            user_id,
            role,
            content: bounded(content),
            source,
            created_at: truncate_to_millis(at),
            tags: Vec::new(),
        }
    }

    /// Adds a tag (builder style).
    #[must_use]
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// This event's position in the user's stream.
    #[must_use]
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            created_at: self.created_at,
            event_id: self.event_id,
        }
    }
}

/// The memory a prompt is built from: the recent events (oldest first), the rolling summary
/// of everything older, how many events the user has in storage, and the remembered facts
/// chosen for this message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemorySlice {
    /// Recent events, oldest first.
    pub events: Vec<UserMemoryEvent>,
    /// Summary of the events before `events`, if any were compressed.
    pub summary: Option<String>,
    /// Events stored for the user in total (may exceed `events.len()`).
    pub total_events: u64,
    /// The user's core facts ([`MemoryFact::is_core`](crate::fact::MemoryFact::is_core)),
    /// in a stable order (by key): they go in every prompt.
    pub core_facts: Vec<crate::fact::MemoryFact>,
    /// Facts found for the new message, best match first (core facts the system message
    /// already shows are left out by the prompt builder).
    pub relevant_facts: Vec<crate::fact::MemoryFact>,
}

impl MemorySlice {
    /// Renders the slice as plain text for a prompt or a log line:
    /// the summary first (if any), then one line per event, oldest first.
    /// An empty slice renders as an empty string.
    #[must_use]
    pub fn to_prompt_context(&self) -> String {
        let mut out = String::new();
        if let Some(summary) = self
            .summary
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            out.push_str("Summary: ");
            out.push_str(summary);
            out.push('\n');
        }
        if !self.events.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str("Previous interactions:\n");
            for event in &self.events {
                let who = match event.role {
                    Role::User => "User",
                    Role::Assistant => "Butler",
                };
                out.push_str(who);
                out.push_str(": ");
                out.push_str(event.content.trim());
                out.push('\n');
            }
        }
        out
    }

    /// Whether there is neither a summary nor any event.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.summary.as_deref().is_none_or(|s| s.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-11-25 12:00:00.123_456 UTC);

    #[test]
    fn content_longer_than_the_limit_is_cut_with_a_mark_and_shorter_content_is_kept() {
        let at_limit = "я".repeat(MAX_EVENT_CHARS);
        let e = UserMemoryEvent::user(UserId::new(1), at_limit.clone(), Source::Text, AT);
        assert_eq!(e.content, at_limit);
        let huge = "ы".repeat(MAX_EVENT_CHARS * 10);
        let e = UserMemoryEvent::assistant(UserId::new(1), huge, Source::Text, AT);
        assert_eq!(e.content.chars().count(), MAX_EVENT_CHARS);
        assert!(e.content.ends_with(CUT_MARK));
    }

    #[test]
    fn constructors_set_role_source_and_millisecond_time() {
        let u = UserMemoryEvent::user(UserId::new(1), "привет", Source::Voice, AT);
        let a = UserMemoryEvent::assistant(UserId::new(1), "Добрый день", Source::Voice, AT);
        assert_eq!(u.role, Role::User);
        assert_eq!(a.role, Role::Assistant);
        assert_eq!(u.source, Source::Voice);
        assert_eq!(u.created_at, datetime!(2026-11-25 12:00:00.123 UTC));
        assert_ne!(u.event_id, a.event_id);
        assert!(u.tags.is_empty());
        let tagged = u.with_tag("import");
        assert_eq!(tagged.tags, vec!["import"]);
    }

    #[test]
    fn cursors_order_by_time_then_by_id() {
        let a = UserMemoryEvent::user(UserId::new(1), "a", Source::Text, AT);
        let mut b = a.clone();
        b.event_id = Uuid::from_u128(a.event_id.as_u128().wrapping_add(1));
        let c = UserMemoryEvent::user(
            UserId::new(1),
            "c",
            Source::Text,
            AT + time::Duration::milliseconds(1),
        );
        assert!(a.cursor() < c.cursor());
        assert_eq!(a.cursor().cmp(&b.cursor()), a.event_id.cmp(&b.event_id));
    }

    #[test]
    fn codes_round_trip_and_unknown_ones_are_errors() {
        for role in [Role::User, Role::Assistant] {
            assert_eq!(role.code().parse::<Role>(), Ok(role));
        }
        for source in [Source::Text, Source::Voice] {
            assert_eq!(source.to_string().parse::<Source>(), Ok(source));
        }
        assert!("system".parse::<Role>().is_err());
        assert_eq!("fax".parse::<Source>().unwrap_err().kind, "source");
    }

    #[test]
    fn prompt_context_lists_summary_then_events_oldest_first() {
        let slice = MemorySlice {
            events: vec![
                UserMemoryEvent::user(UserId::new(1), "Меня зовут Пётр", Source::Text, AT),
                UserMemoryEvent::assistant(
                    UserId::new(1),
                    " Рад знакомству, сэр. ",
                    Source::Text,
                    AT,
                ),
            ],
            summary: Some("Играет на виолончели.".into()),
            total_events: 30,
            ..MemorySlice::default()
        };
        assert_eq!(
            slice.to_prompt_context(),
            "Summary: Играет на виолончели.\n\nPrevious interactions:\nUser: Меня зовут Пётр\nButler: Рад знакомству, сэр.\n"
        );
        assert!(!slice.is_empty());
    }

    #[test]
    fn an_empty_slice_renders_nothing() {
        let slice = MemorySlice {
            summary: Some("  ".into()),
            ..MemorySlice::default()
        };
        assert_eq!(slice.to_prompt_context(), "");
        assert!(slice.is_empty());
        let only_summary = MemorySlice {
            summary: Some("S".into()),
            ..MemorySlice::default()
        };
        assert_eq!(only_summary.to_prompt_context(), "Summary: S\n");
    }
}
