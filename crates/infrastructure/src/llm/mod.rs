//! The OpenAI-compatible chat-completions adapter for [`LlmClient`](butler_domain::ports::LlmClient):
//! vLLM, llama.cpp server, Ollama (`/v1`), LM Studio, LocalAI — anything that serves
//! `POST {base}/chat/completions`. See `docs/llm.md` for how to point it at each.

mod client;
mod concurrency;
mod config;
mod wire;

pub use crate::http::{HttpConfigError, RetryPolicy};
pub use client::OpenAiChatClient;
pub use concurrency::LlmConcurrency;
pub use config::LlmHttpConfig;
