//! HTTP plumbing shared by the OpenAI-compatible adapters (chat completions, transcriptions):
//! one client setup, one retry loop, one way to quote an error body. Keeping it in one place
//! means the LLM and speech-to-text adapters cannot drift apart on timeouts or retry rules.

mod excerpt;
mod exchange;
mod retry;

pub use exchange::HttpConfigError;
pub use retry::RetryPolicy;

pub(crate) use excerpt::malformed_body;
pub(crate) use exchange::{with_retries, Attempt, CallError, Endpoint, HttpCaller};
