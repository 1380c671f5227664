//! Reminders in Telegram: requests in private chats ([`ManageRemindersUseCase`]), the
//! `/reminders` command with a cancel button per reminder, and the scheduler task that fires
//! due reminders ([`FireRemindersUseCase`]) — the same in polling and webhook mode, in every
//! replica (claims under a lease keep each delivery single).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use butler_application::reminders::{
    FireConfig, FireRemindersUseCase, ManageRemindersUseCase, ReminderChannel, ReminderObserver,
    ReminderOfferUseCase, SendError, ZoneOfferUseCase,
};
use butler_domain::reminder::{ReminderId, UserTimeZone};
use butler_domain::Language;
use butler_domain::UserId;
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use teloxide::RequestError;
use tokio_util::sync::CancellationToken;

use super::redact::Redactor;

/// The callback data of a cancel button: this prefix and the reminder's id.
pub(crate) const CANCEL_PREFIX: &str = "rmc:";
/// The callback data of the "yes" to a time zone proposal: this prefix and the IANA name.
pub(crate) const ZONE_YES_PREFIX: &str = "tzy:";
/// The callback data of the "no" to a time zone proposal: this prefix and the IANA name.
pub(crate) const ZONE_NO_PREFIX: &str = "tzn:";
/// The callback data of the "yes" to a reminder offered from memory: this prefix and the fact.
pub(crate) const OFFER_YES_PREFIX: &str = "rmy:";
/// The callback data of the "no" to a reminder offered from memory: this prefix and the fact.
pub(crate) const OFFER_NO_PREFIX: &str = "rmn:";

/// Reminders offered from memory: the use case and the users whose facts were just stored
/// (sent by compressions; each is looked at for dated events to offer).
#[derive(Clone)]
pub struct OfferDeps {
    /// Finds the offers and applies the answers.
    pub use_case: Arc<ReminderOfferUseCase>,
    /// Users whose new facts to look at, as compressions store them.
    pub facts_stored: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<UserId>>>,
}

/// What the bot needs for reminders.
#[derive(Clone)]
pub struct ReminderDeps {
    /// Answers reminder requests.
    pub manage: Arc<ManageRemindersUseCase>,
    /// How due reminders are fired.
    pub fire: FireConfig,
    /// Told what happens to reminders.
    pub observer: Option<Arc<dyn ReminderObserver>>,
    /// Proposes the time zone of a city the user says they live in; `None` = never.
    pub zones: Option<Arc<ZoneOfferUseCase>>,
    /// Reminders offered from memory to users who turned them on; `None` = never.
    pub offers: Option<OfferDeps>,
}

impl std::fmt::Debug for ReminderDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReminderDeps")
            .field("fire", &self.fire)
            .finish_non_exhaustive()
    }
}

/// Sends reminders as plain messages: one `sendMessage`, retried (by the next round) only when
/// Telegram surely did not deliver it.
pub(crate) struct TelegramChannel {
    pub(crate) bot: Bot,
    pub(crate) timeout: Duration,
    pub(crate) redactor: Redactor,
}

#[async_trait]
impl ReminderChannel for TelegramChannel {
    async fn send(&self, chat_id: i64, text: &str) -> Result<(), SendError> {
        match tokio::time::timeout(
            self.timeout,
            self.bot.send_message(ChatId(chat_id), text).send(),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                let detail = self.redactor.clean(&error);
                match &error {
                    RequestError::RetryAfter(_) => Err(SendError::NotSent(detail)),
                    RequestError::Network(e) if e.is_connect() => Err(SendError::NotSent(detail)),
                    _ => Err(SendError::MaybeSent(detail)),
                }
            }
            Err(_) => Err(SendError::MaybeSent(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// Longest the scheduler sleeps between rounds: a reminder set while it sleeps fires at most
/// this late, and a lease left by a crashed replica is retried this often.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// How often delivered and cancelled reminders past retention are removed.
const CLEAN_EVERY: Duration = Duration::from_secs(3600);
/// How long delivered and cancelled reminders are kept.
const RETENTION: time::Duration = time::Duration::days(30);

/// Fires due reminders until `stop`: a round at once, then whenever the next one is due (or
/// every [`POLL`]). A round in flight at `stop` finishes; claims are never left half-done.
pub(crate) async fn fire_loop(
    fire: Arc<FireRemindersUseCase>,
    batch: u32,
    stop: CancellationToken,
) {
    let mut cleaned = tokio::time::Instant::now() - CLEAN_EVERY;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let now = time::OffsetDateTime::now_utc();
        let full = match fire.execute(now).await {
            Ok(outcome) => {
                if outcome.claimed > 0 {
                    tracing::info!(
                        claimed = outcome.claimed,
                        fired = outcome.fired,
                        late = outcome.late,
                        failed = outcome.failed,
                        "reminders fired"
                    );
                }
                outcome.claimed >= batch as usize
            }
            Err(error) => {
                tracing::warn!(%error, "claiming due reminders failed; retrying");
                false
            }
        };
        if full {
            continue;
        }
        if cleaned.elapsed() >= CLEAN_EVERY {
            cleaned = tokio::time::Instant::now();
            match fire.store().delete_finished_before(now - RETENTION).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "old reminders removed"),
                Err(error) => tracing::warn!(%error, "reminder clean-up failed; retrying later"),
            }
        }
        let wait = match fire.store().next_due().await {
            Ok(Some(at)) if at > now => Duration::try_from(at - time::OffsetDateTime::now_utc())
                .unwrap_or_default()
                .min(POLL),
            _ => POLL,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The `/reminders` keyboard: one cancel button per reminder, numbered as in the list.
pub(crate) fn cancel_keyboard(ids: &[(usize, ReminderId, String)]) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(ids.iter().map(|(n, id, text)| {
        let label: String = text.chars().take(24).collect();
        vec![InlineKeyboardButton::callback(
            format!("✖ {n}. {label}"),
            format!("{CANCEL_PREFIX}{id}"),
        )]
    }))
}

/// The reminder a cancel button names.
pub(crate) fn cancelled_id(data: &str) -> Option<ReminderId> {
    data.strip_prefix(CANCEL_PREFIX)?.parse().ok()
}

/// The yes/no buttons under a time zone proposal.
pub(crate) fn zone_keyboard(zone: &UserTimeZone, language: Language) -> InlineKeyboardMarkup {
    let (yes, no) = match language {
        Language::Ru => ("Да, ставьте", "Нет"),
        Language::En => ("Yes, please", "No"),
    };
    InlineKeyboardMarkup::new([vec![
        InlineKeyboardButton::callback(yes, format!("{ZONE_YES_PREFIX}{}", zone.name())),
        InlineKeyboardButton::callback(no, format!("{ZONE_NO_PREFIX}{}", zone.name())),
    ]])
}

/// The zone a proposal's button names and whether it is the "yes".
pub(crate) fn zone_answer(data: &str) -> Option<(&str, bool)> {
    data.strip_prefix(ZONE_YES_PREFIX)
        .map(|zone| (zone, true))
        .or_else(|| data.strip_prefix(ZONE_NO_PREFIX).map(|zone| (zone, false)))
}

/// The yes/no buttons under a reminder offered from memory.
pub(crate) fn offer_keyboard(fact: uuid::Uuid, language: Language) -> InlineKeyboardMarkup {
    let (yes, no) = match language {
        Language::Ru => ("Да, напомните", "Нет"),
        Language::En => ("Yes, please", "No"),
    };
    InlineKeyboardMarkup::new([vec![
        InlineKeyboardButton::callback(yes, format!("{OFFER_YES_PREFIX}{fact}")),
        InlineKeyboardButton::callback(no, format!("{OFFER_NO_PREFIX}{fact}")),
    ]])
}

/// The fact an offer's button names and whether it is the "yes".
pub(crate) fn offer_answer(data: &str) -> Option<(uuid::Uuid, bool)> {
    let (id, accepted) = data
        .strip_prefix(OFFER_YES_PREFIX)
        .map(|id| (id, true))
        .or_else(|| data.strip_prefix(OFFER_NO_PREFIX).map(|id| (id, false)))?;
    Some((id.parse().ok()?, accepted))
}

/// Makes the offers found after each extraction until `stop`: for every user whose facts were
/// just stored, the offers [`ReminderOfferUseCase::find`] returns, each as a message of its own
/// with yes/no buttons in the user's private chat.
pub(crate) async fn offer_loop(
    offers: OfferDeps,
    bot: Bot,
    timeout: Duration,
    redactor: Redactor,
    stop: CancellationToken,
) {
    loop {
        let user = {
            let mut found = offers.facts_stored.lock().await;
            tokio::select! {
                () = stop.cancelled() => return,
                user = found.recv() => user,
            }
        };
        let Some(user) = user else {
            return;
        };
        for offer in offers.use_case.find(user).await {
            let request = bot
                .send_message(ChatId(offer.chat_id), offer.question)
                .reply_markup(offer_keyboard(offer.fact_id, offer.language));
            match tokio::time::timeout(timeout, request.send()).await {
                Ok(Ok(_)) => tracing::info!(kind = "reminder_offer", "reminder offer sent"),
                Ok(Err(error)) => {
                    tracing::warn!(error = %redactor.clean(&error), "reminder offer not sent");
                }
                Err(_) => tracing::warn!("reminder offer got no answer in time"),
            }
        }
    }
}
