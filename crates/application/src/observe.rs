//! `ObserveMessageUseCase`: a message the butler reads but does not answer — a group member's
//! line that nobody addressed to it — kept in the conversation's memory as context for the
//! moment someone does, with no model call.
//!
//! It is stored like the user half of a turn: stamped strictly after everything the
//! conversation already holds (the order every reader relies on), tagged with its origin so a
//! redelivered message is not stored twice, and counted towards the compression threshold.

use std::sync::Arc;

use butler_domain::ports::{Clock, UserMemoryRepository, UserProfileRepository};
use butler_domain::{Source, UserId, UserMemoryEvent};

use crate::memory::CompressionScheduler;

/// How many of the newest events are read to find the order floor and a redelivery.
const RECENT_CHECKED: usize = 8;

/// A message to keep without answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveInput {
    /// Whose memory: the group conversation.
    pub user_id: UserId,
    /// What was said, as it should read in the memory (a group line carries its speaker).
    pub text: String,
    /// How it arrived.
    pub source: Source,
    /// Where it came from, unique per message (e.g. `telegram-update:42`), when it may be
    /// delivered more than once: a message whose origin the memory already holds is skipped.
    pub origin: Option<String>,
}

/// What happened to an observed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Stored; `compression_scheduled` when the conversation went over the threshold.
    Stored {
        /// Whether a compression was asked for.
        compression_scheduled: bool,
    },
    /// Its origin was already in memory (a redelivery): nothing stored.
    Repeated,
    /// Storage failed: the message is not kept (the conversation goes on without it).
    Failed,
}

/// Keeps messages as context without answering them.
#[derive(Clone)]
pub struct ObserveMessageUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    memory: Arc<dyn UserMemoryRepository>,
    clock: Arc<dyn Clock>,
    scheduler: Arc<dyn CompressionScheduler>,
    compress_threshold: u64,
}

impl std::fmt::Debug for ObserveMessageUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveMessageUseCase")
            .field("compress_threshold", &self.compress_threshold)
            .finish_non_exhaustive()
    }
}

impl ObserveMessageUseCase {
    /// Wires the use case; more than `compress_threshold` stored events schedule a compression,
    /// as after a reply.
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        memory: Arc<dyn UserMemoryRepository>,
        clock: Arc<dyn Clock>,
        scheduler: Arc<dyn CompressionScheduler>,
        compress_threshold: u64,
    ) -> Self {
        Self {
            profiles,
            memory,
            clock,
            scheduler,
            compress_threshold,
        }
    }

    /// Stores the message as context. Never fails: a storage failure is logged and reported.
    pub async fn execute(&self, input: ObserveInput) -> Observed {
        let user_id = input.user_id;
        let profile = match self.profiles.get_or_create(user_id).await {
            Ok(profile) => profile,
            Err(error) => {
                tracing::warn!(user_id = %user_id, %error, "profile unavailable; message not kept");
                return Observed::Failed;
            }
        };
        let recent = match self
            .memory
            .recent(user_id, RECENT_CHECKED, profile.summary_watermark)
            .await
        {
            Ok(recent) => recent,
            Err(error) => {
                tracing::warn!(user_id = %user_id, %error, "memory unavailable; message not kept");
                return Observed::Failed;
            }
        };
        if let Some(origin) = &input.origin {
            if recent.iter().any(|e| e.tags.iter().any(|t| t == origin)) {
                return Observed::Repeated;
            }
        }
        let newest = recent
            .last()
            .map(|e| e.created_at)
            .or(profile.summary_watermark.map(|w| w.created_at));
        let now = butler_domain::timestamp::truncate_to_millis(self.clock.now());
        let at = newest.map_or(now, |newest| {
            now.max(newest + time::Duration::milliseconds(1))
        });
        let mut event = UserMemoryEvent::user(user_id, input.text, input.source, at);
        event.tags.extend(input.origin);
        if let Err(error) = self.memory.append(std::slice::from_ref(&event)).await {
            tracing::warn!(user_id = %user_id, %error, "message not kept");
            return Observed::Failed;
        }
        let over = self
            .memory
            .count(user_id)
            .await
            .is_ok_and(|count| count > self.compress_threshold);
        if over {
            self.scheduler.schedule(user_id);
        }
        Observed::Stored {
            compression_scheduled: over,
        }
    }
}
