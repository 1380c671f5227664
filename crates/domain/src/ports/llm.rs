//! The language-model port: chat messages in, reply text out.

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::prompt::ChatMessage;

/// Sampling options for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestOptions {
    /// Sampling temperature (0 = deterministic).
    pub temperature: f32,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            max_tokens: 512,
        }
    }
}

/// One chat-completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// The conversation, system message first.
    pub messages: Vec<ChatMessage>,
    /// Sampling options.
    pub options: RequestOptions,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmReply {
    /// Generated text, never empty (adapters turn empty completions into errors).
    pub text: String,
    /// Prompt tokens as reported by the engine, if it reports them.
    pub prompt_tokens: Option<u32>,
    /// Generated tokens as reported by the engine, if it reports them.
    pub completion_tokens: Option<u32>,
}

impl LlmReply {
    /// A reply with no usage figures.
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            prompt_tokens: None,
            completion_tokens: None,
        }
    }
}

/// Why a completion failed. Messages never contain API keys or prompt text.
#[derive(Debug, Error)]
pub enum LlmError {
    /// No answer within the deadline (including retries).
    #[error("language model did not answer within {after:?}")]
    Timeout {
        /// The deadline that passed.
        after: Duration,
    },
    /// The server could not be reached.
    #[error("language model unreachable: {detail}")]
    Unavailable {
        /// Connection error, without credentials.
        detail: String,
    },
    /// The server answered with an error status.
    #[error("language model answered HTTP {status}: {body_excerpt}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The first few hundred characters of the body.
        body_excerpt: String,
    },
    /// The answer was not a usable completion (malformed, or empty text).
    #[error("language model returned an invalid response: {detail}")]
    InvalidResponse {
        /// What was wrong.
        detail: String,
    },
    /// The request cannot be served as asked (e.g. longer than the model's context window).
    #[error("request rejected before inference: {detail}")]
    Rejected {
        /// Why.
        detail: String,
    },
}

impl LlmError {
    /// A short, bounded label for metrics: `timeout`, `unavailable`, `status`, `invalid`, `rejected`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Status { .. } => "status",
            Self::InvalidResponse { .. } => "invalid",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// Generates chat completions.
///
/// Contract: implementations bound every call by a deadline, limit concurrency themselves,
/// and never return an empty reply as success.
#[async_trait]
pub trait LlmClient: Send + Sync {
    /// Completes the conversation.
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError>;
}
