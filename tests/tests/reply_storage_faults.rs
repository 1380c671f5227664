//! The reply use case over a real MongoDB-wire server whose writes fail (`failCommand`): the
//! user still gets an answer (degraded), nothing half-written or duplicated stays behind, and
//! the next message after the fault is stored normally.

use std::sync::Arc;
use std::time::Duration;

use butler_application::prompt::PromptBudget;
use butler_application::{
    CompressionScheduler, PersonalizationService, PersonalizedReplyUseCase, ReplyConfig,
    ReplyInput, ReplyStatus,
};
use butler_domain::ports::UserMemoryRepository;
use butler_domain::{Source, UserId};
use butler_infrastructure::mongo::{MongoOptions, MongoStore};
use butler_testkit::fakes::{CharCounter, FakeLlm, ManualClock};
use butler_testkit::services::mongo::{shared_mongo, unique_database_name, FailCommand, FailWith};

struct NoCompression;
impl CompressionScheduler for NoCompression {
    fn schedule(&self, _: UserId) {}
}

#[tokio::test]
async fn a_failing_database_write_still_gets_the_user_an_answer_and_loses_or_duplicates_nothing() {
    let server = shared_mongo().await.unwrap_or_else(|e| panic!("{e}"));
    let name = unique_database_name("reply-faults");
    let store = MongoStore::connect(
        server.uri(),
        MongoOptions {
            database: Some(name.clone()),
            app_name: name.clone(),
            server_selection_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
            ..MongoOptions::default()
        },
    )
    .await
    .unwrap();
    let admin = mongodb::Client::with_uri_str(server.uri()).await.unwrap();
    let memory = Arc::new(store.memory());
    let llm = Arc::new(FakeLlm::default());
    let budget = PromptBudget {
        total: 3000,
        persona: 600,
        memory: 1200,
        new_message: 300,
        ..PromptBudget::default()
    };
    let reply = PersonalizedReplyUseCase::new(
        Arc::new(store.profiles()),
        memory.clone(),
        llm.clone(),
        Arc::new(ManualClock::default()),
        PersonalizationService::new(Arc::new(CharCounter), budget).unwrap(),
        Arc::new(NoCompression),
        ReplyConfig::default(),
    );
    let user = UserId::new(4242);
    let ask = |text: &str| ReplyInput {
        user_id: user,
        text: text.to_owned(),
        source: Source::Text,
        origin: None,
    };

    llm.push_reply("Первый ответ, сэр.");
    assert_eq!(reply.execute(ask("первый")).await.status, ReplyStatus::Ok);

    FailCommand {
        commands: vec!["insert".into()],
        with: FailWith::ErrorCode(89),
        app_name: name.clone(),
    }
    .enable(&admin)
    .await
    .expect("failCommand needs --enable-test-commands");
    llm.push_reply("Ответ во время сбоя, сэр.");
    let out = reply.execute(ask("во время сбоя")).await;
    FailCommand::clear(&admin).await.unwrap();
    assert_eq!(
        out.reply, "Ответ во время сбоя, сэр.",
        "the user is answered anyway"
    );
    assert_eq!(out.status, ReplyStatus::Degraded);

    llm.push_reply("После сбоя, сэр.");
    let out = reply.execute(ask("после сбоя")).await;
    assert_eq!(out.status, ReplyStatus::Ok);
    let stored: Vec<String> = memory
        .recent(user, 100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.content)
        .collect();
    assert_eq!(
        stored,
        [
            "первый",
            "Первый ответ, сэр.",
            "после сбоя",
            "После сбоя, сэр."
        ]
    );
}
