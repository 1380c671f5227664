//! The stop button (Bot API 10.3): a private reply's drafts are sent with `can_stop`, so the
//! person sees a button to stop the answer; pressing it sends the bot a
//! `stopped_message_generation` update naming the chat and the draft. Telegram only hides the
//! preview — the bot must stop its own generation, which on a CPU frees the only model at once.
//!
//! The update is acted on as it arrives, never queued in the inbox: the conversation's reply
//! lease is held by the very reply it stops. [`Stops`] holds the replies being written in this
//! process by `(chat, draft)`; a stop cancels the matching one, so a stop can only ever reach
//! the chat the draft belongs to. With several replicas a stop is acted on by the replica that
//! receives it: with webhooks behind a load balancer, one that lands on another replica than
//! the one writing finds nothing to stop there (counted as unmatched).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The update key Telegram sends a stop under.
pub(crate) const STOP_UPDATE: &str = "stopped_message_generation";

/// The replies this process is writing that a person may stop.
#[derive(Debug, Default)]
pub(crate) struct Stops {
    /// By `(chat, draft)`: the registration's number and its token.
    live: Mutex<HashMap<(i64, i64), (u64, CancellationToken)>>,
    next: std::sync::atomic::AtomicU64,
}

/// A reply registered with [`Stops`]; unregistered when dropped.
pub(crate) struct Stoppable {
    stops: Arc<Stops>,
    key: (i64, i64),
    number: u64,
    token: CancellationToken,
}

impl Stoppable {
    /// Cancelled when the person pressed stop.
    pub(crate) fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        let mut live = self.stops.live();
        // Only its own registration: a later reply with the same draft may have replaced it.
        if live.get(&self.key).is_some_and(|(n, _)| *n == self.number) {
            live.remove(&self.key);
        }
    }
}

impl Stops {
    fn live(&self) -> MutexGuard<'_, HashMap<(i64, i64), (u64, CancellationToken)>> {
        // One insert or remove at a time: consistent whatever panicked while holding it.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the reply drafted as `draft` in `chat`.
    pub(crate) fn register(self: &Arc<Self>, chat: i64, draft: i64) -> Stoppable {
        let token = CancellationToken::new();
        let number = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.live().insert((chat, draft), (number, token.clone()));
        Stoppable {
            stops: Arc::clone(self),
            key: (chat, draft),
            number,
            token,
        }
    }

    /// Stops the reply drafted as `draft` in `chat`; `false` when this process writes none.
    pub(crate) fn stop(&self, chat: i64, draft: i64) -> bool {
        match self.live().get(&(chat, draft)) {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// A `stopped_message_generation` update, as much of it as a stop needs.
#[derive(Debug, Deserialize)]
struct StopUpdate {
    chat: StopChat,
    draft_id: i64,
}

#[derive(Debug, Deserialize)]
struct StopChat {
    id: i64,
}

/// The `(chat, draft)` of a stop, when `update` (an update's JSON) is one.
pub(crate) fn parse(update: &serde_json::Value) -> Option<(i64, i64)> {
    let stop = update.get(STOP_UPDATE)?;
    let stop: StopUpdate = serde_json::from_value(stop.clone()).ok()?;
    Some((stop.chat.id, stop.draft_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_reaches_only_the_reply_of_its_own_chat_and_draft() {
        let stops = Arc::new(Stops::default());
        let reply = stops.register(7, 100);
        assert!(!stops.stop(8, 100), "another chat's stop");
        assert!(!reply.token().is_cancelled());
        assert!(stops.stop(7, 100));
        assert!(reply.token().is_cancelled());
        drop(reply);
        assert!(!stops.stop(7, 100), "a finished reply is gone");
    }

    #[test]
    fn stop_updates_are_read_from_their_json() {
        let update = serde_json::json!({
            "update_id": 5,
            "stopped_message_generation": {"chat": {"id": 7, "type": "private"}, "draft_id": 100}
        });
        assert_eq!(parse(&update), Some((7, 100)));
        assert_eq!(
            parse(&serde_json::json!({"update_id": 6, "message": {}})),
            None
        );
    }
}
