//! The owner of a memory: a user (a Telegram user id, or any stable numeric id from another
//! front end), or a group conversation — a group chat, or one topic of a forum group — which
//! has a memory of its own, apart from its members' personal ones.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Identifies whose memory: one user of the butler (a positive id: Telegram user ids are
/// positive 64-bit integers; the terminal chat uses the same type, so memories are
/// interchangeable between front ends), or one group conversation (a negative id, see
/// [`UserId::group`]). Profiles, events, facts and leases are all keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(i64);

/// Set in the magnitude of a forum topic's id, above any chat id (Telegram chat ids have at
/// most 52 significant bits), so a topic never shares an id with a whole group.
const TOPIC_BIT: u64 = 1 << 61;

impl UserId {
    /// Wraps a raw numeric id.
    #[must_use]
    pub const fn new(raw: i64) -> Self {
        Self(raw)
    }

    /// The raw numeric id, as stored by adapters.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The memory of a group conversation: the group chat `chat_id` (Telegram's group ids
    /// are negative), or, for a forum group, its topic `topic` (the message thread id).
    ///
    /// A whole group's id is its chat id. A topic's is `-(2⁶¹ | h)`, `h` the first 61 bits of
    /// the FNV-1a hash of the chat id and the topic: stable across releases and platforms,
    /// never equal to a chat id, and shared by two topics only with a chance of about
    /// n²/2⁶² among n topics (10⁻¹¹ for ten thousand).
    #[must_use]
    pub fn group(chat_id: i64, topic: Option<i32>) -> Self {
        let Some(topic) = topic else {
            // A chat id that is not negative is not a group's; keep it negative regardless.
            return Self(if chat_id < 0 {
                chat_id
            } else {
                chat_id.saturating_neg().min(-1)
            });
        };
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in chat_id.to_le_bytes().into_iter().chain(topic.to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let magnitude = TOPIC_BIT | (hash & (TOPIC_BIT - 1));
        // Below 2⁶², so it fits an i64 and negates without overflow.
        Self(-i64::try_from(magnitude).unwrap_or(i64::MAX))
    }

    /// Whether this is a group conversation's memory rather than a user's.
    #[must_use]
    pub const fn is_group(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for UserId {
    fn from(raw: i64) -> Self {
        Self(raw)
    }
}

/// A string that is not a valid [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid user id {input:?}: expected an integer such as 123456789")]
pub struct ParseUserIdError {
    /// The rejected input (user ids are not secret).
    pub input: String,
}

impl FromStr for UserId {
    type Err = ParseUserIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<i64>()
            .map(Self)
            .map_err(|_| ParseUserIdError {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id of topic 7 of group -1001234567890, computed once by hand from the definition.
    const PINNED_TOPIC_ID: i64 = -4_606_883_737_154_463_697;

    #[test]
    fn user_ids_parse_from_decimal_text_and_reject_anything_else() {
        assert_eq!("42".parse::<UserId>(), Ok(UserId::new(42)));
        assert_eq!(" -7 ".parse::<UserId>(), Ok(UserId::new(-7)));
        let err = "alice".parse::<UserId>().unwrap_err();
        assert!(err.to_string().contains("expected an integer"));
    }

    #[test]
    fn a_groups_memory_is_its_chat_and_each_forum_topic_has_its_own() {
        let group = UserId::group(-1_001_234_567_890, None);
        assert_eq!(group.get(), -1_001_234_567_890);
        assert!(group.is_group());
        assert!(!UserId::new(42).is_group());
        let topic = UserId::group(-1_001_234_567_890, Some(7));
        assert!(topic.is_group());
        assert_ne!(topic, group);
        assert_eq!(topic, UserId::group(-1_001_234_567_890, Some(7)), "stable");
        assert_ne!(topic, UserId::group(-1_001_234_567_890, Some(8)));
        assert_ne!(topic, UserId::group(-1_001_234_567_891, Some(7)));
        // Above every chat id in magnitude: a topic never takes a group's id.
        assert!(topic.get().unsigned_abs() >= 1 << 61);
        // Pinned, so a release that changed the hash would be caught before it orphaned a
        // topic's memory.
        assert_eq!(topic.get(), PINNED_TOPIC_ID);
        let many: std::collections::HashSet<_> = (0..10_000)
            .map(|t| UserId::group(-1_001_234_567_890, Some(t)))
            .collect();
        assert_eq!(many.len(), 10_000);
    }

    #[test]
    fn user_ids_display_as_their_number() {
        assert_eq!(UserId::new(123).to_string(), "123");
        assert_eq!(UserId::from(5).get(), 5);
    }
}
