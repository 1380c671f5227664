//! A token counter that counts characters: exact, obvious arithmetic for budget tests.

use async_trait::async_trait;
use butler_domain::ports::TokenCounter;

/// One token per character.
#[derive(Debug, Default, Clone, Copy)]
pub struct CharCounter;

#[async_trait]
impl TokenCounter for CharCounter {
    async fn count(&self, text: &str) -> usize {
        text.chars().count()
    }

    fn name(&self) -> &'static str {
        "chars"
    }
}
