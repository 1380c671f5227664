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
use butler_testkit::telegram::Voice;
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
            offers: None,
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
async fn a_reminder_asked_for_in_a_voice_note_is_confirmed_and_stored_like_a_typed_one() {
    let world = FakeWorld::default();
    let store = Arc::new(InMemoryReminders::default());
    world
        .stt
        .push_text("Напомни через 20 минут проверить духовку");
    world.llm.push_reply(
        r#"{"task":"проверить духовку","in_minutes":20,"date":null,"in_days":null,"weekday":null,"hour":null,"minute":null,"part_of_day":null}"#,
    );
    let bot = BotHarness::start_with(deps(&world, &store), test_config()).await;
    bot.telegram.push_voice(ALICE, Voice::ogg(vec![1; 64], 3));
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
    let stored = store.all();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].text, "проверить духовку");
    assert_eq!(world.stt.clips().len(), 1);
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

#[tokio::test]
async fn with_offers_switched_on_a_dated_event_just_remembered_is_offered_once_and_its_yes_sets_the_reminder(
) {
    use butler_application::reminders::ReminderOfferUseCase;
    use butler_domain::ports::FactRepository;
    use butler_domain::{FactKind, MemoryFact};
    use butler_presentation::telegram::OfferDeps;
    use butler_testkit::fakes::{InMemoryFacts, ManualClock};
    use butler_testkit::telegram::FakeTelegram;

    let world = FakeWorld::default();
    let store = Arc::new(InMemoryReminders::default());
    let facts = Arc::new(InMemoryFacts::default());
    let now = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::starting_at(now));
    let manage = Arc::new(
        ManageRemindersUseCase::new(
            store.clone(),
            world.llm.clone(),
            RemindersConfig::default(),
            None,
        )
        .with_profiles(world.profiles.clone()),
    );
    let offers = Arc::new(ReminderOfferUseCase::new(
        world.profiles.clone(),
        facts.clone(),
        manage,
        clock,
        time::Duration::days(366),
        None,
    ));
    let (facts_stored, found) = tokio::sync::mpsc::channel(8);
    let mut deps = deps(&world, &store);
    if let Some(reminders) = deps.reminders.as_mut() {
        reminders.offers = Some(OfferDeps {
            use_case: offers,
            facts_stored: Arc::new(tokio::sync::Mutex::new(found)),
        });
    }
    let bot = BotHarness::start_with(deps, test_config()).await;
    let alice = UserId::new(ALICE);
    // A concert ten days from now (Moscow, the default zone), as the extractor stores it.
    let moscow = time::UtcOffset::from_hms(3, 0, 0).unwrap();
    let day = (now.to_offset(moscow) + time::Duration::days(10)).date();
    let text = format!(
        "Идёт на концерт {:02}.{:02}.{}",
        day.day(),
        u8::from(day.month()),
        day.year()
    );
    let remembered = |key: &str, text: &str| {
        MemoryFact::new(alice, key, FactKind::Date, text, vec![], now).unwrap()
    };

    // Off by default: a fact with a date brings no offer.
    facts.save(&[remembered("concert", &text)]).await.unwrap();
    facts_stored.send(alice).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(bot.telegram.sent_messages(ALICE).is_empty());

    bot.telegram.push_text(ALICE, ALICE, "/offers on");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    assert!(
        sent[0]
            .text
            .starts_with("Хорошо, сэр: если я запомню событие с датой"),
        "{}",
        sent[0].text
    );
    assert!(world.llm.requests().is_empty(), "a command, not a chat");

    // The compression that stored the fact names the user: the offer comes, with buttons.
    facts_stored.send(alice).await.unwrap();
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    assert!(
        sent[1]
            .text
            .starts_with(&format!("Позволите напомнить, сэр? «{text}» — напомню ")),
        "{}",
        sent[1].text
    );
    assert!(sent[1].text.ends_with(", в 09:00."), "{}", sent[1].text);
    let offer = bot
        .telegram
        .calls_to("sendMessage")
        .into_iter()
        .find(|c| {
            c.str_param("text")
                .is_some_and(|t| t.starts_with("Позволите"))
        })
        .expect("the offer");
    let buttons = &offer.params["reply_markup"]["inline_keyboard"][0];
    let yes = buttons[0]["callback_data"].as_str().unwrap().to_owned();
    assert!(yes.starts_with("rmy:"), "{yes}");
    assert!(buttons[1]["callback_data"]
        .as_str()
        .unwrap()
        .starts_with("rmn:"));
    assert!(store.all().is_empty(), "nothing is set before the answer");

    for press in ["press-1", "press-2"] {
        let yes = yes.clone();
        bot.telegram
            .push_update_of_kind("callback_query", move |message_id| {
                serde_json::json!({
                    "id": press,
                    "from": {"id": ALICE, "is_bot": false, "first_name": "Alice"},
                    "chat_instance": "alice",
                    "data": yes,
                    "message": FakeTelegram::message_object(
                        message_id,
                        ALICE,
                        ALICE,
                        serde_json::json!({"text": "Позволите напомнить, сэр?"}),
                    ),
                })
            });
    }
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 4, WAIT)
        .await
        .unwrap();
    assert!(sent[2].text.starts_with("Напомню "), "{}", sent[2].text);
    assert!(
        sent[2].text.ends_with(&format!(", в 09:00: {text}.")),
        "{}",
        sent[2].text
    );
    let stored = store.all();
    assert_eq!(stored.len(), 1, "two presses, one reminder");
    let due = time::PrimitiveDateTime::new(day, time::macros::time!(09:00)).assume_offset(moscow);
    assert_eq!(stored[0].due_at, due);
    assert_eq!(stored[0].chat_id, ALICE);

    // The next extraction finds the same event: not offered again.
    facts.save(&[remembered("concert", &text)]).await.unwrap();
    facts_stored.send(alice).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bot.telegram.sent_messages(ALICE).len(), 4, "offered once");

    // Switched off: a new dated event brings nothing.
    bot.telegram.push_text(ALICE, ALICE, "/offers off");
    bot.telegram
        .wait_for_messages(ALICE, 5, WAIT)
        .await
        .unwrap();
    let later = format!(
        "Стоматолог {:02}.{:02}.{}",
        day.day(),
        u8::from(day.month()),
        day.year()
    );
    facts.save(&[remembered("dentist", &later)]).await.unwrap();
    facts_stored.send(alice).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bot.telegram.sent_messages(ALICE).len(), 5);
    bot.stop().await.unwrap();
}
