//! The OpenAI-compatible transcription adapter for
//! [`SpeechToText`](butler_domain::ports::SpeechToText): faster-whisper servers, whisper.cpp
//! server, LocalAI, vLLM — anything that serves multipart `POST {base}/audio/transcriptions`.

mod client;
mod config;

pub use crate::http::{HttpConfigError, RetryPolicy};
pub use client::OpenAiTranscriptionClient;
pub use config::SttHttpConfig;
