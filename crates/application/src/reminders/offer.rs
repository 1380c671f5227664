//! Reminders offered from memory, with consent.
//!
//! When the user has turned offers on (`reminder_offers` in the profile: `/offers on`, or
//! `profile_admin update --reminder-offers on`), the butler looks through their newest
//! current facts after each extraction for an event with a calendar date
//! ([`event_date`]) and offers once to remind them of it («Напомнить вам: «Концерт 15
//! декабря» — в вторник, 15 декабря, в 09:00?») with yes/no buttons. Only "yes" sets a
//! reminder, through [`ManageRemindersUseCase::set_offered`] (limits apply; a double press
//! stores one). Each event (`fact key @ date`) is offered once, whatever the answer: the
//! profile keeps what was offered (`reminder_offers_made`), recorded before the offer is sent.
//! Past dates, dates beyond the reminder horizon, relative days and facts with several dates
//! get no offer.

use std::sync::Arc;

use butler_domain::ports::{Clock, FactRepository, ProfileStoreError, UserProfileRepository};
use butler_domain::profile::Language;
use butler_domain::reminder::{
    event_date, moment_in_words, LocalTime, ReminderId, Resolved, UserTimeZone,
};
use butler_domain::{MemoryFact, UserId, UserProfile};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::manage::ManageRemindersUseCase;
use super::texts::unavailable;
use super::ReminderObserver;

/// An offer to make: the fact it is about (for the answer buttons) and the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderOffer {
    /// The fact the offer is about.
    pub fact_id: Uuid,
    /// The chat to ask in: the user's private chat with the bot.
    pub chat_id: i64,
    /// The question, in the user's language.
    pub question: String,
    /// The user's language (for the buttons).
    pub language: Language,
}

/// How many of the user's newest current facts are looked through for dated events.
const FACTS_LOOKED_AT: usize = 50;

/// Most offers made at once (the rest wait for the next extraction).
const MAX_OFFERS_AT_ONCE: usize = 3;

/// Finds events worth a reminder in what the butler remembers and applies the user's answer.
pub struct ReminderOfferUseCase {
    profiles: Arc<dyn UserProfileRepository>,
    facts: Arc<dyn FactRepository>,
    manage: Arc<ManageRemindersUseCase>,
    clock: Arc<dyn Clock>,
    horizon: Duration,
    observer: Option<Arc<dyn ReminderObserver>>,
}

impl std::fmt::Debug for ReminderOfferUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReminderOfferUseCase")
            .field("horizon", &self.horizon)
            .finish_non_exhaustive()
    }
}

impl ReminderOfferUseCase {
    /// A use case over the profiles and facts; reminders are set through `manage`, no further
    /// ahead than `horizon` (the reminders' own `REMINDER_HORIZON_DAYS`).
    #[must_use]
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        facts: Arc<dyn FactRepository>,
        manage: Arc<ManageRemindersUseCase>,
        clock: Arc<dyn Clock>,
        horizon: Duration,
        observer: Option<Arc<dyn ReminderObserver>>,
    ) -> Self {
        Self {
            profiles,
            facts,
            manage,
            clock,
            horizon,
            observer,
        }
    }

    /// The offers to make to `user` now: none unless they turned offers on (and never for a
    /// group); otherwise one per newly remembered event with a future calendar date within
    /// the horizon that was never offered. They are recorded as offered before they are
    /// returned, so each is made once. Never fails: a storage problem means no offer.
    pub async fn find(&self, user: UserId) -> Vec<ReminderOffer> {
        if user.is_group() {
            return Vec::new();
        }
        let profile = match self.profiles.get(user).await {
            Ok(Some(profile)) if profile.reminder_offers => profile,
            Ok(_) => return Vec::new(),
            Err(error) => {
                tracing::warn!(%error, "profile unavailable; no reminder offer");
                return Vec::new();
            }
        };
        let facts = match self.facts.current(user, FACTS_LOOKED_AT).await {
            Ok(facts) => facts,
            Err(error) => {
                tracing::warn!(%error, "facts unavailable; no reminder offer");
                return Vec::new();
            }
        };
        let zone = self.manage.zone_of(user).await;
        let now = self.clock.now();
        let mut found: Vec<(String, &MemoryFact, Resolved)> = Vec::new();
        for fact in &facts {
            let Some((key, resolved)) = self.event_of(fact, &zone, now) else {
                continue;
            };
            let fresh = !profile.reminder_offers_made.contains(&key)
                && !found.iter().any(|(k, _, _)| *k == key);
            if fresh && found.len() < MAX_OFFERS_AT_ONCE {
                found.push((key, fact, resolved));
            }
        }
        if found.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = found.iter().map(|(k, _, _)| k.clone()).collect();
        let recorded = self
            .change(user, |p| {
                for key in &keys {
                    p.record_offer(key);
                }
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "reminder offers not recorded; not made");
            return Vec::new();
        }
        let today = LocalTime::of(now, &zone);
        let language = profile.language;
        found
            .into_iter()
            .map(|(_, fact, resolved)| {
                if let Some(observer) = &self.observer {
                    observer.offered();
                }
                tracing::info!("reminder offered from memory");
                ReminderOffer {
                    fact_id: fact.id,
                    chat_id: user.get(),
                    question: question(
                        language,
                        &fact.text,
                        &moment_in_words(&resolved.local, &today, language),
                    ),
                    language,
                }
            })
            .collect()
    }

    /// Applies the user's answer to the offer about `fact_id`; the reply to show. Only an
    /// offer that was made can be accepted; "no" only records the answer (the event was
    /// already marked offered).
    pub async fn answer(&self, user: UserId, fact_id: Uuid, accepted: bool) -> String {
        let profile = match self.profiles.get(user).await {
            Ok(Some(profile)) => profile,
            Ok(None) | Err(_) => return unavailable(Language::default()).to_owned(),
        };
        let language = profile.language;
        let now = self.clock.now();
        let zone = self.manage.zone_of(user).await;
        let fact = self.fact(user, fact_id).await;
        let offered = fact.as_ref().and_then(|fact| {
            let date = event_date(&fact.text, LocalTime::of(fact.created_at, &zone).date())?;
            let key = offer_key(fact, &date.iso());
            profile
                .reminder_offers_made
                .contains(&key)
                .then_some((fact, date))
        });
        let Some((fact, date)) = offered else {
            return stale(language).to_owned();
        };
        if let Some(observer) = &self.observer {
            observer.offer_answered(accepted);
        }
        tracing::info!(accepted, "reminder offer answered");
        if !accepted {
            return declined(language).to_owned();
        }
        let resolved = match date.when().resolve(now, &zone) {
            Ok(resolved) => resolved,
            Err(_) => return passed(language).to_owned(),
        };
        self.manage
            .set_offered(
                user,
                user.get(),
                &fact.text,
                resolved.at,
                ReminderId::of_offer(fact.id),
                language,
                now,
            )
            .await
            .unwrap_or_else(|()| unavailable(language).to_owned())
    }

    /// The event `fact` states, if any is worth an offer now: its key and resolved moment.
    fn event_of(
        &self,
        fact: &MemoryFact,
        zone: &UserTimeZone,
        now: OffsetDateTime,
    ) -> Option<(String, Resolved)> {
        let stored_on = LocalTime::of(fact.created_at, zone).date();
        let date = event_date(&fact.text, stored_on)?;
        let resolved = date.when().resolve(now, zone).ok()?;
        if resolved.at <= now || resolved.at > now + self.horizon {
            return None;
        }
        Some((offer_key(fact, &date.iso()), resolved))
    }

    /// The fact `fact_id` of the user: among the current ones, else among all.
    async fn fact(&self, user: UserId, fact_id: Uuid) -> Option<MemoryFact> {
        let current = self.facts.current(user, FACTS_LOOKED_AT * 4).await.ok()?;
        if let Some(fact) = current.into_iter().find(|f| f.id == fact_id) {
            return Some(fact);
        }
        self.facts
            .all(user)
            .await
            .ok()?
            .into_iter()
            .find(|f| f.id == fact_id)
    }

    /// Applies `edit` to the stored profile ([`super::edit_profile`]).
    async fn change(
        &self,
        user: UserId,
        edit: impl Fn(&mut UserProfile),
    ) -> Result<UserProfile, ProfileStoreError> {
        super::edit_profile(self.profiles.as_ref(), self.clock.as_ref(), user, edit).await
    }
}

/// How an offered event is remembered: the fact's key and the event's date.
fn offer_key(fact: &MemoryFact, iso_date: &str) -> String {
    format!("{}@{iso_date}", fact.key.as_str())
}

fn question(language: Language, text: &str, when: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    match language {
        Language::Ru => format!("Позволите напомнить, сэр? «{text}» — напомню {when}."),
        Language::En => format!("Shall I remind you, sir? “{text}” — I would remind you {when}."),
    }
}

fn declined(language: Language) -> &'static str {
    match language {
        Language::Ru => "Как скажете, сэр: напоминать не буду.",
        Language::En => "As you wish, sir: no reminder.",
    }
}

fn passed(language: Language) -> &'static str {
    match language {
        Language::Ru => "Увы, сэр, это время уже прошло.",
        Language::En => "Alas, sir, that time has already passed.",
    }
}

fn stale(language: Language) -> &'static str {
    match language {
        Language::Ru => "Этот вопрос уже неактуален, сэр.",
        Language::En => "That question no longer stands, sir.",
    }
}

impl ReminderOfferUseCase {
    /// Turns offers on or off for `user` from the chat (`/offers on|off`; `None` only tells
    /// the current state); the reply to show.
    pub async fn switch(&self, user: UserId, on: Option<bool>) -> String {
        let (language, current) = match self.profiles.get(user).await {
            Ok(profile) => profile.map_or((Language::default(), false), |p| {
                (p.language, p.reminder_offers)
            }),
            Err(_) => return unavailable(Language::default()).to_owned(),
        };
        let Some(on) = on else {
            return switch_text(language, current, false);
        };
        match self.change(user, |p| p.reminder_offers = on).await {
            Ok(_) => {
                tracing::info!(on, "reminder offers switched by the user");
                switch_text(language, on, true)
            }
            Err(_) => unavailable(language).to_owned(),
        }
    }
}

fn switch_text(language: Language, on: bool, changed: bool) -> String {
    match (language, on, changed) {
        (Language::Ru, true, true) => "Хорошо, сэр: если я запомню событие с датой (концерт 15 декабря), предложу один раз о нём напомнить. Выключить — /offers off.".into(),
        (Language::Ru, false, true) => "Хорошо, сэр: напоминания о запомненных событиях больше предлагать не буду. Включить — /offers on.".into(),
        (Language::Ru, true, false) => "Предложения напомнить о запомненных событиях включены. Выключить — /offers off.".into(),
        (Language::Ru, false, false) => "Предложения напомнить о запомненных событиях выключены. Включить — /offers on.".into(),
        (Language::En, true, true) => "Very well, sir: when I remember an event with a date (a concert on 15 December), I shall offer once to remind you of it. To stop: /offers off.".into(),
        (Language::En, false, true) => "Very well, sir: I shall no longer offer reminders of remembered events. To resume: /offers on.".into(),
        (Language::En, true, false) => "Reminder offers for remembered events are on. To stop: /offers off.".into(),
        (Language::En, false, false) => "Reminder offers for remembered events are off. To start: /offers on.".into(),
    }
}
