//! Messages kept as context without an answer (a group's chatter): stored in order after the
//! conversation's newest event, once per origin, counted towards compression, no model call.

mod support;

use butler_application::{ObserveInput, ObserveMessageUseCase, Observed, ReplyInput};
use butler_domain::{Role, Source, UserId};
use support::World;

const GROUP: UserId = UserId::new(-1_001_234_567_890);

fn observe(w: &World, threshold: u64) -> ObserveMessageUseCase {
    ObserveMessageUseCase::new(
        w.profiles.clone(),
        w.memory.clone(),
        w.clock.clone(),
        w.scheduler.clone(),
        threshold,
    )
}

fn line(text: &str, origin: &str) -> ObserveInput {
    ObserveInput {
        user_id: GROUP,
        text: text.to_owned(),
        source: Source::Text,
        origin: Some(origin.to_owned()),
    }
}

#[tokio::test]
async fn an_unaddressed_line_is_kept_in_order_once_and_costs_no_model_call() {
    let w = World::default();
    let keep = observe(&w, 50);
    assert_eq!(
        keep.execute(line("Анна: кто купит торт?", "u:1")).await,
        Observed::Stored {
            compression_scheduled: false
        }
    );
    assert_eq!(
        keep.execute(line("Анна: кто купит торт?", "u:1")).await,
        Observed::Repeated,
        "a redelivery is not stored twice"
    );
    keep.execute(line("Борис: я куплю", "u:2")).await;
    // Then someone addresses the butler: the reply sees the lines before it.
    w.llm.push_reply("Превосходный выбор, сэр.");
    let reply = w
        .reply()
        .execute(ReplyInput {
            user_id: GROUP,
            text: "Вера: Альфред, кто покупает торт?".to_owned(),
            source: Source::Text,
            origin: Some("u:3".to_owned()),
        })
        .await;
    assert_eq!(reply.status.code(), "ok");
    assert_eq!(
        w.llm.requests().len(),
        1,
        "only the addressed line asked the model"
    );
    let prompt: String = w.llm.requests()[0]
        .messages
        .iter()
        .map(|m| m.content.clone())
        .collect();
    assert!(prompt.contains("Борис: я куплю"), "{prompt}");
    let stored: Vec<(Role, String)> = w
        .memory
        .all(GROUP)
        .into_iter()
        .map(|e| (e.role, e.content))
        .collect();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[0].1, "Анна: кто купит торт?");
    assert_eq!(stored[1].1, "Борис: я куплю");
    assert_eq!(stored[3].0, Role::Assistant);
    let profile =
        butler_domain::ports::UserProfileRepository::get_or_create(w.profiles.as_ref(), GROUP)
            .await
            .unwrap();
    assert_eq!(
        profile.persona,
        butler_domain::profile::DEFAULT_GROUP_PERSONA,
        "a group starts with the group persona"
    );
}

#[tokio::test]
async fn a_chatty_group_is_compressed_like_any_conversation() {
    let w = World::default();
    let keep = observe(&w, 3);
    for i in 0..3 {
        keep.execute(line(&format!("Анна: реплика {i}"), &format!("u:{i}")))
            .await;
    }
    assert!(w.scheduler.0.lock().unwrap().is_empty());
    assert_eq!(
        keep.execute(line("Анна: ещё одна", "u:9")).await,
        Observed::Stored {
            compression_scheduled: true
        }
    );
    assert_eq!(*w.scheduler.0.lock().unwrap(), [GROUP]);
}
