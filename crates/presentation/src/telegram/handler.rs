//! One incoming message, start to finish: who sent it, whether they may, what it is (text,
//! `/start`, voice, something else), and the answer — with the typing indicator running while
//! the butler thinks.
//!
//! Logs: one span per update with `update_id`, `user_id` and `chat_id`; message and reply text
//! only at `debug`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use butler_application::{
    ObserveInput, ObserveMessageUseCase, PersonalizedReplyUseCase, ReplyInput,
};
use butler_domain::ports::{AudioClip, SpeechToText, UserProfileRepository};
use butler_domain::{Source, UserId, UserLimits};
use futures::StreamExt as _;
use teloxide::net::Download as _;
use teloxide::prelude::*;
use teloxide::types::{FileId, Me, MessageKind, ReactionType, UpdateId, Voice};
use tracing::Instrument as _;

use super::config::BotConfig;
use super::drafts::Drafts;
use super::edits::{Edits, Target};
use super::group;
use super::limits::{UserLimiter, Verdict};
use super::outbox::{Outbox, TypingGuard};
use super::redact::Redactor;
use super::texts;
use super::TelegramObserver;

/// What a message is, as far as the butler cares.
#[derive(Debug)]
enum Incoming<'a> {
    Start,
    Text(&'a str),
    Voice(&'a Voice),
    Unsupported,
    Ignored,
}

fn classify(message: &Message) -> Incoming<'_> {
    if let Some(text) = message.text() {
        let command = text.split_whitespace().next().unwrap_or_default();
        let command = command.split('@').next().unwrap_or_default();
        return if matches!(command, "/start" | "/help") {
            Incoming::Start
        } else {
            Incoming::Text(text)
        };
    }
    if let Some(voice) = message.voice() {
        return Incoming::Voice(voice);
    }
    match message.kind {
        // Stickers, photos, documents, audio, video, locations, polls, ...
        MessageKind::Common(_) => Incoming::Unsupported,
        // Service messages (members joined, pinned, ...) are not addressed to the butler.
        _ => Incoming::Ignored,
    }
}

/// A voice note that could not be fetched.
#[derive(Debug)]
enum FetchError {
    TooLarge,
    Failed(String),
}

/// What the handler shares with the rest of the bot: who the bot is (once `getMe` answered),
/// the replies a person may stop, and whether rich messages are sent.
pub(crate) struct Shared {
    pub(crate) me: Arc<OnceLock<Me>>,
    pub(crate) stops: Arc<super::stops::Stops>,
    pub(crate) rich: Arc<super::rich::Rich>,
}

/// Answers messages; shared by every answering task.
pub(crate) struct Handler {
    reply: Arc<PersonalizedReplyUseCase>,
    observe: Arc<ObserveMessageUseCase>,
    /// The bot itself (for mentions in groups), once `getMe` answered.
    me: Arc<OnceLock<Me>>,
    edits: Arc<Edits>,
    stt: Option<Arc<dyn SpeechToText>>,
    config: BotConfig,
    bot: Bot,
    outbox: Outbox,
    redactor: Redactor,
    profiles: Arc<dyn UserProfileRepository>,
    observer: Option<Arc<dyn TelegramObserver>>,
    drafts: Arc<Drafts>,
    limiter: UserLimiter,
    /// Reminder requests in private chats; `None` = reminders are off.
    reminders: Option<Arc<butler_application::reminders::ManageRemindersUseCase>>,
    /// Time zone proposals from the conversation; `None` = off.
    zones: Option<Arc<butler_application::reminders::ZoneOfferUseCase>>,
    /// Reminders offered from memory (`/offers`, the offers' buttons); `None` = off.
    offers: Option<Arc<butler_application::reminders::ReminderOfferUseCase>>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("config", &self.config)
            .field("stt", &self.stt.is_some())
            .finish_non_exhaustive()
    }
}

impl Handler {
    pub(crate) fn new(
        deps: super::BotDeps,
        config: BotConfig,
        bot: Bot,
        redactor: Redactor,
        shared: Shared,
    ) -> Self {
        let Shared { me, stops, rich } = shared;
        let outbox = Outbox::new(
            bot.clone(),
            config.clone(),
            redactor.clone(),
            deps.observer.clone(),
        )
        .with_rich(Arc::clone(&rich));
        let drafts = Arc::new(Drafts::new(
            bot.clone(),
            config.drafts,
            config.request_timeout,
            redactor.clone(),
            deps.observer.clone(),
            (stops, rich),
        ));
        let edits = Arc::new(Edits::new(
            bot.clone(),
            outbox.clone(),
            config.groups.pacing,
            config.request_timeout,
            config.max_retry_after,
            redactor.clone(),
        ));
        Self {
            reply: deps.reply,
            observe: deps.observe,
            me,
            edits,
            stt: deps.stt,
            drafts,
            limiter: UserLimiter::new(config.limits),
            config,
            bot,
            outbox,
            redactor,
            profiles: deps.profiles,
            observer: deps.observer,
            zones: deps.reminders.as_ref().and_then(|r| r.zones.clone()),
            offers: deps
                .reminders
                .as_ref()
                .and_then(|r| r.offers.as_ref().map(|o| o.use_case.clone())),
            reminders: deps.reminders.map(|r| r.manage),
        }
    }

    /// Handles one message update that arrived at `arrived` (when the inbox stored it). Never
    /// fails: problems become polite replies and logs.
    pub(crate) async fn handle(
        &self,
        update_id: UpdateId,
        message: Message,
        arrived: time::OffsetDateTime,
    ) {
        let Some(from) = message.from.as_ref().filter(|u| !u.is_bot) else {
            return;
        };
        let Ok(raw_user) = i64::try_from(from.id.0) else {
            return;
        };
        let span = tracing::info_span!(
            "telegram_update",
            update_id = update_id.0,
            user_id = raw_user,
            chat_id = message.chat.id.0,
        );
        let origin = format!("telegram-update:{}", update_id.0);
        if message.chat.is_private() {
            self.handle_from(UserId::new(raw_user), &message, origin, arrived)
                .instrument(span)
                .await;
        } else {
            self.handle_group(UserId::new(raw_user), &message, origin, arrived)
                .instrument(span)
                .await;
        }
    }

    /// A group message: kept as the group's context, and answered only when addressed to the
    /// butler (see [`group`]) — by a reply that streams as edits of one message.
    async fn handle_group(
        &self,
        member: UserId,
        message: &Message,
        origin: String,
        arrived: time::OffsetDateTime,
    ) {
        let Some(conversation) = group::conversation_of(message) else {
            return;
        };
        // A voice note is heard before the decision, so «Альфред, …» said aloud addresses him.
        let (text, source, heard) = match classify(message) {
            Incoming::Text(text) => (text.to_owned(), Source::Text, None),
            Incoming::Start => (
                message.text().unwrap_or_default().to_owned(),
                Source::Text,
                None,
            ),
            Incoming::Voice(voice) => match self.transcribe(voice).await {
                Ok(heard) => (heard.clone(), Source::Voice, Some(heard)),
                Err(_) => {
                    tracing::info!(
                        kind = "voice",
                        "a group voice note was not understood; skipped"
                    );
                    return;
                }
            },
            Incoming::Unsupported => match message.caption() {
                Some(caption) => (caption.to_owned(), Source::Text, None),
                None => return,
            },
            Incoming::Ignored => return,
        };
        let addressed = self
            .me
            .get()
            .is_some_and(|me| group::addressed(message, &text, me, &self.config.groups.names));
        let line = group::line(message, &text);
        if !addressed {
            let kept = self
                .observe
                .execute(ObserveInput {
                    user_id: conversation,
                    text: line,
                    source,
                    origin: Some(origin),
                })
                .await;
            tracing::info!(
                conversation = conversation.get(),
                ?kept,
                "group line kept as context; not addressed"
            );
            if let (Some(observer), butler_application::Observed::Stored { .. }) =
                (&self.observer, kept)
            {
                observer.group_kept();
            }
            return;
        }
        if !self.admit(member, message, arrived).await
            || !self.admit(conversation, message, arrived).await
        {
            return;
        }
        tracing::info!(
            kind = source.code(),
            conversation = conversation.get(),
            "addressed in a group"
        );
        let started = Instant::now();
        self.react(message, Some("👀")).await;
        let typing = self.outbox.typing(message.chat.id);
        let input = ReplyInput {
            user_id: conversation,
            text: line,
            source,
            origin: Some(origin),
        };
        let target = Target {
            chat: message.chat.id,
            reply_to: message.id,
            thread: message.thread_id.filter(|_| message.is_topic_message),
        };
        let writer = self.edits.start(target);
        let outcome = tokio::time::timeout(
            self.config.reply_timeout,
            self.reply.execute_streaming(input, &writer),
        )
        .await;
        typing.stop().await;
        let text = self.reply_text(outcome, heard.as_deref());
        match writer.finish(&text).await {
            Ok(parts) => {
                tracing::info!(
                    parts,
                    latency_ms = millis(started.elapsed()),
                    "group reply sent"
                );
                if let Some(observer) = &self.observer {
                    observer.group_answered();
                }
            }
            Err(error) => tracing::warn!(%error, "group reply not delivered"),
        }
        self.react(message, None).await;
    }

    /// Sets the butler's reaction to `message` (`None` takes it away). Best effort: a group
    /// that forbids reactions just gets none.
    async fn react(&self, message: &Message, emoji: Option<&str>) {
        let reaction: Vec<ReactionType> = emoji
            .map(|emoji| ReactionType::Emoji {
                emoji: emoji.to_owned(),
            })
            .into_iter()
            .collect();
        let request = self
            .bot
            .set_message_reaction(message.chat.id, message.id)
            .reaction(reaction)
            .send();
        match tokio::time::timeout(self.config.request_timeout, request).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::debug!(error = %self.redactor.clean(&error), "reaction not set");
            }
            Err(_) => tracing::debug!("reaction got no answer in time"),
        }
    }

    async fn handle_from(
        &self,
        user_id: UserId,
        message: &Message,
        origin: String,
        arrived: time::OffsetDateTime,
    ) {
        if !self.config.allows(user_id) {
            // Strangers are kept out before the inbox (`gate.rs`); this is an update stored
            // while the list was wider (a restart with a narrower `ALLOWED_USER_IDS`).
            tracing::info!("user no longer on the allow-list; dropped unanswered");
            return;
        }
        if !self.admit(user_id, message, arrived).await {
            return;
        }
        let started = Instant::now();
        match classify(message) {
            Incoming::Start => {
                tracing::info!(kind = "start", "greeting");
                self.deliver(message, texts::GREETING, started).await;
            }
            Incoming::Text(text) => {
                tracing::info!(
                    kind = "text",
                    chars = text.chars().count(),
                    "message received"
                );
                tracing::debug!(text, "message text");
                let said = ReplyInput {
                    user_id,
                    text: text.to_owned(),
                    source: Source::Text,
                    origin: Some(origin),
                };
                self.answer_said(message, said, None, started).await;
            }
            Incoming::Voice(voice) => {
                tracing::info!(
                    kind = "voice",
                    duration_secs = voice.duration.seconds(),
                    bytes = voice.file.size,
                    "voice note received"
                );
                self.answer_voice(user_id, message, voice, origin, started)
                    .await;
            }
            Incoming::Unsupported => {
                tracing::info!(kind = "unsupported", "content the butler does not read");
                self.deliver(message, texts::UNSUPPORTED, started).await;
            }
            Incoming::Ignored => tracing::debug!("service message ignored"),
        }
    }

    /// The answer to a private message about reminders (`/reminders`, «напомни …», «какие у
    /// меня напоминания?», «отмени …», «перенеси …») — empty when it was already sent, with
    /// buttons; `None` for any other message (the butler answers it as usual).
    async fn reminder_reply(
        &self,
        user_id: UserId,
        message: &Message,
        text: &str,
    ) -> Option<String> {
        let manage = self.reminders.as_ref()?;
        let language = self.language_of(user_id).await;
        let now = time::OffsetDateTime::now_utc();
        let command = text.split_whitespace().next().unwrap_or_default();
        if command.split('@').next() == Some("/reminders") {
            tracing::info!(kind = "reminders", "reminders listed");
            let zone = manage.zone_of(user_id).await;
            let listed = manage.list(user_id, &zone, language, now).await;
            let Ok(listed) = listed else {
                return Some(manage.unavailable_text(language).to_owned());
            };
            let pending = manage
                .store()
                .list_pending(user_id)
                .await
                .unwrap_or_default();
            if pending.is_empty() {
                return Some(listed);
            }
            let buttons: Vec<_> = pending
                .iter()
                .enumerate()
                .map(|(i, r)| (i + 1, r.id, r.text.clone()))
                .collect();
            let request = self
                .bot
                .send_message(message.chat.id, listed)
                .reply_markup(super::reminders::cancel_keyboard(&buttons));
            match tokio::time::timeout(self.config.request_timeout, request.send()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %self.redactor.clean(&error), "reminder list not sent");
                }
                Err(_) => tracing::warn!("reminder list got no answer in time"),
            }
            // Sent above, with its buttons: nothing more to say.
            return Some(String::new());
        }
        if command.split('@').next() == Some("/offers") {
            let Some(offers) = &self.offers else {
                return Some(offers_unavailable(language).to_owned());
            };
            let on = match text
                .split_whitespace()
                .nth(1)
                .map(str::to_lowercase)
                .as_deref()
            {
                Some("on" | "вкл" | "да") => Some(true),
                Some("off" | "выкл" | "нет") => Some(false),
                _ => None,
            };
            tracing::info!(kind = "offers", "reminder offers switch");
            return Some(offers.switch(user_id, on).await);
        }
        let reply = manage
            .execute(butler_application::reminders::ReminderMessage {
                user: user_id,
                chat_id: message.chat.id.0,
                text,
                message_id: Some(message.id.0),
                language,
                zone: None,
                now,
            })
            .await?;
        tracing::info!(kind = "reminder", "reminder request answered");
        Some(reply)
    }

    /// After a private message that says where the user lives (or once a stored fact does):
    /// the proposal of that city's time zone, with yes/no buttons. Set only on "yes".
    async fn offer_zone(&self, user_id: UserId, message: &Message, text: &str) {
        let Some(zones) = &self.zones else {
            return;
        };
        let Some(offer) = zones.offer(user_id, text).await else {
            return;
        };
        let language = self.language_of(user_id).await;
        let request = self
            .bot
            .send_message(message.chat.id, offer.question)
            .reply_markup(super::reminders::zone_keyboard(&offer.zone, language));
        match tokio::time::timeout(self.config.request_timeout, request.send()).await {
            Ok(Ok(_)) => tracing::info!(kind = "time_zone_offer", "time zone proposed"),
            Ok(Err(error)) => {
                tracing::warn!(error = %self.redactor.clean(&error), "time zone proposal not sent");
            }
            Err(_) => tracing::warn!("time zone proposal got no answer in time"),
        }
    }

    async fn language_of(&self, user_id: UserId) -> butler_domain::Language {
        match self.profiles.get(user_id).await {
            Ok(Some(profile)) => profile.language,
            _ => butler_domain::Language::default(),
        }
    }

    /// A press of a `/reminders` cancel button: cancels that reminder (the presser's own only)
    /// and says so.
    pub(crate) async fn handle_button(&self, query: teloxide::types::CallbackQuery) {
        let Some(manage) = &self.reminders else {
            return;
        };
        let Ok(raw) = i64::try_from(query.from.id.0) else {
            return;
        };
        let user_id = UserId::new(raw);
        if !self.config.allows(user_id) {
            return;
        }
        if let Some((zone, accepted)) = query
            .data
            .as_deref()
            .and_then(super::reminders::zone_answer)
        {
            let Some(zones) = &self.zones else {
                return;
            };
            let text = zones.answer(user_id, zone, accepted).await;
            tracing::info!(
                user_id = raw,
                kind = "time_zone_button",
                accepted,
                "time zone proposal answered"
            );
            self.acknowledge(&query, text).await;
            return;
        }
        if let Some((fact, accepted)) = query
            .data
            .as_deref()
            .and_then(super::reminders::offer_answer)
        {
            let Some(offers) = &self.offers else {
                return;
            };
            let text = offers.answer(user_id, fact, accepted).await;
            tracing::info!(
                user_id = raw,
                kind = "reminder_offer_button",
                accepted,
                "reminder offer answered"
            );
            self.acknowledge(&query, text).await;
            return;
        }
        let Some(id) = query
            .data
            .as_deref()
            .and_then(super::reminders::cancelled_id)
        else {
            return;
        };
        let language = self.language_of(user_id).await;
        let text = manage
            .cancel_by_id(user_id, id, language, time::OffsetDateTime::now_utc())
            .await;
        tracing::info!(
            user_id = raw,
            kind = "reminder_button",
            "reminder cancel button pressed"
        );
        self.acknowledge(&query, text).await;
    }

    /// Answers a button press with `text`: as the press's notice and as a message in the chat.
    async fn acknowledge(&self, query: &teloxide::types::CallbackQuery, text: String) {
        let answer = self
            .bot
            .answer_callback_query(query.id.clone())
            .text(text.clone());
        if let Ok(Err(error)) =
            tokio::time::timeout(self.config.request_timeout, answer.send()).await
        {
            tracing::debug!(error = %self.redactor.clean(&error), "button press not acknowledged");
        }
        if let Some(chat) = query.message.as_ref().map(|m| m.chat().id) {
            if let Err(error) = self.outbox.send(chat, None, &text).await {
                tracing::warn!(%error, "button press not confirmed to the user");
            }
        }
    }

    /// Applies the rate limit and the daily quota (with the user's exceptions from the
    /// profile), judged at the message's arrival. A refused message is answered once per
    /// streak and goes no further.
    async fn admit(
        &self,
        user_id: UserId,
        message: &Message,
        arrived: time::OffsetDateTime,
    ) -> bool {
        if matches!(classify(message), Incoming::Ignored) {
            return true;
        }
        let exceptions = match self.profiles.get(user_id).await {
            Ok(profile) => profile.map(|p| p.limits).unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "profile unavailable; applying the default limits");
                UserLimits::default()
            }
        };
        let (reason, first, text) = match self.limiter.admit(user_id, &exceptions, arrived) {
            Verdict::Allowed => return true,
            Verdict::TooFast { retry_after, first } => {
                ("rate", first, texts::too_fast(retry_after))
            }
            Verdict::QuotaExhausted { quota, first } => {
                ("quota", first, texts::quota_exhausted(quota))
            }
        };
        tracing::info!(
            reason,
            told = first,
            "message refused by a limit; nothing stored"
        );
        if let Some(observer) = &self.observer {
            observer.refused(reason);
        }
        if first {
            self.deliver(message, &text, Instant::now()).await;
        }
        false
    }

    /// Runs the use case (bounded by the reply deadline) and sends its answer.
    async fn answer(
        &self,
        message: &Message,
        input: ReplyInput,
        heard: Option<&str>,
        typing: TypingGuard,
        started: Instant,
    ) {
        // Private chats see the reply growing as a live draft; groups get "typing…" and the
        // finished message.
        let outcome = if message.chat.is_private() && self.drafts.enabled() {
            let quote_chars = self.config.voice_quote_chars;
            let decorate: Box<dyn Fn(&str) -> String + Send + Sync> = match heard {
                Some(heard) if quote_chars > 0 => {
                    let heard = heard.to_owned();
                    Box::new(move |text| texts::voice_reply(&heard, text, quote_chars))
                }
                _ => Box::new(str::to_owned),
            };
            let writer = self
                .drafts
                .start(message.chat.id, i64::from(message.id.0), decorate);
            let outcome = tokio::time::timeout(
                self.config.reply_timeout,
                self.reply.execute_streaming(input, &writer),
            )
            .await;
            writer.finish().await;
            outcome
        } else {
            tokio::time::timeout(self.config.reply_timeout, self.reply.execute(input)).await
        };
        typing.stop().await;
        let text = self.reply_text(outcome, heard);
        tracing::debug!(reply = %text, "reply text");
        self.deliver(message, &text, started).await;
    }

    /// The text to send for a reply's `outcome` (the model's answer, or an apology when the
    /// deadline passed), opened by the quote of a voice note's transcript when there was one.
    fn reply_text(
        &self,
        outcome: Result<butler_application::ReplyOutput, tokio::time::error::Elapsed>,
        heard: Option<&str>,
    ) -> String {
        match outcome {
            Ok(output) => {
                tracing::info!(
                    status = output.status.code(),
                    persona_used = output.used_persona,
                    memory_events_used = output.memory_events_used,
                    prompt_tokens = output.prompt_tokens,
                    reply_chars = output.reply.chars().count(),
                    llm_ms = millis(output.llm_time),
                    "reply ready"
                );
                match heard {
                    Some(heard) if self.config.voice_quote_chars > 0 => {
                        texts::voice_reply(heard, &output.reply, self.config.voice_quote_chars)
                    }
                    _ => output.reply,
                }
            }
            Err(_) => {
                tracing::warn!(
                    after_ms = millis(self.config.reply_timeout),
                    "reply deadline passed; apologising"
                );
                texts::TOO_SLOW.to_owned()
            }
        }
    }

    async fn answer_voice(
        &self,
        user_id: UserId,
        message: &Message,
        voice: &Voice,
        origin: String,
        started: Instant,
    ) {
        let typing = self.outbox.typing(message.chat.id);
        let heard = match self.transcribe(voice).await {
            Ok(heard) => heard,
            Err(apology) => {
                typing.stop().await;
                self.deliver(message, &apology, started).await;
                return;
            }
        };
        let said = ReplyInput {
            user_id,
            text: heard,
            source: Source::Voice,
            origin: Some(origin),
        };
        self.answer_said(message, said, Some(typing), started).await;
    }

    /// Answers what the user said, typed or heard in a voice note — spoken or typed,
    /// «напомни …» is a reminder request and «я живу в Перми» a hint of the zone, so a
    /// voice-first user gets the same butler: a reminder request is answered by the reminders,
    /// anything else by the model; then the words are looked through for where the user lives.
    /// `typing` is the indicator already shown (while a voice note was transcribed), or `None`
    /// to show one only while the model answers.
    async fn answer_said(
        &self,
        message: &Message,
        said: ReplyInput,
        typing: Option<TypingGuard>,
        started: Instant,
    ) {
        let (user_id, text) = (said.user_id, said.text.clone());
        if let Some(reply) = self.reminder_reply(user_id, message, &text).await {
            if let Some(typing) = typing {
                typing.stop().await;
            }
            if !reply.is_empty() {
                self.deliver(message, &reply, started).await;
            }
        } else {
            let typing = typing.unwrap_or_else(|| self.outbox.typing(message.chat.id));
            let heard = (said.source == Source::Voice).then_some(text.as_str());
            self.answer(message, said, heard, typing, started).await;
        }
        self.offer_zone(user_id, message, &text).await;
    }

    /// What a voice note says (trimmed, never empty), or the apology to send instead: no
    /// speech-to-text, too long or large to fetch, a failed download or transcription.
    async fn transcribe(&self, voice: &Voice) -> Result<String, String> {
        let Some(stt) = self.stt.clone() else {
            return Err(texts::VOICE_DISABLED.to_owned());
        };
        if voice.duration.duration() > self.config.max_voice_duration {
            tracing::info!("voice note too long; not downloaded");
            return Err(texts::voice_too_long(
                self.config.max_voice_duration.as_secs(),
            ));
        }
        if u64::from(voice.file.size) > self.config.max_voice_bytes {
            tracing::info!("voice note too large; not downloaded");
            return Err(texts::voice_too_large(self.config.max_voice_bytes));
        }
        let fetched = tokio::time::timeout(
            self.config.voice_download_timeout,
            self.fetch(&voice.file.id),
        )
        .await
        .unwrap_or_else(|_| Err(FetchError::Failed("download deadline passed".to_owned())));
        let bytes = match fetched {
            Ok(bytes) => bytes,
            Err(FetchError::TooLarge) => {
                return Err(texts::voice_too_large(self.config.max_voice_bytes));
            }
            Err(FetchError::Failed(error)) => {
                tracing::warn!(%error, "voice note could not be downloaded");
                return Err(texts::VOICE_FAILED.to_owned());
            }
        };
        let clip = AudioClip {
            bytes,
            mime_type: voice
                .mime_type
                .as_ref()
                .map_or_else(|| "audio/ogg".to_owned(), ToString::to_string),
            file_name: "voice.ogg".to_owned(),
            duration: Some(voice.duration.duration()),
        };
        let transcribed =
            tokio::time::timeout(self.config.reply_timeout, stt.transcribe(&clip)).await;
        match transcribed {
            Ok(Ok(transcript)) if !transcript.text.trim().is_empty() => {
                tracing::debug!(transcript = %transcript.text, "voice transcript");
                Ok(transcript.text.trim().to_owned())
            }
            Ok(Ok(_)) => {
                tracing::warn!("speech-to-text heard nothing");
                Err(texts::VOICE_FAILED.to_owned())
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, kind = error.kind(), "speech-to-text failed; nothing stored");
                Err(texts::VOICE_FAILED.to_owned())
            }
            Err(_) => {
                tracing::warn!("speech-to-text deadline passed; nothing stored");
                Err(texts::VOICE_FAILED.to_owned())
            }
        }
    }

    /// `getFile` + download, refusing anything over the size limit as soon as it shows.
    async fn fetch(&self, file_id: &FileId) -> Result<Vec<u8>, FetchError> {
        let max = self.config.max_voice_bytes;
        let file = self
            .bot
            .get_file(file_id.clone())
            .send()
            .await
            .map_err(|e| FetchError::Failed(self.redactor.clean(e)))?;
        if u64::from(file.meta.size) > max {
            return Err(FetchError::TooLarge);
        }
        let mut bytes = Vec::new();
        let mut stream = self.bot.download_file_stream(&file.path);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| FetchError::Failed(self.redactor.clean(e)))?;
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(FetchError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Sends `text` in reply to `message` and logs how it went.
    async fn deliver(&self, message: &Message, text: &str, started: Instant) {
        // In groups, quote the message being answered so the thread stays readable.
        let reply_to = (!message.chat.is_private()).then_some(message.id);
        match self.outbox.send(message.chat.id, reply_to, text).await {
            Ok(parts) => {
                tracing::info!(parts, latency_ms = millis(started.elapsed()), "reply sent");
            }
            Err(error) => tracing::warn!(%error, "reply not delivered"),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `/offers` when the bot runs without reminders offered from memory.
fn offers_unavailable(language: butler_domain::Language) -> &'static str {
    match language {
        butler_domain::Language::Ru => {
            "Увы, сэр, предлагать напоминания о запомненных событиях я здесь не могу: этого нет в моих настройках."
        }
        butler_domain::Language::En => {
            "Alas, sir, I cannot offer reminders of remembered events here: it is not in my settings."
        }
    }
}
