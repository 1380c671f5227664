//! Prompt assembly and every branch of the token budget, with the one-token-per-character
//! counter so the arithmetic is visible.

mod support;

use std::sync::Arc;

use butler_application::prompt::templates::CUT_MARKER;
use butler_application::prompt::{PersonalizationService, PromptBudget};
use butler_domain::{
    ChatRole, Language, MemorySlice, PersonalizedPrompt, ProfileUpdate, Source, Tone, UserId,
    UserMemoryEvent, UserProfile,
};
use butler_testkit::fakes::CharCounter;
use proptest::prelude::*;
use support::char_budget;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);
const USER: UserId = UserId::new(42);

fn service(budget: PromptBudget) -> PersonalizationService {
    PersonalizationService::new(Arc::new(CharCounter), budget).unwrap()
}

fn events(pairs: &[(&str, &str)]) -> Vec<UserMemoryEvent> {
    let mut out = Vec::new();
    for (i, (q, a)) in pairs.iter().enumerate() {
        let at = NOW + time::Duration::seconds(i as i64 * 2);
        out.push(UserMemoryEvent::user(USER, *q, Source::Text, at));
        out.push(UserMemoryEvent::assistant(
            USER,
            *a,
            Source::Text,
            at + time::Duration::seconds(1),
        ));
    }
    out
}

fn numbered(pairs: usize, len: usize) -> Vec<UserMemoryEvent> {
    let texts: Vec<(String, String)> = (0..pairs)
        .map(|i| {
            (
                format!("q{i:02}{}", "я".repeat(len)),
                format!("a{i:02}{}", "ж".repeat(len)),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(q, a)| (q.as_str(), a.as_str()))
        .collect();
    events(&refs)
}

/// Recounts a prompt the way the budget does: contents plus per-message overhead.
fn recount(prompt: &PersonalizedPrompt, overhead: usize) -> usize {
    prompt
        .to_messages()
        .iter()
        .map(|m| m.content.chars().count() + overhead)
        .sum()
}

#[tokio::test]
async fn a_first_message_gets_the_alfred_persona_and_nothing_else() {
    let prompt = service(char_budget())
        .build(
            &UserProfile::default_at(USER, NOW),
            &MemorySlice::default(),
            "Добрый вечер!",
        )
        .await;
    insta::assert_snapshot!("first_message_full_prompt", prompt.full_prompt);
    assert!(prompt.turns.is_empty());
    assert_eq!(prompt.token_count, recount(&prompt, 4));
}

#[tokio::test]
async fn summary_goes_into_the_system_message_and_events_become_turns() {
    let slice = MemorySlice {
        events: events(&[
            ("Меня зовут Пётр.", "Очень приятно, сэр Пётр."),
            ("Я играю на виолончели.", "Соседи, полагаю, в восторге."),
        ]),
        summary: Some("Пётр, 34 года, обещал позвонить маме в субботу.".into()),
        total_events: 24,
        ..MemorySlice::default()
    };
    let prompt = service(char_budget())
        .build(
            &UserProfile::default_at(USER, NOW),
            &slice,
            "Что мне надеть на концерт?",
        )
        .await;
    insta::assert_snapshot!("summary_and_turns_full_prompt", prompt.full_prompt);
    let roles: Vec<ChatRole> = prompt.to_messages().iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            ChatRole::System,
            ChatRole::User,
            ChatRole::Assistant,
            ChatRole::User,
            ChatRole::Assistant,
            ChatRole::User
        ]
    );
    assert!(prompt.system.contains("обещал позвонить маме в субботу"));
}

#[tokio::test]
async fn an_english_formal_profile_with_topics_is_rendered_in_english() {
    let profile = UserProfile::default_at(USER, NOW)
        .apply(
            &ProfileUpdate {
                language: Some(Language::En),
                tone: Some(Tone::Formal),
                preferred_topics: Some(vec!["cello".into(), "chess".into()]),
                persona: Some("Jeeves, a gentleman's gentleman".into()),
                ..ProfileUpdate::default()
            },
            NOW,
        )
        .unwrap();
    let prompt = service(char_budget())
        .build(&profile, &MemorySlice::default(), "Good evening")
        .await;
    insta::assert_snapshot!("english_formal_system", prompt.system);
}

#[tokio::test]
async fn when_everything_fits_all_recent_events_are_used() {
    let slice = MemorySlice {
        events: numbered(10, 5),
        summary: None,
        total_events: 20,
        ..MemorySlice::default()
    };
    let prompt = service(char_budget())
        .build(&UserProfile::default_at(USER, NOW), &slice, "ну что?")
        .await;
    assert_eq!(prompt.turns.len(), 20);
    assert!(prompt.token_count <= char_budget().total);
}

#[tokio::test]
async fn over_budget_memory_drops_the_oldest_turns_a_whole_block_at_a_time() {
    // 10 pairs of ~64-char messages = 20 × 68 = 1360 > 1200 memory budget. Old turns leave in
    // blocks of WINDOW_BLOCK (12) events, so the next prompts keep the same start (caches).
    let slice = MemorySlice {
        events: numbered(10, 60),
        summary: None,
        total_events: 20,
        ..MemorySlice::default()
    };
    let prompt = service(char_budget())
        .build(&UserProfile::default_at(USER, NOW), &slice, "и?")
        .await;
    assert_eq!(
        prompt.turns.len(),
        20 - butler_application::prompt::WINDOW_BLOCK,
        "one block of six pairs dropped"
    );
    assert_eq!(prompt.turns[0].role, ChatRole::User);
    assert!(
        prompt.turns[0].content.starts_with("q06"),
        "oldest kept is pair 6"
    );
    assert!(prompt.turns.last().unwrap().content.starts_with("a09"));
    assert!(
        prompt
            .turns
            .iter()
            .all(|t| !t.content.ends_with(CUT_MARKER)),
        "nothing trimmed"
    );
    let memory: usize = prompt
        .turns
        .iter()
        .map(|t| t.content.chars().count() + 4)
        .sum();
    assert!(memory <= 1200);
}

#[tokio::test]
async fn when_the_last_five_events_still_do_not_fit_they_are_trimmed_not_dropped() {
    let slice = MemorySlice {
        events: numbered(4, 600),
        summary: None,
        total_events: 8,
        ..MemorySlice::default()
    };
    let prompt = service(char_budget())
        .build(&UserProfile::default_at(USER, NOW), &slice, "итак")
        .await;
    assert_eq!(prompt.turns.len(), 5, "summary + last 5 events are kept");
    assert!(prompt.turns.iter().all(|t| t.content.ends_with(CUT_MARKER)));
    assert!(prompt.turns.last().unwrap().content.starts_with("a03"));
    let memory: usize = prompt
        .turns
        .iter()
        .map(|t| t.content.chars().count() + 4)
        .sum();
    assert!(memory <= 1200, "memory {memory}");
    assert!(prompt.token_count <= char_budget().total);
    assert_eq!(prompt.token_count, recount(&prompt, 4));
}

#[tokio::test]
async fn an_over_long_new_message_is_cut_with_a_marker_never_dropped() {
    let long = "слово ".repeat(200);
    let prompt = service(char_budget())
        .build(
            &UserProfile::default_at(USER, NOW),
            &MemorySlice::default(),
            &long,
        )
        .await;
    assert!(prompt.new_message.ends_with(CUT_MARKER));
    assert!(prompt.new_message.starts_with("слово слово"));
    assert!(prompt.new_message.chars().count() <= 300);
    assert_eq!(
        prompt.to_messages().last().unwrap().content,
        prompt.new_message
    );
}

#[tokio::test]
async fn an_over_long_summary_is_trimmed_to_its_budget() {
    let slice = MemorySlice {
        events: vec![],
        summary: Some("факт. ".repeat(200)),
        total_events: 0,
        ..MemorySlice::default()
    };
    let prompt = service(char_budget())
        .build(&UserProfile::default_at(USER, NOW), &slice, "привет")
        .await;
    // The summary sits between the section's fences.
    let summary = prompt.system.split_once("\n```\n").map(|(_, s)| s).unwrap();
    let summary = summary.strip_suffix("\n```").unwrap();
    assert!(summary.ends_with(CUT_MARKER), "{summary}");
    assert!(summary.chars().count() <= 300);
}

#[tokio::test]
async fn a_long_persona_loses_its_topics_first_then_is_shortened_keeping_the_instructions() {
    let budget = PromptBudget {
        persona: 400,
        ..char_budget()
    };
    let mut profile = UserProfile::default_at(USER, NOW);
    profile.persona = "дворецкий ".repeat(60).trim().to_owned();
    profile.preferred_topics = vec!["шахматы".into()];
    let svc = service(budget);
    let section = svc.persona_section(&profile).await;
    assert!(
        section.chars().count() <= 400,
        "{} chars",
        section.chars().count()
    );
    assert!(!section.contains("шахматы"));
    assert!(section.contains("Альфред"), "instructions are never cut");
    assert!(section.starts_with("Ты — дворецкий"));

    profile.persona = "Альфред".into();
    let section = svc.persona_section(&profile).await;
    assert!(section.contains("шахматы"), "topics stay when they fit");
}

#[tokio::test]
async fn stateless_prompts_have_no_persona_and_no_memory() {
    let prompt = service(char_budget())
        .build_stateless("Сколько будет 2+2?")
        .await;
    assert!(!prompt.system.contains("Альфред"));
    assert!(prompt.turns.is_empty());
    assert_eq!(prompt.new_message, "Сколько будет 2+2?");
}

#[test]
fn a_budget_that_does_not_fit_the_window_is_refused_at_construction() {
    let err = PersonalizationService::new(
        Arc::new(CharCounter),
        PromptBudget {
            total: 4000,
            ..PromptBudget::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("exceeds the model window"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_prompt_never_exceeds_its_budget(
        lens in proptest::collection::vec(0usize..900, 0..20),
        new_len in 0usize..1200,
        summary_len in 0usize..900,
        total in 1600usize..3500,
    ) {
        let budget = PromptBudget { total, max_reply_tokens: 4096 - total, ..char_budget() };
        let svc = service(budget);
        let evs: Vec<UserMemoryEvent> = lens.iter().enumerate().map(|(i, l)| {
            let at = NOW + time::Duration::seconds(i as i64);
            let text = format!("{i} {}", "ю".repeat(*l));
            if i % 2 == 0 { UserMemoryEvent::user(USER, text, Source::Text, at) } else { UserMemoryEvent::assistant(USER, text, Source::Text, at) }
        }).collect();
        let n = evs.len();
        let slice = MemorySlice { events: evs, summary: (summary_len > 0).then(|| "с".repeat(summary_len)), total_events: n as u64, ..MemorySlice::default() };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let prompt = rt.block_on(svc.build(&UserProfile::default_at(USER, NOW), &slice, &"н".repeat(new_len)));
        prop_assert!(prompt.token_count <= total, "{} > {}", prompt.token_count, total);
        prop_assert_eq!(prompt.token_count, recount(&prompt, 4));
        prop_assert!(!prompt.new_message.is_empty() || new_len == 0);
        prop_assert!(prompt.turns.len() >= n.min(5) || prompt.token_count + 40 > total);
    }

    #[test]
    fn a_budget_that_validates_never_yields_a_prompt_over_it_facts_included(
        total in 1400usize..3500,
        facts in 0usize..1200,
        facts_each in 10usize..300,
        core in 0usize..30,
        relevant in 0usize..30,
        turns in 0usize..20,
    ) {
        let budget = PromptBudget { total, facts, max_reply_tokens: 4096 - total, ..char_budget() };
        prop_assume!(budget.validate().is_ok());
        let svc = service(budget);
        let fact = |i: usize, kind| butler_domain::MemoryFact::new(
            USER, &format!("k{i}"), kind, "ф".repeat(facts_each), Vec::new(), NOW,
        ).unwrap();
        let evs: Vec<UserMemoryEvent> = (0..turns).map(|i| {
            let at = NOW + time::Duration::seconds(i as i64);
            let text = format!("{i} {}", "ю".repeat(200));
            if i % 2 == 0 { UserMemoryEvent::user(USER, text, Source::Text, at) } else { UserMemoryEvent::assistant(USER, text, Source::Text, at) }
        }).collect();
        let slice = MemorySlice {
            events: evs,
            summary: Some("с".repeat(900)),
            total_events: turns as u64,
            core_facts: (0..core).map(|i| fact(i, butler_domain::FactKind::Person)).collect(),
            relevant_facts: (0..relevant).map(|i| fact(100 + i, butler_domain::FactKind::Other)).collect(),
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let prompt = rt.block_on(svc.build(&UserProfile::default_at(USER, NOW), &slice, &"н".repeat(1200)));
        prop_assert!(prompt.token_count <= total, "{} > {} (facts {})", prompt.token_count, total, facts);
    }
}
