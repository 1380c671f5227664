//! The butler in group chats, against the fake Bot API with the real teloxide client: a quiet
//! member with a memory of its own, that answers only when addressed, never carries a
//! member's personal memory into the group, streams by paced edits within the group's flood
//! limit, and leaves groups it was not invited to.

mod support;

use std::time::Duration;

use butler_domain::ports::UserMemoryRepository;
use butler_domain::{Source, UserId, UserMemoryEvent};
use butler_presentation::telegram::{BotConfig, GroupConfig, GroupPacing};
use butler_testkit::fakes::LlmStep;
use butler_testkit::telegram::{Failure, GroupMessage, Voice, BOT_USERNAME};
use support::{test_config, wait_until, BotHarness, FakeWorld, WAIT};

const ALICE: i64 = 1001;
const BOB: i64 = 2002;
const GROUP: i64 = -1_001_000_000_001;

/// The test configuration with `GROUP` allowed.
fn config() -> BotConfig {
    BotConfig {
        groups: GroupConfig {
            allowed_chats: vec![GROUP],
            ..GroupConfig::default()
        },
        ..test_config()
    }
}

fn plain() -> GroupMessage {
    GroupMessage::default()
}

/// Everything the model was shown, all requests together.
fn prompts(world: &FakeWorld) -> String {
    world
        .llm
        .requests()
        .iter()
        .flat_map(|r| r.messages.iter().map(|m| m.content.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the group's last message reads `text` (a streamed reply ends with it).
async fn wait_for_final(bot: &BotHarness, text: &str) {
    wait_until("the group's final text", || {
        bot.telegram
            .sent_messages(GROUP)
            .last()
            .is_some_and(|m| m.text == text)
    })
    .await;
}

#[tokio::test]
async fn a_reply_in_a_group_never_carries_a_members_personal_memory() {
    let world = FakeWorld::default();
    // What Alice told the butler in private.
    let now = time::OffsetDateTime::now_utc();
    let alice = UserId::new(ALICE);
    world
        .memory
        .append(&[
            UserMemoryEvent::user(alice, "Мой пароль от сейфа 4711", Source::Text, now),
            UserMemoryEvent::assistant(alice, "Запомню, мадам.", Source::Text, now),
            UserMemoryEvent::user(alice, "Я беременна, но это секрет", Source::Text, now),
            UserMemoryEvent::assistant(alice, "Ни слова никому.", Source::Text, now),
        ])
        .await
        .unwrap();
    world.llm.push_reply("Сейчас четверть шестого, мадам.");
    let bot = BotHarness::start_with(world.deps(), config()).await;

    bot.telegram
        .push_group_text(ALICE, GROUP, "Альфред, который час?", plain());
    wait_for_final(&bot, "Сейчас четверть шестого, мадам.").await;

    let shown = prompts(&world);
    assert!(shown.contains("который час"), "{shown}");
    for secret in ["4711", "беременна", "Запомню", "Ни слова"] {
        assert!(
            !shown.contains(secret),
            "{secret} reached the group's prompt"
        );
    }
    // Nor does the group's talk enter Alice's private memory.
    assert_eq!(world.events(ALICE).len(), 4);
    let group = world.memory.all(UserId::group(GROUP, None));
    assert_eq!(group.len(), 2);
    assert!(group[0].content.ends_with("Альфред, который час?"));
    // 👀 at once as a sign the butler is on it, taken away when the answer is there.
    bot.telegram
        .wait_for_calls("setMessageReaction", 2, WAIT)
        .await
        .unwrap();
    let reactions: Vec<serde_json::Value> = bot
        .telegram
        .calls_to("setMessageReaction")
        .iter()
        .map(|c| c.params["reaction"].clone())
        .collect();
    assert_eq!(reactions[0][0]["emoji"], "👀", "{reactions:?}");
    assert_eq!(reactions[1], serde_json::json!([]), "{reactions:?}");
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn unaddressed_group_messages_cost_no_model_call_and_become_the_groups_context() {
    let world = FakeWorld::default();
    world.llm.push_reply("Торт покупает Борис, сэр.");
    let bot = BotHarness::start_with(world.deps(), config()).await;

    bot.telegram
        .push_group_text(ALICE, GROUP, "Кто купит торт?", plain());
    bot.telegram
        .push_group_text(BOB, GROUP, "Я куплю, после работы", plain());
    bot.telegram
        .push_group_text(ALICE, GROUP, "А свечи?", plain());
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();
    wait_until("three lines kept", || {
        world.memory.all(UserId::group(GROUP, None)).len() == 3
    })
    .await;
    assert!(
        world.llm.requests().is_empty(),
        "nobody addressed the butler"
    );
    assert!(bot.telegram.sent_messages(GROUP).is_empty());

    bot.telegram.push_group_text(
        ALICE,
        GROUP,
        &format!("@{BOT_USERNAME} кто покупает торт?"),
        plain(),
    );
    wait_for_final(&bot, "Торт покупает Борис, сэр.").await;
    let shown = prompts(&world);
    assert!(
        shown.contains("User2002: Я куплю, после работы"),
        "the lines before, with their speakers: {shown}"
    );
    assert_eq!(world.llm.requests().len(), 1);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_mention_a_reply_to_the_butler_or_its_name_first_addresses_it_and_nothing_else_does() {
    let world = FakeWorld::default();
    let bot = BotHarness::start_with(world.deps(), config()).await;

    bot.telegram.push_group_text(
        ALICE,
        GROUP,
        &format!("Спросим @{BOT_USERNAME}: чай или кофе?"),
        plain(),
    );
    bot.telegram.push_group_text(
        BOB,
        GROUP,
        "А по-моему, чай",
        GroupMessage {
            reply_to_bot: Some(1),
            ..plain()
        },
    );
    bot.telegram
        .push_group_text(ALICE, GROUP, "Alfred, tea please", plain());
    // Not addressed: the name elsewhere, a longer name, a mention of someone else.
    bot.telegram
        .push_group_text(BOB, GROUP, "Спроси у Альфреда", plain());
    bot.telegram
        .push_group_text(BOB, GROUP, "Альфредо пришёл", plain());
    bot.telegram
        .push_group_text(BOB, GROUP, "@someone_else привет", plain());
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();
    wait_until("six lines in the group's memory", || {
        world.memory.all(UserId::group(GROUP, None)).len() == 3 + 3 * 2
    })
    .await;
    assert_eq!(world.llm.requests().len(), 3, "three messages addressed it");
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_voice_note_that_starts_with_the_name_is_heard_before_it_is_judged() {
    let world = FakeWorld::default();
    world
        .stt
        .push_text("Альфред, напомни, что мы решили про торт");
    world.stt.push_text("просто болтаем");
    world.llm.push_reply("Торт берёт Борис, мадам.");
    let bot = BotHarness::start_with(world.deps(), config()).await;

    bot.telegram
        .push_group_voice(ALICE, GROUP, Voice::ogg(vec![1; 64], 2), plain());
    bot.telegram
        .push_group_voice(BOB, GROUP, Voice::ogg(vec![2; 64], 2), plain());
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();
    wait_until("both notes in the group's memory", || {
        world.memory.all(UserId::group(GROUP, None)).len() == 3
    })
    .await;
    assert_eq!(world.stt.clips().len(), 2, "both notes were heard");
    assert_eq!(
        world.llm.requests().len(),
        1,
        "only the addressed one was answered"
    );
    let last = bot.telegram.sent_messages(GROUP);
    assert!(last[0].text.contains("Торт берёт Борис"), "{last:?}");
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_group_not_on_the_list_is_told_once_and_left_and_nothing_of_it_is_stored() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;
    let stranger_group = -1_009_999;

    for text in ["Альфред, привет", "Альфред, ты тут?", "Эй"] {
        bot.telegram
            .push_group_text(ALICE, stranger_group, text, plain());
    }
    bot.telegram
        .wait_for_messages(stranger_group, 1, WAIT)
        .await
        .unwrap();
    bot.telegram
        .wait_for_calls("leaveChat", 1, WAIT)
        .await
        .unwrap();
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();

    let told = bot.telegram.sent_messages(stranger_group);
    assert_eq!(told.len(), 1, "told once: {told:?}");
    assert!(told[0].text.contains("не служу"), "{}", told[0].text);
    assert_eq!(bot.telegram.calls_to("leaveChat").len(), 1);
    assert!(world.inbox.stored_update_ids().is_empty(), "nothing stored");
    assert!(world.llm.requests().is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn each_forum_topic_has_its_own_memory_and_is_answered_in_its_topic() {
    let world = FakeWorld::default();
    world.llm.push_reply("В этой теме — про отпуск, сэр.");
    let bot = BotHarness::start_with(world.deps(), config()).await;
    let topic = |n| GroupMessage {
        topic: Some(n),
        ..plain()
    };

    bot.telegram
        .push_group_text(ALICE, GROUP, "Едем в Казань", topic(7));
    bot.telegram
        .push_group_text(BOB, GROUP, "Купил молоко", topic(8));
    bot.telegram
        .push_group_text(ALICE, GROUP, "Альфред, о чём мы тут?", topic(7));
    wait_for_final(&bot, "В этой теме — про отпуск, сэр.").await;

    let shown = prompts(&world);
    assert!(shown.contains("Едем в Казань"), "{shown}");
    assert!(!shown.contains("молоко"), "another topic's line: {shown}");
    assert_eq!(world.memory.all(UserId::group(GROUP, Some(7))).len(), 3);
    assert_eq!(world.memory.all(UserId::group(GROUP, Some(8))).len(), 1);
    let sent = &bot.telegram.calls_to("sendMessage")[0];
    assert_eq!(
        sent.params.get("message_thread_id"),
        Some(&serde_json::json!(7))
    );
    bot.stop().await.unwrap();
}

/// A long streamed reply, as a model writes it.
fn long_reply() -> String {
    (0..60)
        .map(|i| format!("слово{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn streamed_edits_in_a_group_stay_within_its_flood_limit_and_the_final_text_arrives() {
    let world = FakeWorld::default();
    let reply = long_reply();
    world
        .llm
        .push(LlmStep::streamed(&reply, Duration::from_millis(20)));
    let mut config = config();
    config.groups.pacing = GroupPacing {
        interval: Duration::from_millis(50),
        per_minute: 5,
        min_chars: 10,
        window: Duration::from_secs(3),
    };
    let bot = BotHarness::start_with(world.deps(), config).await;
    bot.telegram
        .set_group_flood_limit(5, Duration::from_secs(3));

    bot.telegram
        .push_group_text(ALICE, GROUP, "Альфред, расскажи всё", plain());
    wait_for_final(&bot, &reply).await;

    let refused = bot
        .telegram
        .calls()
        .iter()
        .filter(|c| matches!(c.injected, Some(Failure::RetryAfter(_))))
        .count();
    assert_eq!(refused, 0, "no call was over the group's limit");
    let edits = bot.telegram.calls_to("editMessageText").len();
    assert!(
        (1..=4).contains(&edits),
        "the reply grew by a few paced edits: {edits}"
    );
    assert_eq!(bot.telegram.sent_messages(GROUP).len(), 1, "one message");
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn flood_control_in_a_group_is_honoured_and_the_final_text_still_arrives() {
    let world = FakeWorld::default();
    let reply = long_reply();
    world
        .llm
        .push(LlmStep::streamed(&reply, Duration::from_millis(10)));
    let mut config = config();
    config.groups.pacing.interval = Duration::from_millis(50);
    config.groups.pacing.min_chars = 10;
    let bot = BotHarness::start_with(world.deps(), config).await;
    bot.telegram
        .fail_next("editMessageText", 1, Failure::RetryAfter(1));

    bot.telegram
        .push_group_text(ALICE, GROUP, "Альфред, расскажи всё", plain());
    wait_for_final(&bot, &reply).await;

    let edits = bot.telegram.calls_to("editMessageText");
    let refused = edits
        .iter()
        .position(|c| c.injected.is_some())
        .expect("the first edit met flood control");
    let next = edits
        .get(refused + 1)
        .expect("the final edit came after it");
    assert!(
        next.at.duration_since(edits[refused].at) >= Duration::from_millis(950),
        "retry_after was waited for"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_busy_group_and_a_fast_member_are_each_held_to_the_rate() {
    let world = FakeWorld::default();
    let mut config = config();
    config.limits = butler_presentation::telegram::Limits {
        per_minute: 1,
        burst: 2,
        per_day: 0,
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    // Three members, one message each: the group's own bucket holds two.
    for member in [ALICE, BOB, 3003] {
        bot.telegram
            .push_group_text(member, GROUP, "Альфред, вопрос", plain());
    }
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();
    wait_until("a refusal", || world.observer.refusals().len() == 1).await;
    assert_eq!(world.llm.requests().len(), 2);
    bot.stop().await.unwrap();
}
