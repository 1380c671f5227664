//! The allow-lists at the door: whether a received message may enter the inbox at all. It is
//! decided as the update arrives — by long polling or webhook alike — so nothing about a
//! stranger (their text, their id, the update itself) is ever stored.
//!
//! - **Private chats**: a message from a user on `ALLOWED_USER_IDS` (anyone, with `*`) is let
//!   in. Anyone else is acknowledged to Telegram and dropped, and told once
//!   ([`texts::NOT_ALLOWED`]), then never again while this process remembers them (the last
//!   [`REMEMBERED_REFUSALS`] strangers).
//! - **Groups**: a group on `ALLOWED_CHAT_IDS` is let in whole — every member's message, so
//!   the butler can follow the conversation and answer whoever addresses it (the group has its
//!   own memory; no member's personal one is involved). In any other group the butler says so
//!   once ([`texts::GROUP_NOT_ALLOWED`]) and leaves it, storing nothing: no member is refused
//!   in public one by one, and a stranger's group cannot keep the butler as a listener.
//! - Messages without a human sender (channel posts, other bots) are dropped silently: the
//!   butler never answers them, so there is nothing to keep them for.
//!
//! The refusal is sent in a task of its own, so receiving never waits on Telegram; it is
//! best-effort (the outbox's retries, nothing stored to retry from after a restart).

use std::sync::{Arc, Mutex, MutexGuard};

use butler_domain::UserId;
use teloxide::types::{Update, UpdateKind};

use super::config::{Access, GroupConfig};
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
    groups: GroupConfig,
    bot: teloxide::Bot,
    outbox: Outbox,
    refused: Mutex<RecentKeys<UserId>>,
    /// Groups told and left (so a burst of their messages is answered once).
    left: Mutex<RecentKeys<i64>>,
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
    pub(crate) fn new(
        access: Access,
        groups: GroupConfig,
        bot: teloxide::Bot,
        outbox: Outbox,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                access,
                groups,
                bot,
                outbox,
                refused: Mutex::new(RecentKeys::new(REMEMBERED_REFUSALS)),
                left: Mutex::new(RecentKeys::new(REMEMBERED_REFUSALS)),
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
        if !message.chat.is_private() {
            return self.admits_group(update.id.0, message.chat.id);
        }
        let allowed = match &self.inner.access {
            Access::Everyone => true,
            Access::Only(ids) => ids.contains(&user),
        };
        if allowed {
            return true;
        }
        let first_time = lock(&self.inner.refused).insert(user);
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

    /// Whether a message of group `chat` may be stored; a group not allowed is told once and
    /// left.
    fn admits_group(&self, update_id: u32, chat: teloxide::types::ChatId) -> bool {
        if self.inner.groups.allows(chat.0) {
            return true;
        }
        let first_time = lock(&self.inner.left).insert(chat.0);
        tracing::info!(
            update_id,
            chat_id = chat.0,
            leaving = first_time,
            "group is not on ALLOWED_CHAT_IDS; nothing stored"
        );
        if first_time {
            let outbox = self.inner.outbox.clone();
            let bot = self.inner.bot.clone();
            tokio::spawn(async move {
                use teloxide::requests::Requester as _;
                if let Err(error) = outbox.send(chat, None, texts::GROUP_NOT_ALLOWED).await {
                    tracing::warn!(%error, "notice to a group not allowed not delivered");
                }
                if let Err(error) = bot.leave_chat(chat).await {
                    // Only Telegram's own words: a transport error could carry the bot's URL.
                    let said = match &error {
                        teloxide::RequestError::Api(api) => api.to_string(),
                        _ => "no answer".to_owned(),
                    };
                    tracing::warn!(error = %said, "could not leave a group not allowed");
                }
            });
        }
        false
    }
}
