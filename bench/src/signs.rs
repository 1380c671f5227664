//! What a user sees first, and what the stop button saves (`butler-bench streaming`):
//!
//! - **the first visible sign**: the real bot with the embedded engine (the default
//!   configuration, the test model) against the fake Bot API — in a private chat, from the
//!   update reaching the Bot API to the empty "Thinking…" draft, beside the first draft with
//!   text (what a user saw first before Bot API 10.0); in a group, to the 👀 reaction on an
//!   addressed message, beside the answer's first text;
//! - **a stop**: the same bot asked for a long reply, once left to finish and once stopped by
//!   the draft's stop button as soon as the first words show; the process's CPU time for each,
//!   and the time from the press to the partial reply standing as a message.
//!
//! What it cannot see: a real Telegram client's rendering, the network between Telegram and
//! the bot, and a large model's prompt reading (the test model reads a prompt in tens of
//! milliseconds; a 1.5B model on the same CPU takes seconds, which is what "Thinking…" covers).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use butler_testkit::telegram::{FakeTelegram, GroupMessage};

use crate::backend::{Backend, StoreEnv};
use crate::cpu::process_cpu;
use crate::e2e::{InProcessBot, Receiving, Runtimes, BENCH_GROUP};
use crate::stats::Durations;

/// How long one reply may take before the run is declared broken.
const DEADLINE: Duration = Duration::from_secs(120);

/// Time to the first visible sign, per message.
pub struct Signs {
    /// Private chat: to the empty "Thinking…" draft.
    pub thinking: Durations,
    /// Private chat: to the first draft with text.
    pub first_text: Durations,
    /// Group: to the 👀 reaction on the addressed message.
    pub eyes: Durations,
    /// Group: to the answer's first text (its first `sendMessage`).
    pub group_text: Durations,
}

/// What a stop saves, medians over the pairs.
pub struct Stop {
    /// Pairs measured.
    pub pairs: usize,
    /// Process CPU time of a reply left to finish.
    pub full_cpu: Duration,
    /// Process CPU time of a reply stopped at its first words.
    pub stopped_cpu: Duration,
    /// Characters of the full reply and of the stopped one.
    pub chars: (usize, usize),
    /// From the stop update reaching the Bot API to the partial reply as a message.
    pub to_message: Durations,
}

/// The bot with the embedded engine, and its store: the caller keeps the store as long as the
/// bot runs (dropping it removes the SQLite file's directory).
fn start_embedded(
    rt: &Runtimes,
    gguf: &Path,
    max_tokens: u32,
) -> anyhow::Result<(InProcessBot, StoreEnv)> {
    let store = rt
        .bot
        .block_on(StoreEnv::fresh(Backend::Sqlite, "bench_signs"))?;
    let bot = InProcessBot::start_with(
        rt,
        &store,
        Receiving::Polling,
        &[
            ("LLM_GGUF_PATH", gguf.display().to_string()),
            ("LLM_MAX_TOKENS", max_tokens.to_string()),
            ("LLM_TEMPERATURE", "0".to_owned()),
            ("LLM_TIMEOUT_SECS", "600".to_owned()),
        ],
    )?;
    Ok((bot, store))
}

/// Polls the fake Bot API until `found` gives a value (every 2 ms, up to [`DEADLINE`]); the
/// error says what the Bot API saw since `since`.
async fn poll<T>(
    telegram: &FakeTelegram,
    since: Instant,
    what: &str,
    mut found: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = found() {
            return Ok(value);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not come in {DEADLINE:?}; {}",
            seen_since(telegram, since)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits for `n` messages in `chat`; on a timeout the error says what the fake Bot API saw
/// since `since` (every method, with the chat it named), so a broken run says where it stopped.
async fn wait_messages(
    telegram: &FakeTelegram,
    chat: i64,
    n: usize,
    since: Instant,
) -> anyhow::Result<()> {
    telegram
        .wait_for_messages(chat, n, DEADLINE)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; {}", seen_since(telegram, since)))?;
    Ok(())
}

/// What the fake Bot API received since `since`, call by call (`method(chat) +ms`), and how
/// many updates the bot had not confirmed yet.
fn seen_since(telegram: &FakeTelegram, since: Instant) -> String {
    let calls: Vec<String> = telegram
        .calls()
        .iter()
        .filter(|c| c.at >= since)
        .map(|c| {
            let chat = c.chat_id().map_or_else(String::new, |id| id.to_string());
            let ms = c.at.saturating_duration_since(since).as_millis();
            format!("{}({chat}) +{ms}ms", c.method)
        })
        .collect();
    format!(
        "the Bot API saw {} calls since the update was pushed: [{}]; {} updates unconfirmed",
        calls.len(),
        calls.join(", "),
        telegram.unconfirmed_updates()
    )
}

/// The first visible sign for `messages` private messages (one new user each) and
/// `messages` addressed group messages, with the embedded engine on `gguf`.
///
/// # Errors
/// If the bot does not start or a sign or reply does not come.
pub fn first_signs(rt: &Runtimes, gguf: &Path, messages: usize) -> anyhow::Result<Signs> {
    let (bot, _store) = start_embedded(rt, gguf, 24)?;
    let telegram = &bot.fakes.telegram;
    let (mut thinking, mut first_text, mut eyes, mut group_text) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    rt.harness.block_on(async {
        for i in 0..messages {
            let user = 88_000 + i64::try_from(i).unwrap_or(0);
            let pushed = Instant::now();
            telegram.push_text(user, user, "Добрый вечер! Что посоветуете почитать?");
            wait_messages(telegram, user, 1, pushed).await?;
            let drafts = telegram.drafts(user);
            let empty = drafts
                .iter()
                .find(|d| d.text.is_empty())
                .context("no \"Thinking…\" draft was shown")?;
            let text = drafts
                .iter()
                .find(|d| !d.text.is_empty())
                .map_or_else(
                    || telegram.sent_messages(user).first().map(|_| Instant::now()),
                    |d| Some(d.at),
                )
                .context("no text was shown")?;
            thinking.push(empty.at.saturating_duration_since(pushed));
            first_text.push(text.saturating_duration_since(pushed));
        }
        for i in 0..messages {
            let member = 99_000 + i64::try_from(i).unwrap_or(0);
            let pushed = Instant::now();
            telegram.push_group_text(
                member,
                BENCH_GROUP,
                "Альфред, что посоветуете почитать?",
                GroupMessage::default(),
            );
            let reaction = poll(telegram, pushed, "the 👀 reaction", || {
                telegram
                    .calls_to("setMessageReaction")
                    .into_iter()
                    .find(|c| c.chat_id() == Some(BENCH_GROUP) && c.at >= pushed)
                    .map(|c| c.at)
            })
            .await?;
            let answered = poll(telegram, pushed, "the group answer", || {
                telegram
                    .calls_to("sendMessage")
                    .into_iter()
                    .find(|c| c.chat_id() == Some(BENCH_GROUP) && c.at >= pushed)
                    .map(|c| c.at)
            })
            .await?;
            wait_messages(telegram, BENCH_GROUP, i + 1, pushed).await?;
            // The answer has landed once its reaction is taken back (the second call).
            poll(telegram, pushed, "the reaction's removal", || {
                (telegram
                    .calls_to("setMessageReaction")
                    .iter()
                    .filter(|c| c.chat_id() == Some(BENCH_GROUP) && c.at >= pushed)
                    .count()
                    >= 2)
                    .then_some(())
            })
            .await?;
            eyes.push(reaction.saturating_duration_since(pushed));
            group_text.push(answered.saturating_duration_since(pushed));
        }
        anyhow::Ok(())
    })?;
    bot.stop(rt)?;
    Ok(Signs {
        thinking: Durations::new(thinking),
        first_text: Durations::new(first_text),
        eyes: Durations::new(eyes),
        group_text: Durations::new(group_text),
    })
}

/// One long reply in a private chat, stopped at its first words when `stop`; returns the
/// process CPU time it took, the reply's length, and the press-to-message time.
async fn one_reply(
    telegram: &FakeTelegram,
    user: i64,
    stop: bool,
) -> anyhow::Result<(Duration, usize, Option<Duration>)> {
    let before = process_cpu(std::process::id());
    let pushed = Instant::now();
    telegram.push_text(
        user,
        user,
        "Расскажите, пожалуйста, длинную историю о дворецком, который служил в старом \
         английском поместье, со всеми подробностями.",
    );
    let mut pressed = None;
    if stop {
        let draft = poll(telegram, pushed, "the first words", || {
            telegram
                .drafts(user)
                .into_iter()
                .find(|d| !d.text.is_empty())
        })
        .await?;
        pressed = Some(Instant::now());
        telegram.push_stop(user, draft.draft_id);
    }
    wait_messages(telegram, user, 1, pushed).await?;
    let landed = Instant::now();
    // Whatever runs on after the message (storing the turn) is part of the reply's cost.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = process_cpu(std::process::id()).saturating_sub(before);
    let chars = telegram
        .sent_messages(user)
        .iter()
        .map(|m| m.text.chars().count())
        .sum();
    Ok((
        cpu,
        chars,
        pressed.map(|p| landed.saturating_duration_since(p)),
    ))
}

/// `pairs` long replies (`max_tokens`) with the embedded engine on `gguf`, each once left to
/// finish and once stopped at its first words, in turn.
///
/// # Errors
/// If the bot does not start or a reply does not come.
pub fn stop_savings(
    rt: &Runtimes,
    gguf: &Path,
    pairs: usize,
    max_tokens: u32,
) -> anyhow::Result<Stop> {
    let (bot, _store) = start_embedded(rt, gguf, max_tokens)?;
    let telegram = &bot.fakes.telegram;
    let (mut full, mut stopped, mut to_message) = (Vec::new(), Vec::new(), Vec::new());
    let (mut full_chars, mut stopped_chars) = (Vec::new(), Vec::new());
    rt.harness.block_on(async {
        for i in 0..pairs {
            let user = 66_000 + 2 * i64::try_from(i).unwrap_or(0);
            let (cpu, chars, _) = one_reply(telegram, user, false).await?;
            full.push(cpu);
            full_chars.push(chars);
            let (cpu, chars, took) = one_reply(telegram, user + 1, true).await?;
            stopped.push(cpu);
            stopped_chars.push(chars);
            to_message.extend(took);
        }
        anyhow::Ok(())
    })?;
    bot.stop(rt)?;
    let median = |values: &mut Vec<usize>| {
        values.sort_unstable();
        values.get(values.len() / 2).copied().unwrap_or(0)
    };
    Ok(Stop {
        pairs,
        full_cpu: Durations::new(full).p50(),
        stopped_cpu: Durations::new(stopped).p50(),
        chars: (median(&mut full_chars), median(&mut stopped_chars)),
        to_message: Durations::new(to_message),
    })
}
