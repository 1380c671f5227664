//! Handling reminder requests in a private chat: set, list, cancel, move — and the answer to
//! the butler's own question when a request's time was unclear («во сколько?» — «в 9»).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use butler_domain::ports::{ChangeOutcome, LlmClient, ReminderRepository, UserProfileRepository};
use butler_domain::profile::Language;
use butler_domain::reminder::{
    moment_in_words, AskBack, LocalTime, Reminder, ReminderId, ReminderStatus, UserTimeZone,
};
use butler_domain::UserId;
use time::{Duration, OffsetDateTime};

use super::request::{answers_when, detect, extraction_request, parse_extraction, Intent};
use super::texts;
use super::ReminderObserver;

/// Per-user limits and defaults.
#[derive(Debug, Clone)]
pub struct RemindersConfig {
    /// Most pending reminders one user may have.
    pub max_pending: u32,
    /// How far ahead a reminder may be set.
    pub horizon: Duration,
    /// The zone of users whose profile names none.
    pub default_zone: UserTimeZone,
}

impl Default for RemindersConfig {
    fn default() -> Self {
        Self {
            max_pending: 50,
            horizon: Duration::days(366),
            default_zone: UserTimeZone::new(butler_domain::reminder::FALLBACK_TIME_ZONE)
                .unwrap_or_else(|_| UserTimeZone::utc()),
        }
    }
}

/// One private message that may be about reminders.
#[derive(Debug, Clone)]
pub struct ReminderMessage<'a> {
    /// Who wrote it.
    pub user: UserId,
    /// The private chat (where the reminder is delivered).
    pub chat_id: i64,
    /// The text.
    pub text: &'a str,
    /// The Telegram message it came in, if any: a request handled twice (again after a crash)
    /// then stores one reminder.
    pub message_id: Option<i32>,
    /// The language to answer in.
    pub language: Language,
    /// The user's zone when the caller already knows it; `None` = the one their profile
    /// names (see [`ManageRemindersUseCase::with_profiles`]), else the default.
    pub zone: Option<UserTimeZone>,
    /// Now.
    pub now: OffsetDateTime,
}

/// How long a question about a reminder's time waits for its answer.
pub const ASK_BACK_WINDOW: Duration = Duration::minutes(10);
/// Most questions waiting at once (a bound on memory; beyond it a question is not kept and the
/// user repeats the whole request).
const MAX_ASKED_BACK: usize = 10_000;
/// Longest request kept with its answers (a user answering again and again).
const MAX_ASKED_BACK_CHARS: usize = 1_000;

/// A request whose time the butler asked about, waiting for the answer.
#[derive(Debug, Clone)]
struct AskedBack {
    /// The request as said so far (with earlier answers).
    text: String,
    /// When the question was asked.
    at: OffsetDateTime,
}

/// Answers reminder requests; other messages are left to the reply use case.
///
/// When a request's time is unclear or past, the butler asks back and keeps the request for
/// [`ASK_BACK_WINDOW`] in this process, per conversation (a private chat: its user). The
/// user's next message, if it reads as an answer ([`answers_when`]), completes it: the request
/// and the answer go to the model together. Any other message drops the question. With several
/// replicas an answer handled by another process is taken as a new message.
pub struct ManageRemindersUseCase {
    store: Arc<dyn ReminderRepository>,
    llm: Arc<dyn LlmClient>,
    config: RemindersConfig,
    observer: Option<Arc<dyn ReminderObserver>>,
    asked_back: Mutex<HashMap<UserId, AskedBack>>,
    profiles: Option<Arc<dyn UserProfileRepository>>,
}

impl std::fmt::Debug for ManageRemindersUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManageRemindersUseCase")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ManageRemindersUseCase {
    /// A use case over its ports.
    #[must_use]
    pub fn new(
        store: Arc<dyn ReminderRepository>,
        llm: Arc<dyn LlmClient>,
        config: RemindersConfig,
        observer: Option<Arc<dyn ReminderObserver>>,
    ) -> Self {
        Self {
            store,
            llm,
            config,
            observer,
            asked_back: Mutex::new(HashMap::new()),
            profiles: None,
        }
    }

    /// Reads each user's time zone from their profile (without it, everyone is in the
    /// default zone).
    #[must_use]
    pub fn with_profiles(mut self, profiles: Arc<dyn UserProfileRepository>) -> Self {
        self.profiles = Some(profiles);
        self
    }

    /// The zone of users whose profile names none.
    #[must_use]
    pub fn default_zone(&self) -> &UserTimeZone {
        &self.config.default_zone
    }

    /// The zone `user`'s reminders are resolved and shown in: their profile's, or the default
    /// (also when the profile cannot be read: a reminder is better set than refused).
    pub async fn zone_of(&self, user: UserId) -> UserTimeZone {
        let Some(profiles) = &self.profiles else {
            return self.config.default_zone.clone();
        };
        match profiles.get(user).await {
            Ok(Some(profile)) => profile.zone_or(&self.config.default_zone),
            Ok(None) => self.config.default_zone.clone(),
            Err(error) => {
                tracing::warn!(%error, "profile unavailable; using the default time zone");
                self.config.default_zone.clone()
            }
        }
    }

    /// What to say when the store is unavailable.
    #[must_use]
    pub fn unavailable_text(&self, language: Language) -> &'static str {
        texts::unavailable(language)
    }

    /// The store (for the `/reminders` command and its buttons).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn ReminderRepository> {
        &self.store
    }

    /// The reply to `message` if it is about reminders (or answers the butler's question about
    /// one); `None` for any other message. Never fails: storage and model failures become
    /// polite replies.
    pub async fn execute(&self, message: ReminderMessage<'_>) -> Option<String> {
        let asked = self.take_asked_back(message.user, message.now);
        let language = message.language;
        let zone = match message.zone.clone() {
            Some(zone) => zone,
            None => self.zone_of(message.user).await,
        };
        let intent = match (detect(message.text), asked) {
            // A new request of any kind replaces the question.
            (Some(intent), _) => intent,
            (None, Some(asked)) if answers_when(message.text) => {
                let text = format!("{} — {}", asked.text, message.text.trim());
                let reply = self.set(&message, &zone, &text).await;
                return Some(reply.unwrap_or_else(|()| texts::unavailable(language).to_owned()));
            }
            (None, _) => return None,
        };
        let reply = match intent {
            Intent::Set => self.set(&message, &zone, message.text).await,
            Intent::List => self.list(message.user, &zone, language, message.now).await,
            Intent::Cancel(about) => self.cancel(&message, &about).await,
            Intent::Shift { minutes, about } => self.shift(&message, &zone, minutes, &about).await,
        };
        Some(reply.unwrap_or_else(|()| texts::unavailable(language).to_owned()))
    }

    /// The user's question still waiting for its answer, taken (a question is answered once).
    fn take_asked_back(&self, user: UserId, now: OffsetDateTime) -> Option<AskedBack> {
        let mut asked = self
            .asked_back
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        asked
            .remove(&user)
            .filter(|a| now - a.at <= ASK_BACK_WINDOW)
    }

    /// Keeps `text` as the user's request waiting for the answer to the question just asked.
    fn remember_asked_back(&self, user: UserId, text: &str, now: OffsetDateTime) {
        if text.chars().count() > MAX_ASKED_BACK_CHARS {
            return;
        }
        let mut asked = self
            .asked_back
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if asked.len() >= MAX_ASKED_BACK {
            asked.retain(|_, a| now - a.at <= ASK_BACK_WINDOW);
        }
        if asked.len() < MAX_ASKED_BACK {
            asked.insert(
                user,
                AskedBack {
                    text: text.to_owned(),
                    at: now,
                },
            );
        }
    }

    /// Sets a reminder from `text` (the message, or a request with the answers to the
    /// butler's questions).
    async fn set(
        &self,
        m: &ReminderMessage<'_>,
        zone: &UserTimeZone,
        text: &str,
    ) -> Result<String, ()> {
        let language = m.language;
        let today = LocalTime::of(m.now, zone);
        let request = extraction_request(&today, text);
        let extraction = match self.llm.complete(&request).await {
            Ok(answer) => parse_extraction(&answer.text),
            Err(error) => {
                tracing::warn!(%error, "reminder extraction failed");
                return Ok(texts::not_understood(language).to_owned());
            }
        };
        let Some(extraction) = extraction else {
            return Ok(texts::not_understood(language).to_owned());
        };
        let resolved = match extraction.when.resolve(m.now, zone) {
            Ok(resolved) => resolved,
            Err(why) => {
                // Too far ahead is a refusal, not a question.
                if why != AskBack::TooFar {
                    self.remember_asked_back(m.user, text, m.now);
                }
                return Ok(texts::ask_back(language, why));
            }
        };
        if resolved.at > m.now + self.config.horizon {
            return Ok(texts::too_far(language, self.config.horizon.whole_days()));
        }
        let pending = self.store.count_pending(m.user).await.map_err(|_| ())?;
        if pending >= u64::from(self.config.max_pending) {
            return Ok(texts::too_many(language, self.config.max_pending));
        }
        let Ok(mut reminder) = Reminder::new(
            m.user,
            m.chat_id,
            &extraction.task,
            resolved.at,
            zone,
            m.now,
        ) else {
            return Ok(texts::not_understood(language).to_owned());
        };
        if let Some(message_id) = m.message_id {
            // Stored once however often the message is handled (`add` keeps the first).
            reminder.id = ReminderId::of_message(m.chat_id, message_id);
        }
        self.store.add(&reminder).await.map_err(|_| ())?;
        if let Some(observer) = &self.observer {
            observer.scheduled();
        }
        let when = moment_in_words(&resolved.local, &today, language);
        Ok(texts::confirmed(language, &when, &reminder.text))
    }

    /// Sets the reminder a user accepted from an offer ([`super::ReminderOfferUseCase`]): `text`
    /// at `at`, under `id` (a second press stores nothing new), within the same limits as a
    /// request; the confirmation with the exact time in words.
    ///
    /// # Errors
    /// `()` when the store is unavailable.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_offered(
        &self,
        user: UserId,
        chat_id: i64,
        text: &str,
        at: OffsetDateTime,
        id: ReminderId,
        language: Language,
        now: OffsetDateTime,
    ) -> Result<String, ()> {
        let zone = self.zone_of(user).await;
        if at <= now {
            return Ok(texts::ask_back(language, AskBack::Past));
        }
        if at > now + self.config.horizon {
            return Ok(texts::too_far(language, self.config.horizon.whole_days()));
        }
        let already = self
            .store
            .list_pending(user)
            .await
            .map_err(|_| ())?
            .iter()
            .any(|r| r.id == id);
        if !already {
            let pending = self.store.count_pending(user).await.map_err(|_| ())?;
            if pending >= u64::from(self.config.max_pending) {
                return Ok(texts::too_many(language, self.config.max_pending));
            }
        }
        let Ok(mut reminder) = Reminder::new(user, chat_id, text, at, &zone, now) else {
            return Ok(texts::not_understood(language).to_owned());
        };
        reminder.id = id;
        self.store.add(&reminder).await.map_err(|_| ())?;
        if !already {
            if let Some(observer) = &self.observer {
                observer.scheduled();
            }
        }
        let when = moment_in_words(
            &LocalTime::of(at, &zone),
            &LocalTime::of(now, &zone),
            language,
        );
        Ok(texts::confirmed(language, &when, &reminder.text))
    }

    /// The user's pending reminders as a numbered list.
    ///
    /// # Errors
    /// `()` when the store is unavailable.
    pub async fn list(
        &self,
        user: UserId,
        zone: &UserTimeZone,
        language: Language,
        now: OffsetDateTime,
    ) -> Result<String, ()> {
        let pending = self.store.list_pending(user).await.map_err(|_| ())?;
        if pending.is_empty() {
            return Ok(texts::none_pending(language).to_owned());
        }
        let today = LocalTime::of(now, zone);
        let mut out = texts::list_header(language).to_owned();
        for (i, r) in pending.iter().enumerate() {
            // In the user's zone now (a reminder set before they changed it comes at the
            // same instant, which this shows on their clock).
            let when = moment_in_words(&LocalTime::of(r.due_at, zone), &today, language);
            out.push_str(&format!("\n{}. {when} — {}", i + 1, r.text));
        }
        Ok(out)
    }

    /// The one pending reminder `about` names (or the only one), or the reply to give.
    async fn pick(
        &self,
        m: &ReminderMessage<'_>,
        about: &str,
    ) -> Result<Result<Reminder, String>, ()> {
        let pending = self.store.list_pending(m.user).await.map_err(|_| ())?;
        let words = significant_words(about);
        // No words to go by («перенеси на час позже»): every pending one is a candidate.
        let matching: Vec<&Reminder> = pending
            .iter()
            .filter(|r| {
                let theirs = significant_words(&r.text);
                words.is_empty() || words.iter().any(|w| theirs.iter().any(|t| same_stem(w, t)))
            })
            .collect();
        Ok(match (matching.as_slice(), pending.as_slice()) {
            ([one], _) => Ok((*one).clone()),
            ([], []) => Err(texts::none_pending(m.language).to_owned()),
            ([], _) => Err(texts::no_match(m.language).to_owned()),
            _ => Err(texts::which_one(m.language).to_owned()),
        })
    }

    async fn cancel(&self, m: &ReminderMessage<'_>, about: &str) -> Result<String, ()> {
        let reminder = match self.pick(m, about).await? {
            Ok(r) => r,
            Err(reply) => return Ok(reply),
        };
        Ok(
            match self
                .store
                .cancel(m.user, reminder.id, m.now)
                .await
                .map_err(|_| ())?
            {
                ChangeOutcome::Changed => {
                    if let Some(observer) = &self.observer {
                        observer.cancelled();
                    }
                    texts::cancelled(m.language, &reminder.text)
                }
                ChangeOutcome::NotFound => texts::no_match(m.language).to_owned(),
                ChangeOutcome::Delivering => texts::being_delivered(m.language).to_owned(),
            },
        )
    }

    async fn shift(
        &self,
        m: &ReminderMessage<'_>,
        zone: &UserTimeZone,
        minutes: i64,
        about: &str,
    ) -> Result<String, ()> {
        let reminder = match self.pick(m, about).await? {
            Ok(r) => r,
            Err(reply) => return Ok(reply),
        };
        let due = reminder.due_at + Duration::minutes(minutes);
        if due <= m.now {
            return Ok(texts::ask_back(m.language, AskBack::Past));
        }
        if due > m.now + self.config.horizon {
            return Ok(texts::too_far(m.language, self.config.horizon.whole_days()));
        }
        Ok(
            match self
                .store
                .reschedule(m.user, reminder.id, due, m.now)
                .await
                .map_err(|_| ())?
            {
                ChangeOutcome::Changed => {
                    let today = LocalTime::of(m.now, zone);
                    let when = moment_in_words(&LocalTime::of(due, zone), &today, m.language);
                    texts::moved(m.language, &when, &reminder.text)
                }
                ChangeOutcome::NotFound => texts::no_match(m.language).to_owned(),
                ChangeOutcome::Delivering => texts::being_delivered(m.language).to_owned(),
            },
        )
    }

    /// Cancels the user's reminder `id` (the `/reminders` buttons); the reply to show.
    pub async fn cancel_by_id(
        &self,
        user: UserId,
        id: butler_domain::reminder::ReminderId,
        language: Language,
        now: OffsetDateTime,
    ) -> String {
        let text = match self.store.get(id).await {
            Ok(Some(r)) if r.user_id == user && r.status == ReminderStatus::Pending => r.text,
            Ok(_) => return texts::no_match(language).to_owned(),
            Err(_) => return texts::unavailable(language).to_owned(),
        };
        match self.store.cancel(user, id, now).await {
            Ok(ChangeOutcome::Changed) => {
                if let Some(observer) = &self.observer {
                    observer.cancelled();
                }
                texts::cancelled(language, &text)
            }
            Ok(ChangeOutcome::NotFound) => texts::no_match(language).to_owned(),
            Ok(ChangeOutcome::Delivering) => texts::being_delivered(language).to_owned(),
            Err(_) => texts::unavailable(language).to_owned(),
        }
    }
}

const STOP_WORDS: &[&str] = &[
    "отмени",
    "отменить",
    "удали",
    "удалить",
    "напоминание",
    "напоминания",
    "перенеси",
    "передвинь",
    "сдвинь",
    "позже",
    "раньше",
    "минут",
    "минуты",
    "часа",
    "часов",
    "cancel",
    "delete",
    "reminder",
    "about",
    "move",
    "postpone",
    "later",
    "earlier",
    "hour",
    "hours",
    "minutes",
    "про",
    "the",
    "для",
    "мне",
    "меня",
    "for",
    "час",
    "день",
    "дня",
    "дней",
    "day",
    "days",
    "min",
    "полчаса",
    "half",
    "минуту",
    "one",
];

fn significant_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3 && !STOP_WORDS.contains(w))
        .map(str::to_owned)
        .collect()
}

/// Two forms of one word, roughly: the same first four letters, or three for a four-letter
/// word («маме» ~ «маму», «духовку» ~ «духовка»).
fn same_stem(a: &str, b: &str) -> bool {
    let shorter = a.chars().count().min(b.chars().count());
    let n = (shorter - 1).clamp(3, 4);
    let prefix = |w: &str| w.chars().take(n).collect::<String>();
    prefix(a) == prefix(b)
}
