//! Replies before housekeeping and several users at once, on the embedded engine with the test
//! model (`butler-bench concurrency`):
//!
//! - **a long conversation with compressions**: one user, back-to-back turns through the real
//!   reply use case on SQLite with the default configuration; per turn the time to the first
//!   text and to the whole reply, and which turns ran while a compression's model calls
//!   (background requests) were in flight;
//! - **four users at once**: four different conversations asked at the same moment, per user
//!   the time to the first text and to the end, and the aggregate generation rate; with the
//!   default in-flight limit (`LLM_CACHE_SLOTS`, decoded together) against one at a time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use butler_application::ReplyInput;
use butler_domain::ports::{
    LlmClient, LlmError, LlmReply, LlmRequest, LlmStream, Priority, RequestOptions, StreamEvent,
};
use butler_domain::prompt::ChatMessage;
use butler_domain::{Source, UserId};
use butler_factory::settings::Settings;
use butler_factory::wiring;
use futures::StreamExt as _;

use crate::e2e::Runtimes;
use crate::streaming::{keeping_final_reply, Discard};

/// One turn of the long conversation.
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    /// Tokens of the prompt.
    pub prompt_tokens: u32,
    /// Tokens the engine read (the rest came from its cache).
    pub evaluated: u32,
    /// From the message to the first piece of text.
    pub first_text: Duration,
    /// The whole reply.
    pub total: Duration,
    /// Background model calls (summaries, extractions) in flight at some point of the turn.
    pub background: usize,
}

/// Background calls in flight and ever started.
#[derive(Default)]
struct Background {
    in_flight: usize,
    touched: usize,
}

/// Records each streamed reply's usage and the background calls as they pass.
struct Probe {
    inner: Arc<dyn LlmClient>,
    last: Arc<Mutex<Option<LlmReply>>>,
    background: Arc<Mutex<Background>>,
}

impl Probe {
    fn enter(&self, request: &LlmRequest) {
        if request.priority == Priority::Background {
            if let Ok(mut b) = self.background.lock() {
                b.in_flight += 1;
                b.touched += 1;
            }
        }
    }

    fn leave(&self, request: &LlmRequest) {
        if request.priority == Priority::Background {
            if let Ok(mut b) = self.background.lock() {
                b.in_flight = b.in_flight.saturating_sub(1);
            }
        }
    }
}

#[async_trait]
impl LlmClient for Probe {
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        self.enter(request);
        let reply = self.inner.complete(request).await;
        self.leave(request);
        reply
    }

    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, LlmError> {
        Ok(keeping_final_reply(
            self.inner.stream(request).await?,
            Arc::clone(&self.last),
        ))
    }
}

/// English messages (the test model answers English), cycled.
const MESSAGES: &[&str] = &[
    "Good evening, Alfred. My name is Peter and I play the cello.",
    "Please remind me about the concert on Saturday at seven.",
    "My sister Anna arrives on Friday by train from Oxford.",
    "What would you suggest cooking for her arrival?",
    "She does not eat meat, but she loves mushrooms and pies.",
    "Which tea goes well with a mushroom pie?",
    "On Monday I have a quartet rehearsal at ten in the morning.",
    "Do you think I should buy new strings?",
    "I usually buy Larsen strings, but they are expensive.",
    "Fine, I will order them tomorrow. What is the weather like?",
];

fn settings(gguf: &Path, db: &Path, extra: &[(&str, String)]) -> anyhow::Result<Settings> {
    let mut env: HashMap<&str, String> = [
        ("LLM_GGUF_PATH", gguf.display().to_string()),
        ("SQLITE_PATH", db.display().to_string()),
        ("LLM_TEMPERATURE", "0".to_owned()),
        ("LLM_TIMEOUT_SECS", "600".to_owned()),
    ]
    .into();
    for (k, v) in extra {
        env.insert(k, v.clone());
    }
    Settings::from_sources(None, |name| env.get(name).cloned()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `turns` back-to-back turns of one user with the default configuration (compression past
/// the hard limit while the user keeps writing), replies of at most `max_tokens`.
///
/// # Errors
/// If the model or the store cannot be opened, or a turn fails.
pub fn long_conversation(
    rt: &Runtimes,
    gguf: &Path,
    turns: usize,
    max_tokens: u32,
) -> anyhow::Result<Vec<Turn>> {
    let dir = tempfile::tempdir().context("a directory for the SQLite store")?;
    let settings = settings(
        gguf,
        &dir.path().join("butler.db"),
        &[("LLM_MAX_TOKENS", max_tokens.to_string())],
    )?;
    rt.bot.block_on(async {
        let engine = wiring::engine(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let storage = wiring::open_storage(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let last = Arc::new(Mutex::new(None));
        let background = Arc::new(Mutex::new(Background::default()));
        let probe: Arc<dyn LlmClient> = Arc::new(Probe {
            inner: engine.llm,
            last: Arc::clone(&last),
            background: Arc::clone(&background),
        });
        let app = wiring::assemble(&settings, storage, probe, engine.counter, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let snapshot = || {
            background
                .lock()
                .map(|b| (b.in_flight, b.touched))
                .unwrap_or((0, 0))
        };
        let mut measured = Vec::with_capacity(turns);
        for i in 0..turns {
            let (in_flight, touched_before) = snapshot();
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
            let (in_flight_after, touched_after) = snapshot();
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
                first_text: out.first_token_time.unwrap_or(out.llm_time),
                total,
                background: in_flight
                    .max(in_flight_after)
                    .max(touched_after - touched_before),
            });
        }
        app.compressor.drain().await;
        Ok(measured)
    })
}

/// One user of the simultaneous ones.
#[derive(Debug, Clone, Copy)]
pub struct User {
    /// From the common start to the first text.
    pub first_text: Duration,
    /// From the common start to the end of the reply.
    pub done: Duration,
    /// Tokens generated.
    pub tokens: u32,
}

/// `users` different conversations asked at the same moment on one embedded engine with
/// `LLM_MAX_CONCURRENCY=in_flight` (and 4 cache slots); replies of `max_tokens` tokens.
///
/// # Errors
/// If the model cannot be loaded or a request fails.
pub fn simultaneous(
    rt: &Runtimes,
    gguf: &Path,
    users: usize,
    in_flight: usize,
    max_tokens: u32,
) -> anyhow::Result<Vec<User>> {
    let dir = tempfile::tempdir().context("a directory for the SQLite store")?;
    let settings = settings(
        gguf,
        &dir.path().join("butler.db"),
        &[("LLM_MAX_CONCURRENCY", in_flight.to_string())],
    )?;
    rt.bot.block_on(async {
        let engine = wiring::engine(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ask_together(&engine.llm, users, max_tokens).await
    })
}

/// The same `users` conversations asked at the same moment of llama.cpp's own server
/// (`llama-server -np users`, the same GGUF, the same threads, the prompt cache on), through
/// the bot's HTTP client (`LLM_BASE_URL`, `LLM_MAX_CONCURRENCY=users`). The server is built
/// the first time (see [`crate::llama_server`]).
///
/// # Errors
/// If the server cannot be built or started, or a request fails.
pub fn simultaneous_llama_server(
    rt: &Runtimes,
    gguf: &Path,
    users: usize,
    max_tokens: u32,
) -> anyhow::Result<Vec<User>> {
    let binary = crate::llama_server::provision()?;
    let dir = tempfile::tempdir().context("a directory for the SQLite store")?;
    let parallel = u32::try_from(users).context("users")?;
    // The same cells per slot as the embedded engine's (see `slot_tokens`).
    let window = u32::try_from(slot_tokens()?).context("slot tokens")?;
    let server = crate::llama_server::LlamaServer::start(
        &binary,
        gguf,
        parallel,
        window,
        butler_infrastructure::llm::embedded::default_threads(),
    )?;
    let settings = settings(
        gguf,
        &dir.path().join("butler.db"),
        &[
            ("LLM_BASE_URL", server.base_url().to_owned()),
            ("LLM_MODEL", "smollm2".to_owned()),
            ("LLM_MAX_CONCURRENCY", users.to_string()),
            ("LLM_CONTEXT_WINDOW", window.to_string()),
        ],
    )?;
    let out = rt.bot.block_on(async {
        let engine = wiring::engine(&settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::llama_server::wait_ready(&engine.llm, Duration::from_secs(120)).await?;
        ask_together(&engine.llm, users, max_tokens).await
    });
    drop(server);
    out
}

/// The cells of one KV-cache slot of the embedded engine with the default configuration
/// (`wiring::embedded_slot_tokens`): what the anchor gets per slot too.
///
/// # Errors
/// If the default settings do not parse.
pub fn slot_tokens() -> anyhow::Result<usize> {
    let defaults = Settings::from_sources(None, |_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(wiring::embedded_slot_tokens(&defaults))
}

/// A one-token request of another conversation: the engine's KV cache allocated (or the
/// server's model loaded) before anything is timed.
async fn warm_up(llm: &Arc<dyn LlmClient>) -> anyhow::Result<()> {
    crate::llama_server::wait_ready(llm, Duration::from_secs(120)).await
}

/// Asks `users` different conversations of `llm` at the same moment; per user when the first
/// text and the end came.
async fn ask_together(
    llm: &Arc<dyn LlmClient>,
    users: usize,
    max_tokens: u32,
) -> anyhow::Result<Vec<User>> {
    warm_up(llm).await?;
    let names = [
        "Xavier",
        "Yolanda",
        "Zachary",
        "Wilhelmina",
        "Victor",
        "Ursula",
    ];
    let request = |i: usize| {
        let name = names[i % names.len()];
        LlmRequest::new(
            vec![
                ChatMessage::system(format!(
                    "You are Alfred, the butler of {name}. Address {name} politely."
                )),
                ChatMessage::user(format!(
                    "Hello, I am {name}. {} Tell me about your day in detail.",
                    MESSAGES[i % MESSAGES.len()]
                )),
            ],
            RequestOptions {
                temperature: 0.0,
                max_tokens,
            },
        )
    };
    let started = Instant::now();
    let calls = (0..users).map(|i| {
        let llm = Arc::clone(llm);
        let request = request(i);
        tokio::spawn(async move {
            let mut stream = llm.stream(&request).await?;
            let mut first = None;
            while let Some(event) = stream.next().await {
                match event? {
                    StreamEvent::Delta(_) => {
                        first.get_or_insert_with(|| started.elapsed());
                    }
                    StreamEvent::Done(reply) => {
                        let done = started.elapsed();
                        return Ok(User {
                            first_text: first.unwrap_or(done),
                            done,
                            tokens: reply.completion_tokens.unwrap_or(0),
                        });
                    }
                }
            }
            Err(LlmError::Unavailable {
                detail: "the stream ended without an answer".to_owned(),
            })
        })
    });
    let mut out = Vec::with_capacity(users);
    for call in futures::future::join_all(calls).await {
        out.push(
            call.context("a user task")?
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    Ok(out)
}
