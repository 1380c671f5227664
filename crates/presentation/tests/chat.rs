//! The terminal chat drives the real reply use case and stores memory like the bot does.

use std::sync::Arc;

use butler_application::prompt::PromptBudget;
use butler_application::{
    CompressionScheduler, PersonalizationService, PersonalizedReplyUseCase, ReplyConfig,
};
use butler_domain::ports::{ConversationLeases, LeaseScope};
use butler_domain::{Role, UserId};
use butler_presentation::chat::{run_chat, GREETING};
use butler_testkit::fakes::{
    CharCounter, FakeLlm, InMemoryInbox, InMemoryMemory, InMemoryProfiles, ManualClock,
};

struct NoCompression;
impl CompressionScheduler for NoCompression {
    fn schedule(&self, _: UserId) {}
}

#[tokio::test]
async fn the_chat_answers_each_line_in_persona_and_remembers_it() {
    let memory = Arc::new(InMemoryMemory::default());
    let llm = Arc::new(FakeLlm::default());
    llm.push_reply("Добрый вечер, сэр.");
    llm.push_reply("Вас зовут Пётр, сэр.");
    let budget = PromptBudget {
        total: 3000,
        persona: 600,
        memory: 1200,
        new_message: 300,
        ..PromptBudget::default()
    };
    let reply = PersonalizedReplyUseCase::new(
        Arc::new(InMemoryProfiles::default()),
        memory.clone(),
        llm.clone(),
        Arc::new(ManualClock::default()),
        PersonalizationService::new(
            Arc::new(CharCounter),
            PromptBudget {
                max_reply_tokens: 512,
                ..budget
            },
        )
        .unwrap(),
        Arc::new(NoCompression),
        ReplyConfig::default(),
    );
    let input: &[u8] = "Меня зовут Пётр\n\n   \nКак меня зовут?\n/exit\nне дойдёт\n".as_bytes();
    let mut output = Vec::new();
    let leases = InMemoryInbox::default();
    let answered = run_chat(&reply, &leases, UserId::new(1), input, &mut output)
        .await
        .unwrap();
    let output = String::from_utf8(output).unwrap();
    assert_eq!(answered, 2);
    assert!(output.starts_with(GREETING));
    assert!(output.contains("Альфред: Добрый вечер, сэр."));
    assert!(output.contains("Альфред: Вас зовут Пётр, сэр."));
    assert!(output.trim_end().ends_with("До встречи, сэр."));
    let stored = memory.all(UserId::new(1));
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[2].role, Role::User);
    assert_eq!(stored[2].content, "Как меня зовут?");
    assert_eq!(
        llm.requests().len(),
        2,
        "the line after /exit is never sent"
    );
}

#[tokio::test]
async fn a_chat_turn_waits_while_a_reset_holds_the_conversation_and_releases_its_lease() {
    let memory = Arc::new(InMemoryMemory::default());
    let llm = Arc::new(FakeLlm::default());
    let reply = PersonalizedReplyUseCase::new(
        Arc::new(InMemoryProfiles::default()),
        memory.clone(),
        llm.clone(),
        Arc::new(ManualClock::default()),
        PersonalizationService::new(
            Arc::new(CharCounter),
            PromptBudget {
                total: 3000,
                persona: 600,
                memory: 1200,
                new_message: 300,
                ..PromptBudget::default()
            },
        )
        .unwrap(),
        Arc::new(NoCompression),
        ReplyConfig::default(),
    );
    let leases = Arc::new(InMemoryInbox::default());
    let now = time::OffsetDateTime::now_utc();
    let reset = leases
        .acquire(7, LeaseScope::Replies, now, time::Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    let chat = {
        let leases = leases.clone();
        tokio::spawn(async move {
            let mut output = Vec::new();
            let input: &[u8] = "Привет\n".as_bytes();
            run_chat(&reply, leases.as_ref(), UserId::new(7), input, &mut output)
                .await
                .unwrap();
            String::from_utf8(output).unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(llm.requests().is_empty(), "the turn waits for the reset");
    leases.release(&reset).await.unwrap();
    let output = chat.await.unwrap();
    assert!(output.contains("память сейчас занята"), "{output}");
    assert_eq!(memory.all(UserId::new(7)).len(), 2);
    assert!(
        !leases.is_held(7, LeaseScope::Replies, time::OffsetDateTime::now_utc()),
        "the turn gave its lease back"
    );
}
