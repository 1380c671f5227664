//! The allow-list at the door: whether a received message may enter the inbox at all. It is
//! decided as the update arrives — by long polling or webhook alike — so nothing about a
//! stranger (their text, their id, the update itself) is ever stored.
//!
//! - A message from a user on `ALLOWED_USER_IDS` (anyone, with `*`) is let in.
//! - A message from anyone else is acknowledged to Telegram and dropped. In a **private chat**
//!   the sender is told once ([`texts::NOT_ALLOWED`]), then never again while this process
//!   remembers them (the last [`REMEMBERED_REFUSALS`] strangers). In a **group** the butler
//!   stays silent: a public refusal to each member who speaks would flood the group, and the
//!   group already sees that the butler answers only its owner.
//! - Messages without a human sender (channel posts, other bots) are dropped silently: the
//!   butler never answers them, so there is nothing to keep them for.
//!
//! The refusal is sent in a task of its own, so receiving never waits on Telegram; it is
//! best-effort (the outbox's retries, nothing stored to retry from after a restart).

use std::sync::{Arc, Mutex, MutexGuard};

use butler_domain::UserId;
use teloxide::types::{Update, UpdateKind};

use super::config::Access;
use super::outbox::Outbox;
use super::recent::RecentKeys;
use super::texts;

/// How many refused (not allowed) users are remembered, so each is told only once.
pub(crate) const REMEMBERED_REFUSALS: usize = 65_536;

/// Decides who enters the inbox and tells strangers, once, that they do not.
#[derive(Clone)]
pub(crate) struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    access: Access,
    outbox: Outbox,
    refused: Mutex<RecentKeys<UserId>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("access", &self.inner.access)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The set stays consistent even if a holder panicked: every change is one operation.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Gate {
    pub(crate) fn new(access: Access, outbox: Outbox) -> Self {
        Self {
            inner: Arc::new(Inner {
                access,
                outbox,
                refused: Mutex::new(RecentKeys::new(REMEMBERED_REFUSALS)),
            }),
        }
    }

    /// Whether `update` may be stored. Only messages are looked at (other kinds are dropped
    /// before this); a refused private message starts the one-time refusal.
    pub(crate) fn admits(&self, update: &Update) -> bool {
        let UpdateKind::Message(message) = &update.kind else {
            return true;
        };
        let Some(user) = message
            .from
            .as_ref()
            .filter(|user| !user.is_bot)
            .and_then(|user| i64::try_from(user.id.0).ok())
            .map(UserId::new)
        else {
            tracing::debug!(
                update_id = update.id.0,
                "message without a human sender; not stored"
            );
            return false;
        };
        let allowed = match &self.inner.access {
            Access::Everyone => true,
            Access::Only(ids) => ids.contains(&user),
        };
        if allowed {
            return true;
        }
        let private = message.chat.is_private();
        let first_time = private && lock(&self.inner.refused).insert(user);
        tracing::info!(
            update_id = update.id.0,
            user_id = user.get(),
            chat_id = message.chat.id.0,
            told = first_time,
            "user is not on the allow-list; nothing stored"
        );
        if first_time {
            let outbox = self.inner.outbox.clone();
            let chat = message.chat.id;
            tokio::spawn(async move {
                if let Err(error) = outbox.send(chat, None, texts::NOT_ALLOWED).await {
                    tracing::warn!(%error, "refusal to a user off the allow-list not delivered");
                }
            });
        }
        false
    }
}
