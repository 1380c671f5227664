//! The prompt layout is friendly to prompt caches (the embedded engine's slots, llama.cpp
//! server, vLLM, Ollama): over a long conversation on the production budget, most prompts
//! begin with the whole previous prompt — old turns leave in blocks, not one per message.

mod support;

use std::sync::Arc;

use butler_application::prompt::PromptBudget;
use butler_application::tokens::ConservativeEstimator;
use butler_application::{
    PersonalizationService, PersonalizedReplyUseCase, ReplyConfig, ReplyInput,
};
use butler_domain::{ChatMessage, Source, UserId};
use support::World;

/// ChatML, as Qwen and SmolLM2 render it: what a prompt cache sees.
fn rendered(messages: &[ChatMessage]) -> Vec<char> {
    let mut text = String::new();
    for m in messages {
        text.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role.as_str(),
            m.content
        ));
    }
    text.chars().collect()
}

fn shared_prefix(a: &[char], b: &[char]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[tokio::test]
async fn over_sixty_messages_most_prompts_start_with_the_whole_previous_prompt() {
    let w = World::default();
    let reply = PersonalizedReplyUseCase::new(
        w.profiles.clone(),
        w.memory.clone(),
        w.llm.clone(),
        w.clock.clone(),
        PersonalizationService::new(
            Arc::new(ConservativeEstimator::new()),
            PromptBudget::default(),
        )
        .unwrap(),
        w.scheduler.clone(),
        ReplyConfig::default(),
    );
    let user = UserId::new(42);
    // A butler's conversation: short questions, brief replies of one to six sentences (the
    // persona asks for brevity), so most of the 20 recent events fit the 800-token memory.
    for i in 0..60 {
        w.llm.push_reply(&format!(
            "Ответ {i}: {}",
            "безусловно, сэр. ".repeat(1 + (i * 5) % 6)
        ));
        let text = format!(
            "Сообщение {i}: {}",
            "расскажите подробнее ".repeat(1 + i % 4)
        );
        reply
            .execute(ReplyInput {
                user_id: user,
                text,
                source: Source::Text,
                origin: None,
            })
            .await;
    }
    let prompts: Vec<Vec<char>> = w
        .llm
        .requests()
        .iter()
        .map(|r| rendered(&r.messages))
        .collect();
    assert_eq!(prompts.len(), 60);
    let shares: Vec<f64> = prompts
        .windows(2)
        .map(|p| shared_prefix(&p[0], &p[1]) as f64 / p[0].len() as f64)
        .collect();
    let good = shares.iter().filter(|s| **s >= 0.9).count();
    eprintln!(
        "{good} of {} consecutive prompts share ≥ 90% of the previous prompt as a prefix",
        shares.len()
    );
    assert!(
        good * 5 >= shares.len() * 4,
        "only {good} of {} turns were cache-friendly: {shares:.2?}",
        shares.len()
    );
    // The budget still holds: every prompt within 2,000 tokens by the conservative count.
    let requests = w.llm.requests();
    let counter = ConservativeEstimator::new();
    for r in &requests {
        let mut tokens = 0;
        for m in &r.messages {
            tokens += butler_domain::ports::TokenCounter::count(&counter, &m.content).await + 5;
        }
        assert!(tokens <= 2000, "{tokens} tokens");
    }
}
