//! The language-model port: chat messages in, reply text out — whole, or streamed as it is
//! generated.

use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;

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

/// Who waits for a request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// A person is waiting (a reply): served before any background work.
    #[default]
    Interactive,
    /// Nobody is waiting (a compression's summary, a fact extraction): served when no
    /// interactive request waits, and yields to one that arrives.
    Background,
}

impl Priority {
    /// A bounded label for metrics and logs: `interactive` or `background`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Background => "background",
        }
    }
}

/// The form a request's output must take.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Free text.
    #[default]
    Text,
    /// One JSON document valid against `schema`. Engines that can constrain decoding (the
    /// embedded engine's grammar sampling) make it valid by construction; servers are asked for
    /// it (`response_format` with a JSON schema) and may ignore the request, so callers still
    /// parse tolerantly.
    Json {
        /// A short name for the schema (`facts`, `reminder`), as servers require one.
        name: String,
        /// The JSON Schema, as JSON text.
        schema: String,
    },
}

/// One chat-completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// The conversation, system message first.
    pub messages: Vec<ChatMessage>,
    /// Sampling options.
    pub options: RequestOptions,
    /// Who waits for the answer.
    pub priority: Priority,
    /// The form of the output.
    pub format: OutputFormat,
}

impl LlmRequest {
    /// An interactive request for free text.
    #[must_use]
    pub fn new(messages: Vec<ChatMessage>, options: RequestOptions) -> Self {
        Self {
            messages,
            options,
            priority: Priority::Interactive,
            format: OutputFormat::Text,
        }
    }

    /// The same request, marked as background work (builder style).
    #[must_use]
    pub fn background(mut self) -> Self {
        self.priority = Priority::Background;
        self
    }

    /// The same request, asking for a JSON document valid against `schema` (builder style).
    #[must_use]
    pub fn json(mut self, name: impl Into<String>, schema: impl Into<String>) -> Self {
        self.format = OutputFormat::Json {
            name: name.into(),
            schema: schema.into(),
        };
        self
    }
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
    /// Prompt tokens the engine did not evaluate because it had them cached from an earlier
    /// request (a reused prefix), if it reports them.
    pub cached_prompt_tokens: Option<u32>,
}

impl LlmReply {
    /// A reply with no usage figures.
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            prompt_tokens: None,
            completion_tokens: None,
            cached_prompt_tokens: None,
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

/// One event of a streamed completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next piece of the reply, never empty. The pieces, concatenated, are exactly the
    /// text of the final [`StreamEvent::Done`] (no leading or trailing whitespace).
    Delta(String),
    /// The end: the whole reply with its usage. Nothing follows it.
    Done(LlmReply),
}

/// A streamed completion: deltas, then one [`StreamEvent::Done`] — or an error, after which
/// nothing follows. Dropping the stream stops the generation (and frees the engine).
pub type LlmStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// Generates chat completions.
///
/// Contract: implementations bound every call by a deadline, limit concurrency themselves,
/// and never return an empty reply as success.
#[async_trait]
pub trait LlmClient: Send + Sync {
    /// Completes the conversation.
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError>;

    /// Completes the conversation, yielding the text as it is generated. Errors before the
    /// first delta (connection refused, a full queue past the deadline, …) are returned here,
    /// after the same retries as [`Self::complete`]; errors after it end the stream.
    ///
    /// The default streams nothing early: it completes, then yields the whole text as one
    /// delta. Engines that can stream override it.
    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, LlmError> {
        let reply = self.complete(request).await?;
        Ok(Box::pin(WholeReply::new(reply)))
    }
}

/// The default [`LlmClient::stream`]: the whole reply as one delta, then `Done`.
struct WholeReply(std::collections::VecDeque<StreamEvent>);

impl WholeReply {
    fn new(reply: LlmReply) -> Self {
        let mut events = std::collections::VecDeque::with_capacity(2);
        if !reply.text.is_empty() {
            events.push_back(StreamEvent::Delta(reply.text.clone()));
        }
        events.push_back(StreamEvent::Done(reply));
        Self(events)
    }
}

impl Stream for WholeReply {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}
