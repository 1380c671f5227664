//! Receiving updates: long polling or the webhook hands each update here, and it is stored in
//! the inbox *before* it is acknowledged to Telegram (the next `getUpdates` offset, or the
//! webhook's `200`). A crash or a kill afterwards loses nothing: the update is answered after
//! the restart or by another replica — unless it cannot be read back, or its answering was
//! interrupted [`max_attempts`](super::InboxConfig::max_attempts) times; both are given up and
//! logged at `error`.
//! Only messages from users the butler answers are stored: the allow-list is applied here,
//! before the inbox ([`super::gate`]).

use std::sync::Arc;
use std::time::Duration;

use butler_domain::ports::{InboxError, InboxUpdate, Stored, UpdateInbox};
use teloxide::types::{Update, UpdateKind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::gate::Gate;
use super::stops::{self, Stops};
use super::TelegramObserver;

/// The conversation an update belongs to, whose updates are answered one at a time, in order:
/// a private chat's sender, or the group (or forum topic) — each with its own memory
/// ([`super::group::conversation_of`]).
pub(crate) fn conversation_of(update: &Update) -> Option<i64> {
    match &update.kind {
        UpdateKind::Message(message) => {
            super::group::conversation_of(message).map(butler_domain::UserId::get)
        }
        _ => update
            .from()
            .and_then(|user| i64::try_from(user.id.0).ok())
            .or_else(|| update.chat().map(|chat| chat.id.0)),
    }
}

/// The inbox entry for `update` (its JSON as received is `payload`), or `None` for updates
/// the butler does not answer (edits, callbacks, … — only messages are), which are
/// acknowledged without storing.
pub(crate) fn entry(update: &Update, payload: String) -> Option<InboxUpdate> {
    let answered = match &update.kind {
        UpdateKind::Message(_) => true,
        // The `/reminders` cancel buttons and the time zone proposal's answers; other
        // buttons are not the butler's.
        UpdateKind::CallbackQuery(query) => query.data.as_deref().is_some_and(|d| {
            d.starts_with(super::reminders::CANCEL_PREFIX)
                || super::reminders::zone_answer(d).is_some()
                || super::reminders::offer_answer(d).is_some()
        }),
        _ => false,
    };
    if !answered {
        return None;
    }
    Some(InboxUpdate {
        update_id: i64::from(update.id.0),
        conversation: conversation_of(update)?,
        payload,
        received_at: butler_domain::timestamp::truncate_to_millis(time::OffsetDateTime::now_utc()),
    })
}

/// Stores received updates and wakes the workers; acts on stop buttons as they arrive.
#[derive(Clone)]
pub(crate) struct Receiver {
    inbox: Arc<dyn UpdateInbox>,
    wake: Arc<Notify>,
    gate: Gate,
    stops: Arc<Stops>,
    observer: Option<Arc<dyn TelegramObserver>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receiver")
    }
}

/// Pauses between attempts to store when the inbox is down (polling only: a webhook request
/// is refused instead, and Telegram retries it).
const STORE_BACKOFF: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

impl Receiver {
    pub(crate) fn new(
        inbox: Arc<dyn UpdateInbox>,
        wake: Arc<Notify>,
        gate: Gate,
        (stops, observer): (Arc<Stops>, Option<Arc<dyn TelegramObserver>>),
    ) -> Self {
        Self {
            inbox,
            wake,
            gate,
            stops,
            observer,
        }
    }

    /// Acts on `update` (its JSON as received) if it is a stop button's press, and says so:
    /// a stop is never stored — the reply it stops holds its conversation's lease, so queued
    /// behind it in the inbox it would come too late (see [`super::stops`]).
    pub(crate) fn stop_pressed(&self, update: &serde_json::Value) -> bool {
        let Some((chat, draft)) = stops::parse(update) else {
            return false;
        };
        let matched = self.stops.stop(chat, draft);
        tracing::info!(
            chat_id = chat,
            draft_id = draft,
            matched,
            "stop button pressed"
        );
        if let Some(observer) = &self.observer {
            observer.stop_pressed(matched);
        }
        true
    }

    /// The inbox entry for `update` ([`entry`]), or `None` when it is not stored: a kind the
    /// butler does not answer, or a message the allow-list keeps out (its sender told once,
    /// see [`super::gate`]).
    pub(crate) fn admit(&self, update: &Update, payload: String) -> Option<InboxUpdate> {
        let entry = entry(update, payload)?;
        self.gate.admits(update).then_some(entry)
    }

    /// Stores one update once; a redelivered one is dropped. Wakes a worker when it is new.
    pub(crate) async fn store(&self, entry: &InboxUpdate) -> Result<Stored, InboxError> {
        let stored = self.inbox.store(entry).await?;
        match stored {
            Stored::New => self.wake.notify_one(),
            Stored::Duplicate => tracing::info!(
                update_id = entry.update_id,
                "update already in the inbox; redelivery dropped"
            ),
        }
        Ok(stored)
    }

    /// Stores one update, retrying with back-off while the inbox is down. `false` when
    /// `shutdown` came first: the update is then not acknowledged, and Telegram delivers it
    /// again to the next process.
    pub(crate) async fn store_patiently(
        &self,
        entry: &InboxUpdate,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut attempt = 0;
        loop {
            match self.store(entry).await {
                Ok(_) => return true,
                Err(error) => {
                    let pause = STORE_BACKOFF[attempt.min(STORE_BACKOFF.len() - 1)];
                    attempt += 1;
                    tracing::warn!(%error, update_id = entry.update_id, retry_in_ms = pause.as_millis(), "update not stored; not acknowledging it yet");
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}
