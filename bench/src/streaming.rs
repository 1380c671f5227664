//! What a user waits for, and the default configuration (`butler-bench streaming`):
//!
//! - **the embedded engine over a Russian conversation**, through the real reply use case on
//!   SQLite with the test model (SmolLM2-135M), prompt reuse on (`LLM_CACHE_SLOTS=4`) against
//!   off (`0`), in one run: per turn the prompt tokens evaluated, the time to the first token
//!   and the whole reply;
//! - **drafts on Telegram**: the real bot against the fake Bot API and a scripted
//!   OpenAI-compatible server streaming a token every 50 ms — time from the update reaching
//!   the Bot API to the first draft, and to the final message;
//! - **the prompt layout**: over a 60-message conversation on the production budget, how much
//!   of each prompt is the previous prompt (by the test model's real tokens);
//! - **the default configuration**: prompt assembly counted by the model's own vocabulary
//!   beside the estimator, and the idle memory of `butler-bot` running the embedded engine.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use butler_application::{ReplyInput, ReplySink};
use butler_domain::ports::{LlmClient, LlmError, LlmReply, LlmRequest, LlmStream, StreamEvent};
use butler_domain::{Source, UserId};
use butler_factory::settings::{Settings, VARIABLES};
use butler_factory::wiring;
use butler_infrastructure::llm::embedded::EmbeddedModel;
use butler_testkit::llm_server::Step;
use futures::StreamExt as _;

use crate::backend::{Backend, StoreEnv};
use crate::cpu::rss;
use crate::e2e::{Fakes, InProcessBot, Runtimes};
use crate::prompt;
use crate::stats::Durations;

/// One turn of the embedded conversation.
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    /// Tokens of the prompt.
    pub prompt_tokens: u32,
    /// Tokens the engine read (the rest came from its cache).
    pub evaluated: u32,
    /// From asking the model to its first piece of text.
    pub first_token: Duration,
    /// The whole reply.
    pub total: Duration,
}

/// Records the usage of each streamed reply as it passes.
struct UsageProbe {
    inner: Arc<dyn LlmClient>,
    last: Arc<Mutex<Option<LlmReply>>>,
}

#[async_trait]
impl LlmClient for UsageProbe {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        self.inner.complete(request).await
    }

    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, LlmError> {
        Ok(keeping_final_reply(
            self.inner.stream(request).await?,
            Arc::clone(&self.last),
        ))
    }
}

/// `stream`, storing its final reply in `last` as it passes (for the reply's usage figures).
pub(crate) fn keeping_final_reply(
    stream: LlmStream,
    last: Arc<Mutex<Option<LlmReply>>>,
) -> LlmStream {
    Box::pin(stream.inspect(move |event| {
        if let Ok(StreamEvent::Done(reply)) = event {
            if let Ok(mut slot) = last.lock() {
                *slot = Some(reply.clone());
            }
        }
    }))
}

/// Discards the streamed text (the timings come from the reply's output).
pub(crate) struct Discard;

impl ReplySink for Discard {
    fn delta(&self, _text: &str) {}
}

/// Russian messages of a conversation with the butler, cycled.
const MESSAGES: &[&str] = &[
    "Добрый вечер, Альфред. Меня зовут Пётр, я играю на виолончели.",
    "Напомните мне, пожалуйста, о концерте в субботу в семь вечера.",
    "Моя сестра Анна приезжает в пятницу поездом из Твери.",
    "Что бы вы посоветовали приготовить к её приезду?",
    "Она не ест мясо, зато обожает грибы и пироги.",
    "А какой чай подать к пирогу с грибами?",
    "Кстати, в понедельник у меня репетиция квартета в десять утра.",
    "Как вы думаете, стоит ли купить новые струны?",
    "Я обычно беру струны Larsen, но они дорогие.",
    "Хорошо, тогда закажу их завтра. Что у нас с погодой?",
];

/// Runs `turns` turns through the reply use case with the embedded engine on a fresh SQLite
/// store; `slots` cached conversations (0 = no prompt reuse), replies of at most `max_tokens`.
///
/// # Errors
/// If the model or the store cannot be opened, or a turn fails.
pub fn embedded_conversation(
    rt: &Runtimes,
    gguf: &Path,
    slots: u32,
    turns: usize,
    max_tokens: u32,
) -> anyhow::Result<Vec<Turn>> {
    let dir = tempfile::tempdir().context("a directory for the SQLite store")?;
    let env: HashMap<&str, String> = [
        ("LLM_GGUF_PATH", gguf.display().to_string()),
        (
            "SQLITE_PATH",
            dir.path().join("butler.db").display().to_string(),
        ),
        ("LLM_CACHE_SLOTS", slots.to_string()),
        // Short replies keep the run to a minute; the prompt grows the same way.
        ("LLM_MAX_TOKENS", max_tokens.to_string()),
        ("LLM_TEMPERATURE", "0".to_owned()),
        ("LLM_TIMEOUT_SECS", "600".to_owned()),
    ]
    .into();
    let settings = Settings::from_sources(None, |name| env.get(name).cloned())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    rt.bot.block_on(async {
        let engine = wiring::engine(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let storage = wiring::open_storage(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let last = Arc::new(Mutex::new(None));
        let probe: Arc<dyn LlmClient> = Arc::new(UsageProbe {
            inner: engine.llm,
            last: Arc::clone(&last),
        });
        let app = wiring::assemble(&settings, storage, probe, engine.counter, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut measured = Vec::with_capacity(turns);
        for i in 0..turns {
            let started = Instant::now();
            let out = app
                .reply
                .execute_streaming(
                    ReplyInput {
                        user_id: UserId::new(1),
                        text: MESSAGES[i % MESSAGES.len()].to_owned(),
                        source: Source::Text,
                        origin: None,
                    },
                    &Discard,
                )
                .await;
            let total = started.elapsed();
            let reply = last
                .lock()
                .ok()
                .and_then(|mut l| l.take())
                .with_context(|| format!("turn {i} produced no reply ({:?})", out.status))?;
            let prompt_tokens = reply.prompt_tokens.unwrap_or(0);
            measured.push(Turn {
                prompt_tokens,
                evaluated: prompt_tokens
                    - reply.cached_prompt_tokens.unwrap_or(0).min(prompt_tokens),
                first_token: out.first_token_time.unwrap_or(out.llm_time),
                total,
            });
        }
        app.compressor.drain().await;
        Ok(measured)
    })
}

/// Drafts through the real bot: per message, from the update reaching the fake Bot API to the
/// first draft with text (after the empty "Thinking…" one), and to the final message.
///
/// # Errors
/// If the bot does not start or a reply does not arrive.
pub fn drafts(rt: &Runtimes, messages: usize) -> anyhow::Result<(Durations, Durations)> {
    let store = rt
        .bot
        .block_on(StoreEnv::fresh(Backend::Sqlite, "bench_drafts"))?;
    let bot = InProcessBot::start(rt, &store)?;
    let reply = "Позвольте доложить, сэр: чай заварен, камин растоплен, газеты разложены \
                 по порядку важности, а ваш зонт высушен и ждёт у двери, как всегда.";
    bot.fakes
        .llm
        .set_default(Step::reply(reply).streamed_every(Duration::from_millis(50)));
    let mut first_draft = Vec::with_capacity(messages);
    let mut final_message = Vec::with_capacity(messages);
    rt.harness.block_on(async {
        for i in 0..messages {
            let user = 77_000 + i64::try_from(i).unwrap_or(0);
            let pushed = Instant::now();
            bot.fakes.telegram.push_text(user, user, "Что нового?");
            bot.fakes
                .telegram
                .wait_for_messages(user, 1, Duration::from_secs(60))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let done = Instant::now();
            let draft = bot
                .fakes
                .telegram
                .drafts(user)
                .iter()
                .find(|d| !d.text.is_empty())
                .map(|d| d.at)
                .context("no draft with text was shown")?;
            first_draft.push(draft.saturating_duration_since(pushed));
            final_message.push(done.saturating_duration_since(pushed));
        }
        anyhow::Ok(())
    })?;
    bot.stop(rt)?;
    Ok((Durations::new(first_draft), Durations::new(final_message)))
}

/// Shares of consecutive prompts over a 60-message conversation on the production budget
/// (estimator counts, as with an LLM server): for each turn, the part of the previous prompt's
/// real tokens that the next prompt starts with.
///
/// # Errors
/// If the default settings do not wire.
pub fn layout_shares(
    rt: &Runtimes,
    model: &EmbeddedModel,
    messages: usize,
) -> anyhow::Result<Vec<f64>> {
    let settings = Settings::from_sources(None, |_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let llm = Arc::new(butler_testkit::fakes::FakeLlm::default());
    rt.bot.block_on(async {
        let inbox = Arc::new(butler_testkit::fakes::InMemoryInbox::default());
        let storage = wiring::Storage {
            profiles: Arc::new(butler_testkit::fakes::InMemoryProfiles::default()),
            memory: Arc::new(butler_testkit::fakes::InMemoryMemory::default()),
            facts: Arc::new(butler_testkit::fakes::InMemoryFacts::default()),
            reminders: Arc::new(butler_testkit::fakes::InMemoryReminders::default()),
            inbox: inbox.clone(),
            leases: inbox,
            sqlite: None,
            backend: "memory",
            location: String::new(),
        };
        let counter = wiring::token_counter(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let app = wiring::assemble(&settings, storage, llm.clone(), counter, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for i in 0..messages {
            llm.push_reply(&format!(
                "Ответ {i}: {}",
                "безусловно, сэр. ".repeat(1 + (i * 5) % 6)
            ));
            app.reply
                .execute(ReplyInput {
                    user_id: UserId::new(5),
                    text: MESSAGES[i % MESSAGES.len()].to_owned(),
                    source: Source::Text,
                    origin: None,
                })
                .await;
        }
        app.compressor.drain().await;
        anyhow::Ok(())
    })?;
    // Replies only: the summariser's requests (compressions) are another conversation.
    let prompts: Vec<Vec<i32>> = llm
        .requests()
        .iter()
        .filter(|r| {
            r.messages
                .last()
                .is_some_and(|m| MESSAGES.iter().any(|text| m.content == *text))
        })
        .map(|r| {
            model
                .prompt_tokens(&r.messages)
                .map(|p| p.tokens.iter().map(|t| t.0).collect())
                .unwrap_or_default()
        })
        .collect();
    Ok(prompts
        .windows(2)
        .map(|p| {
            let shared = p[0].iter().zip(&p[1]).take_while(|(a, b)| a == b).count();
            shared as f64 / p[0].len().max(1) as f64
        })
        .collect())
}

/// Prompt assembly with the model's own token counter (the embedded default) and with the
/// estimator (the HTTP default), on the same full memory.
///
/// # Errors
/// If the model cannot be wired.
pub fn assembly(
    rt: &Runtimes,
    model: Arc<EmbeddedModel>,
    iterations: usize,
) -> anyhow::Result<(Durations, Durations)> {
    rt.bot.block_on(async {
        let settings =
            Settings::from_sources(None, |_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let estimator = prompt::production_service().await?;
        let counter: Arc<dyn butler_domain::ports::TokenCounter> =
            Arc::new(butler_infrastructure::tokens::ModelTokenCounter::new(model));
        let exact = butler_application::PersonalizationService::new(counter, settings.budget)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (profile, slice) = prompt::full_memory(UserId::new(7));
        let message = prompt::new_message();
        let with_model =
            prompt::time_each(iterations, || exact.build(&profile, &slice, &message)).await;
        let with_estimator =
            prompt::time_each(iterations, || estimator.build(&profile, &slice, &message)).await;
        Ok((with_model, with_estimator))
    })
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `VmRSS` of `butler-bot run` with the embedded engine (the default configuration, the test
/// model), idle after start-up and after answering one message; and `VmHWM`.
///
/// # Errors
/// If the bot does not start or does not answer.
pub fn embedded_rss(rt: &Runtimes, bot_bin: &Path, gguf: &Path) -> anyhow::Result<(u64, u64, u64)> {
    let fakes = rt.harness.block_on(Fakes::start());
    let dir = tempfile::tempdir().context("a directory for the SQLite store")?;
    let mut command = Command::new(bot_bin);
    for v in VARIABLES {
        command.env_remove(v.name);
    }
    command
        .env_remove("RUST_LOG")
        .env("SQLITE_PATH", dir.path().join("butler.db"))
        .env("TELEGRAM_BOT_TOKEN", fakes.telegram.token())
        .env("TELEGRAM_API_URL", fakes.telegram.api_url())
        .env("ALLOWED_USER_IDS", "*")
        .env("LLM_GGUF_PATH", gguf)
        .env("LLM_MAX_TOKENS", "32")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = Killed(command.spawn().context("starting butler-bot")?);
    let pid = child.0.id();
    rt.harness
        .block_on(
            fakes
                .telegram
                .wait_for_calls("getUpdates", 1, Duration::from_secs(120)),
        )
        .context("butler-bot with the embedded engine did not start polling")?;
    std::thread::sleep(Duration::from_secs(1));
    let (idle, _) = rss(pid).context("reading the bot's /proc status")?;
    rt.harness.block_on(async {
        fakes.telegram.push_text(42, 42, "Добрый вечер!");
        fakes
            .telegram
            .wait_for_messages(42, 1, Duration::from_secs(120))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    let (after, peak) = rss(pid).context("reading the bot's /proc status")?;
    drop(child);
    Ok((idle, after, peak))
}
