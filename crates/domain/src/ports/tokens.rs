//! The token-counting port: budgets are enforced in the model's tokens, not in characters.

use async_trait::async_trait;

/// Counts tokens the way the language model will.
///
/// Contract: a count is either exact for the model in use or an over-estimate — never an
/// under-estimate, so a prompt that fits the budget by this count fits the model. Counting is
/// infallible: adapters that ask a remote service fall back to a conservative estimate.
#[async_trait]
pub trait TokenCounter: Send + Sync {
    /// Tokens in `text` (without any chat-template overhead).
    async fn count(&self, text: &str) -> usize;

    /// A short name for logs (`estimator`, `qwen-tiktoken`, `llama-tokenize`, …).
    fn name(&self) -> &'static str;
}
