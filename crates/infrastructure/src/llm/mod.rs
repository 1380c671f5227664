//! The [`LlmClient`](butler_domain::ports::LlmClient) adapters: the OpenAI-compatible
//! chat-completions client — vLLM, llama.cpp server, Ollama (`/v1`), LM Studio, LocalAI,
//! anything that serves `POST {base}/chat/completions` — and the [`embedded`] engine that runs
//! a GGUF model in process; [`models`] fetches and lists GGUF files. The HTTP client spreads
//! its requests over one or several servers (a pool with failover). See `docs/llm.md`.

mod client;
mod concurrency;
mod config;
mod deltas;
pub mod embedded;
pub mod models;
mod pool;
mod sse;
mod wire;

pub use crate::http::{HttpConfigError, RetryPolicy};
pub use client::OpenAiChatClient;
pub use concurrency::{LlmConcurrency, LlmSlot};
pub use config::LlmHttpConfig;
pub use pool::ServerBackoff;
