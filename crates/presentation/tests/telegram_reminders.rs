//! Reminders through the real bot front end and the fake Bot API: a request in a private
//! chat is confirmed and stored; a due reminder is delivered once by the bot's scheduler; one
//! that fell due while the bot was down comes after the restart, once, with a late note.

mod support;

use std::sync::Arc;
use std::time::Duration;

use butler_application::reminders::{FireConfig, ManageRemindersUseCase, RemindersConfig};
use butler_domain::ports::ReminderRepository;
use butler_domain::reminder::{Reminder, ReminderStatus, UserTimeZone};
use butler_domain::UserId;
use butler_presentation::telegram::{BotDeps, ReminderDeps};
use butler_testkit::fakes::InMemoryReminders;
use support::{test_config, BotHarness, FakeWorld, WAIT};
use time::OffsetDateTime;

const ALICE: i64 = 1001;

fn deps(world: &FakeWorld, store: &Arc<InMemoryReminders>) -> BotDeps {
    let manage = ManageRemindersUseCase::new(
        store.clone(),
        world.llm.clone(),
        RemindersConfig::default(),
        None,
    );
    BotDeps {
        reminders: Some(ReminderDeps {
            manage: Arc::new(manage),
            fire: FireConfig {
                late_after: time::Duration::seconds(2),
                ..FireConfig::default()
            },
            observer: None,
            zones: None,
        }),
        ..world.deps()
    }
}

fn due_in(store: &InMemoryReminders, text: &str, millis: i64) -> Reminder {
    let zone = UserTimeZone::new("Europe/Moscow").unwrap();
    let now = OffsetDateTime::now_utc();
    let r = Reminder::new(
        UserId::new(ALICE),
        ALICE,
        text,
        now + time::Duration::milliseconds(millis),
        &zone,
        now,
    )
    .unwrap();
    futures::executor::block_on(store.add(&r)).unwrap();
    r
}

#[tokio::test]
async fn a_reminder_asked_for_in_a_private_chat_is_confirmed_stored_and_not_sent_to_the_model_as_chat(
) {
    let world = FakeWorld::default();
    let store = Arc::new(InMemoryReminders::default());
    world.llm.push_reply(
        r#"{"task":"проверить духовку","in_minutes":20,"date":null,"in_days":null,"weekday":null,"hour":null,"minute":null,"part_of_day":null}"#,
    );
    let bot = BotHarness::start_with(deps(&world, &store), test_config()).await;
    bot.telegram
        .push_text(ALICE, ALICE, "Напомни через 20 минут проверить духовку");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    assert!(
        sent[0].text.starts_with("Напомню сегодня,") || sent[0].text.starts_with("Напомню завтра,"),
        "{}",
        sent[0].text
    );
    assert!(
        sent[0].text.ends_with(": проверить духовку."),
        "{}",
        sent[0].text
    );
    let stored = store.all();
    assert_eq!(stored.len(), 1);
    let ahead = stored[0].due_at - OffsetDateTime::now_utc();
    assert!(
        ahead > time::Duration::minutes(19) && ahead <= time::Duration::minutes(20),
        "{ahead}"
    );
    assert_eq!(
        world.llm.requests().len(),
        1,
        "one extraction call, no chat reply"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_due_reminder_is_delivered_once_on_time_and_one_missed_while_down_comes_late_after_the_restart(
) {
    let world = FakeWorld::default();
    let store = Arc::new(InMemoryReminders::default());
    let bot = BotHarness::start_with(deps(&world, &store), test_config()).await;
    let telegram = bot.telegram.clone();
    let tea = due_in(&store, "чай", 1_500);
    let sent = telegram.wait_for_messages(ALICE, 1, WAIT).await.unwrap();
    assert_eq!(sent[0].text, "⏰ Позвольте напомнить, сэр: чай");
    let delivered_after = OffsetDateTime::now_utc() - tea.due_at;
    assert!(
        delivered_after < time::Duration::seconds(2),
        "lag {delivered_after}"
    );
    bot.stop().await.unwrap();

    // Down for longer than the late threshold while a reminder falls due.
    let call = due_in(&store, "позвонить маме", 200);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let bot = BotHarness::start_on(telegram.clone(), deps(&world, &store), test_config()).await;
    let sent = telegram.wait_for_messages(ALICE, 2, WAIT).await.unwrap();
    assert!(
        sent[1]
            .text
            .starts_with("⏰ Позвольте напомнить, сэр: позвонить маме\n(Простите за опоздание"),
        "{}",
        sent[1].text
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        telegram.sent_messages(ALICE).len(),
        2,
        "each delivered once"
    );
    assert!(matches!(
        store.get(call.id).await.unwrap().unwrap().status,
        ReminderStatus::Delivered(_)
    ));
    assert!(matches!(
        store.get(tea.id).await.unwrap().unwrap().status,
        ReminderStatus::Delivered(_)
    ));
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn saying_where_you_live_brings_a_zone_proposal_and_only_its_yes_button_sets_the_zone() {
    use butler_application::reminders::ZoneOfferUseCase;
    use butler_domain::ports::UserProfileRepository;
    use butler_testkit::telegram::FakeTelegram;

    let world = FakeWorld::default();
    let store = Arc::new(InMemoryReminders::default());
    let mut deps = deps(&world, &store);
    if let Some(reminders) = deps.reminders.as_mut() {
        reminders.zones = Some(Arc::new(ZoneOfferUseCase::new(
            world.profiles.clone(),
            world.clock.clone(),
            UserTimeZone::new("Europe/Moscow").unwrap(),
        )));
    }
    world.llm.push_reply("Пермь — достойный город, сэр.");
    let bot = BotHarness::start_with(deps, test_config()).await;
    bot.telegram.push_text(ALICE, ALICE, "Я живу в Перми");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    assert_eq!(sent[0].text, "Пермь — достойный город, сэр.");
    assert!(
        sent[1]
            .text
            .starts_with("Вы в Перми — ставлю часовой пояс Екатеринбург, UTC+5?"),
        "{}",
        sent[1].text
    );
    let proposal = bot
        .telegram
        .calls_to("sendMessage")
        .into_iter()
        .find(|c| {
            c.str_param("text")
                .is_some_and(|t| t.starts_with("Вы в Перми"))
        })
        .expect("the proposal");
    let buttons = &proposal.params["reply_markup"]["inline_keyboard"][0];
    let yes = buttons[0]["callback_data"].as_str().unwrap().to_owned();
    assert_eq!(yes, "tzy:Asia/Yekaterinburg");
    assert_eq!(buttons[1]["callback_data"], "tzn:Asia/Yekaterinburg");
    let alice = UserId::new(ALICE);
    assert_eq!(
        world.profiles.get(alice).await.unwrap().unwrap().time_zone,
        None,
        "nothing is set before the answer"
    );

    bot.telegram
        .push_update_of_kind("callback_query", |message_id| {
            serde_json::json!({
                "id": "press-1",
                "from": {"id": ALICE, "is_bot": false, "first_name": "Alice"},
                "chat_instance": "alice",
                "data": yes,
                "message": FakeTelegram::message_object(
                    message_id,
                    ALICE,
                    ALICE,
                    serde_json::json!({"text": "Вы в Перми — ставлю часовой пояс?"}),
                ),
            })
        });
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 3, WAIT)
        .await
        .unwrap();
    assert!(
        sent[2]
            .text
            .starts_with("Готово, сэр: часовой пояс Екатеринбург (UTC+5)."),
        "{}",
        sent[2].text
    );
    assert_eq!(
        world
            .profiles
            .get(alice)
            .await
            .unwrap()
            .unwrap()
            .time_zone
            .map(|z| z.name().to_owned())
            .as_deref(),
        Some("Asia/Yekaterinburg")
    );
    assert_eq!(bot.telegram.calls_to("answerCallbackQuery").len(), 1);
    bot.stop().await.unwrap();
}
