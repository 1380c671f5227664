//! Configuration of the chat-completions adapter. Built by the factory from settings
//! (`LLM_BASE_URL`, `LLM_MODEL`, `LLM_API_KEY`, `LLM_TIMEOUT_SECS`, `LLM_MAX_CONCURRENCY`).

use std::num::NonZeroUsize;
use std::time::Duration;

use secrecy::SecretString;

use super::{LlmConcurrency, ServerBackoff};
use crate::http::RetryPolicy;

/// How to reach an OpenAI-compatible chat server. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct LlmHttpConfig {
    /// The API root, including `/v1`: `http://127.0.0.1:8000/v1` (vLLM),
    /// `http://127.0.0.1:11434/v1` (Ollama). Several servers of the same model, separated by
    /// commas, form a pool: requests go to the least loaded healthy one (see `docs/llm.md`).
    pub base_url: String,
    /// The model name the server expects (`Qwen/Qwen2.5-7B-Instruct`, `qwen2.5:7b-instruct`).
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set; local servers usually need none.
    pub api_key: Option<SecretString>,
    /// Longest wait to establish a TCP/TLS connection, per attempt.
    pub connect_timeout: Duration,
    /// One deadline for the whole call: waiting for a concurrency slot, every attempt and every
    /// pause between attempts.
    pub request_timeout: Duration,
    /// Which failures are retried and how long to pause between attempts.
    pub retry: RetryPolicy,
    /// The in-flight limit of the whole pool, shared with every other client of the same
    /// servers; waiters are served in arrival order.
    pub concurrency: LlmConcurrency,
    /// The most requests one server of the pool gets at once; `None` = the whole
    /// `concurrency` limit (what one server needs). The factory sets `concurrency` to this
    /// times the number of servers.
    pub server_limit: Option<NonZeroUsize>,
    /// How long a failed server of a pool stays out before it is probed.
    pub server_backoff: ServerBackoff,
}

impl LlmHttpConfig {
    /// A configuration with the defaults: no key, 5 s connect timeout, 60 s deadline, the
    /// default retry policy, a limit of 4 in-flight requests, and the default server back-off.
    #[must_use]
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            concurrency: LlmConcurrency::default(),
            server_limit: None,
            server_backoff: ServerBackoff::default(),
        }
    }
}
