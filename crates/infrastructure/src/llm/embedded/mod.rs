//! The embedded LLM engine: a GGUF model run in this process by llama.cpp (`llama-cpp-2`), so
//! the butler answers with no LLM server. [`EmbeddedModel`] loads the file (after checking it
//! is GGUF) and generates; [`EmbeddedLlm`] is the `LlmClient` adapter that queues requests and
//! runs them on blocking threads; `tokens::ModelTokenCounter` counts with the same vocabulary.
//! See `docs/llm.md` for the comparison with server engines.

mod client;
mod engine;
mod gguf;

pub use client::{EmbeddedConfig, EmbeddedLlm};
pub use engine::{EmbeddedModel, Generation, PromptTokens};
pub use gguf::{check_gguf, ModelFileError, GGUF_MAGIC};
