//! Exact token counters: the `TokenCounter` adapters that know the model's real tokenizer.
//!
//! - [`QwenTiktokenCounter`] loads a Qwen2/Qwen2.5 `qwen.tiktoken` vocabulary from a path and
//!   counts exactly, in process.
//! - [`LlamaTokenizeCounter`] asks a llama.cpp-server-style `POST /tokenize` endpoint and falls
//!   back to an injected counter (the application's conservative estimator) when it cannot.
//! - [`ModelTokenCounter`] counts with the embedded GGUF model's own vocabulary.
//!
//! The conservative estimator itself lives in `butler-application` (infrastructure never
//! depends on it); the factory injects it as the fallback.

mod llama_tokenize;
mod model;
mod qwen_tiktoken;

pub use llama_tokenize::{LlamaTokenizeCounter, TokenizeEndpointError};
pub use model::ModelTokenCounter;
pub use qwen_tiktoken::{QwenTiktokenCounter, VocabularyError, QWEN_PAT_STR};
