//! The embedded LLM engine: a GGUF model run in this process by llama.cpp (`llama-cpp-2`), so
//! the butler answers with no LLM server. [`EmbeddedModel`] loads the file (after checking it
//! is GGUF) and tokenises; a [`Session`] generates, keeping KV caches of recent conversations
//! so a turn reads only what is new; [`EmbeddedLlm`] is the `LlmClient` adapter that queues
//! requests, runs them on its engine thread and streams the text back;
//! `tokens::ModelTokenCounter` counts with the same vocabulary. See `docs/llm.md` for the
//! comparison with server engines.

mod client;
mod engine;
mod gguf;
mod grammar;
mod session;

pub use client::{EmbeddedConfig, EmbeddedLlm, BACKGROUND_LIMIT};
pub use engine::{default_threads, EmbeddedModel, PromptTokens};
pub use gguf::{check_gguf, ModelFileError, GGUF_MAGIC};
pub use grammar::{json_schema_to_gbnf, SchemaError};
pub use session::{
    Generation, GenerationStats, Progress, Session, SessionConfig, BACKGROUND_CHUNK, PROMPT_CHUNK,
};
