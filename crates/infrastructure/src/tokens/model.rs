//! `ModelTokenCounter`: exact counts from the embedded model's own vocabulary, in process.
//! It shares the loaded [`EmbeddedModel`] with the LLM adapter, so the budget counts with the
//! very tokenizer inference uses.

use std::sync::Arc;

use async_trait::async_trait;
use butler_domain::ports::TokenCounter;

use crate::llm::embedded::EmbeddedModel;

/// Counts with the loaded GGUF model's tokenizer (llama.cpp's `llama_tokenize`).
///
/// Text is counted without BOS/EOS and with special-token spellings (`<|im_start|>`) as plain
/// text, which is never fewer tokens than inference reads for the same text.
#[derive(Debug, Clone)]
pub struct ModelTokenCounter {
    model: Arc<EmbeddedModel>,
}

impl ModelTokenCounter {
    /// A counter over a loaded model.
    #[must_use]
    pub fn new(model: Arc<EmbeddedModel>) -> Self {
        Self { model }
    }

    /// The exact count, synchronously.
    #[must_use]
    pub fn count_sync(&self, text: &str) -> usize {
        self.model.count_tokens(text)
    }
}

#[async_trait]
impl TokenCounter for ModelTokenCounter {
    async fn count(&self, text: &str) -> usize {
        // Tokenising is microseconds per kilobyte: fine inline, like the tiktoken counter.
        self.count_sync(text)
    }

    fn name(&self) -> &'static str {
        "model-vocabulary"
    }
}
