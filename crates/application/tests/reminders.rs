//! Reminders through the use cases with the fakes: phrasings answered by a scripted "oracle"
//! model (the JSON a perfect model would give) resolve to the right instants and confirmations;
//! list, cancel and move work in Russian; firing delivers once, in the user's language, with a
//! late note after downtime, and never loses a reminder to a failed send.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use butler_application::reminders::{
    FireConfig, FireRemindersUseCase, ManageRemindersUseCase, ReminderChannel, ReminderMessage,
    RemindersConfig, SendError,
};
use butler_domain::ports::LlmError;
use butler_domain::profile::Language;
use butler_domain::reminder::{ReminderStatus, UserTimeZone};
use butler_domain::UserId;
use butler_testkit::fakes::{FakeLlm, InMemoryProfiles, InMemoryReminders, LlmStep};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Monday 7 December 2026, 10:30 in Moscow.
const NOW: OffsetDateTime = datetime!(2026-12-07 07:30 UTC);
const USER: UserId = UserId::new(42);

fn oracle(task: &str, fields: &str) -> String {
    let mut json = format!(r#"{{"task":"{task}""#);
    for key in [
        "in_minutes",
        "date",
        "in_days",
        "weekday",
        "hour",
        "minute",
        "part_of_day",
    ] {
        if !fields.contains(&format!("\"{key}\"")) {
            json.push_str(&format!(r#","{key}":null"#));
        }
    }
    if !fields.is_empty() {
        json.push(',');
        json.push_str(fields);
    }
    json.push('}');
    json
}

struct Setup {
    store: Arc<InMemoryReminders>,
    llm: Arc<FakeLlm>,
    /// Where the use case reads each user's zone (empty: everyone on the default).
    profiles: Arc<InMemoryProfiles>,
    manage: ManageRemindersUseCase,
}

fn setup(config: RemindersConfig) -> Setup {
    let store = Arc::new(InMemoryReminders::default());
    let llm = Arc::new(FakeLlm::default());
    let profiles = Arc::new(InMemoryProfiles::default());
    let manage = ManageRemindersUseCase::new(store.clone(), llm.clone(), config, None)
        .with_profiles(profiles.clone());
    Setup {
        store,
        llm,
        profiles,
        manage,
    }
}

fn msg<'a>(
    text: &'a str,
    language: Language,
    zone: Option<&str>,
    now: OffsetDateTime,
) -> ReminderMessage<'a> {
    ReminderMessage {
        user: USER,
        chat_id: 42,
        text,
        message_id: None,
        language,
        zone: zone.map(|z| UserTimeZone::new(z).unwrap()),
        now,
    }
}

/// Phrase, the oracle's answer, the zone, the language, the due instant, the confirmation.
type Case = (
    &'static str,
    String,
    Option<&'static str>,
    Language,
    OffsetDateTime,
    &'static str,
);

#[tokio::test]
async fn phrasings_become_reminders_at_the_resolved_instants_with_confirmations_in_words() {
    let table: Vec<Case> = vec![
        (
            "Напомни завтра в 9 позвонить маме",
            oracle("позвонить маме", r#""in_days":1,"hour":9"#),
            None,
            Language::Ru,
            datetime!(2026-12-08 06:00 UTC),
            "Напомню завтра, 8 декабря, в 09:00: позвонить маме.",
        ),
        (
            "через 20 минут проверь духовку",
            oracle("проверь духовку", r#""in_minutes":20"#),
            None,
            Language::Ru,
            datetime!(2026-12-07 07:50 UTC),
            "Напомню сегодня, 7 декабря, в 10:50: проверь духовку.",
        ),
        (
            "напомни в пятницу вечером — про билеты",
            oracle(
                "про билеты",
                r#""weekday":"friday","part_of_day":"evening""#,
            ),
            None,
            Language::Ru,
            datetime!(2026-12-11 16:00 UTC),
            "Напомню в пятницу, 11 декабря, в 19:00: про билеты.",
        ),
        (
            "напомни 15 декабря утром про концерт",
            oracle("про концерт", r#""date":"12-15","part_of_day":"morning""#),
            None,
            Language::Ru,
            datetime!(2026-12-15 06:00 UTC),
            "Напомню во вторник, 15 декабря, в 09:00: про концерт.",
        ),
        (
            "remind me tomorrow at 9 to call mum",
            oracle("call mum", r#""in_days":1,"hour":9"#),
            Some("America/New_York"),
            Language::En,
            datetime!(2026-12-08 14:00 UTC),
            "I shall remind you tomorrow, 8 December, at 09:00: call mum.",
        ),
    ];
    for (phrase, answer, zone, language, due, confirmation) in table {
        let s = setup(RemindersConfig::default());
        s.llm.push_reply(&answer);
        let reply = s.manage.execute(msg(phrase, language, zone, NOW)).await;
        assert_eq!(reply.as_deref(), Some(confirmation), "{phrase}");
        let stored = s.store.all();
        assert_eq!(stored.len(), 1, "{phrase}");
        assert_eq!(stored[0].due_at, due, "{phrase}");
        let request = &s.llm.requests()[0];
        assert!(
            matches!(&request.format, butler_domain::ports::OutputFormat::Json { name, .. } if name == "reminder"),
            "the schema is sent"
        );
    }
}

#[tokio::test]
async fn ambiguous_or_past_times_are_asked_back_and_nothing_is_stored() {
    for (phrase, answer, expected) in [
        (
            "напомни завтра в 3 про встречу",
            oracle("про встречу", r#""in_days":1,"hour":3"#),
            "В 3:00 утра или в 15:00",
        ),
        (
            "напомни 15 декабря про концерт",
            oracle("про концерт", r#""date":"12-15""#),
            "В котором часу",
        ),
        (
            "напомни в 9 утра про зарядку",
            oracle("про зарядку", r#""hour":9,"part_of_day":"morning""#),
            "уже прошло",
        ),
        (
            "напомни завтра про маму",
            oracle("про маму", r#""in_days":1"#),
            "В котором часу",
        ),
    ] {
        let s = setup(RemindersConfig::default());
        s.llm.push_reply(&answer);
        let reply = s
            .manage
            .execute(msg(phrase, Language::Ru, None, NOW))
            .await
            .unwrap();
        assert!(reply.contains(expected), "{phrase}: {reply}");
        assert!(s.store.all().is_empty(), "{phrase}");
    }
}

#[tokio::test]
async fn a_request_handled_again_after_a_crash_stores_one_reminder() {
    // The bot sent its confirmation and died before the update was marked done: the restarted
    // bot handles the same Telegram message again, a minute later.
    let s = setup(RemindersConfig::default());
    let said = "Напомни завтра в 9 позвонить маме";
    for now in [NOW, NOW + time::Duration::minutes(1)] {
        s.llm
            .push_reply(&oracle("позвонить маме", r#""in_days":1,"hour":9"#));
        let reply = s
            .manage
            .execute(ReminderMessage {
                message_id: Some(777),
                ..msg(said, Language::Ru, None, now)
            })
            .await
            .unwrap();
        assert!(reply.starts_with("Напомню завтра"), "{reply}");
    }
    assert_eq!(s.store.all().len(), 1, "{:?}", s.store.all());
    // Another message with the same words is another request.
    s.llm
        .push_reply(&oracle("позвонить маме", r#""in_days":1,"hour":9"#));
    s.manage
        .execute(ReminderMessage {
            message_id: Some(778),
            ..msg(said, Language::Ru, None, NOW)
        })
        .await
        .unwrap();
    assert_eq!(s.store.all().len(), 2);
}

/// The user message of the last model call: the request the model was asked to transcribe.
fn last_request_text(llm: &FakeLlm) -> String {
    llm.requests()
        .last()
        .and_then(|r| r.messages.last())
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_answer_to_an_asked_back_time_completes_the_pending_request() {
    let s = setup(RemindersConfig::default());
    s.llm
        .push_reply(&oracle("позвонить маме", r#""in_days":1"#));
    let asked = s
        .manage
        .execute(msg(
            "Напомни завтра позвонить маме",
            Language::Ru,
            None,
            NOW,
        ))
        .await
        .unwrap();
    assert!(asked.contains("В котором часу"), "{asked}");
    assert!(s.store.all().is_empty(), "nothing set before the answer");

    // «в 9» alone is no reminder request; after the question it is the answer, and the model
    // gets the request and the answer together.
    s.llm
        .push_reply(&oracle("позвонить маме", r#""in_days":1,"hour":9"#));
    let reply = s
        .manage
        .execute(msg("в 9", Language::Ru, None, NOW + Duration::minutes(1)))
        .await
        .expect("the answer is taken");
    assert_eq!(reply, "Напомню завтра, 8 декабря, в 09:00: позвонить маме.");
    let sent = last_request_text(&s.llm);
    assert!(
        sent.contains("Напомни завтра позвонить маме") && sent.contains("в 9"),
        "{sent}"
    );
    let stored = s.store.all();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].due_at, datetime!(2026-12-08 06:00 UTC));
    // Answered once: another «в 10» is an ordinary message.
    assert!(s
        .manage
        .execute(msg("в 10", Language::Ru, None, NOW + Duration::minutes(2)))
        .await
        .is_none());
}

#[tokio::test]
async fn a_question_is_dropped_by_another_topic_or_after_its_window_and_asked_again_if_still_unclear(
) {
    let s = setup(RemindersConfig::default());
    let ask = || msg("напомни завтра в 3 про встречу", Language::Ru, None, NOW);
    let ambiguous = oracle("про встречу", r#""in_days":1,"hour":3"#);

    // Another topic: the question is dropped and the message left to the chat.
    s.llm.push_reply(&ambiguous);
    s.manage.execute(ask()).await.unwrap();
    assert!(s
        .manage
        .execute(msg("Как дела, Альфред?", Language::Ru, None, NOW))
        .await
        .is_none());
    assert!(s
        .manage
        .execute(msg("в 3 дня", Language::Ru, None, NOW))
        .await
        .is_none());

    // Past the window: an answer eleven minutes later is an ordinary message.
    s.llm.push_reply(&ambiguous);
    s.manage.execute(ask()).await.unwrap();
    let late = NOW + butler_application::reminders::ASK_BACK_WINDOW + Duration::minutes(1);
    assert!(s
        .manage
        .execute(msg("в 3 дня", Language::Ru, None, late))
        .await
        .is_none());

    // Still unclear after the answer: asked again, and the next answer joins both.
    s.llm.push_reply(&ambiguous);
    s.manage.execute(ask()).await.unwrap();
    s.llm.push_reply(&ambiguous);
    let again = s
        .manage
        .execute(msg("в 3", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert!(again.contains("В 3:00 утра или в 15:00"), "{again}");
    s.llm.push_reply(&oracle(
        "про встречу",
        r#""in_days":1,"hour":3,"part_of_day":"afternoon""#,
    ));
    let reply = s
        .manage
        .execute(msg("дня", Language::Ru, None, NOW))
        .await
        .unwrap();
    let sent = last_request_text(&s.llm);
    assert!(
        sent.contains("в 3 про встречу — в 3 — дня"),
        "the request with both answers: {sent}"
    );
    assert_eq!(reply, "Напомню завтра, 8 декабря, в 15:00: про встречу.");
    assert_eq!(s.store.all().len(), 1);
}

#[tokio::test]
async fn a_failing_or_rambling_model_gets_a_polite_question_and_other_messages_are_not_taken() {
    let s = setup(RemindersConfig::default());
    s.llm.push(LlmStep::Fail(LlmError::Unavailable {
        detail: "down".into(),
    }));
    let reply = s
        .manage
        .execute(msg("напомни завтра в 9 позвонить", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert!(reply.contains("Не понял"), "{reply}");
    s.llm.push_reply("I think you should call your mother.");
    let reply = s
        .manage
        .execute(msg("напомни завтра в 9 позвонить", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert!(reply.contains("Не понял"), "{reply}");
    assert!(s
        .manage
        .execute(msg("Как дела?", Language::Ru, None, NOW))
        .await
        .is_none());
    assert!(
        s.manage
            .execute(msg("Напомни, когда концерт?", Language::Ru, None, NOW))
            .await
            .is_none(),
        "a question to the memory is left to the chat"
    );
    assert!(s.store.all().is_empty());
}

#[tokio::test]
async fn reminders_are_listed_moved_and_cancelled_in_russian() {
    let s = setup(RemindersConfig::default());
    s.llm
        .push_reply(&oracle("позвонить маме", r#""in_days":1,"hour":9"#));
    s.manage
        .execute(msg(
            "напомни завтра в 9 позвонить маме",
            Language::Ru,
            None,
            NOW,
        ))
        .await;
    s.llm
        .push_reply(&oracle("проверить духовку", r#""in_minutes":20"#));
    s.manage
        .execute(msg(
            "через 20 минут напомни проверить духовку",
            Language::Ru,
            None,
            NOW,
        ))
        .await;

    let list = s
        .manage
        .execute(msg("Какие у меня напоминания?", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert_eq!(
        list,
        "Ваши напоминания:\n1. сегодня, 7 декабря, в 10:50 — проверить духовку\n2. завтра, 8 декабря, в 09:00 — позвонить маме"
    );
    let moved = s
        .manage
        .execute(msg(
            "перенеси напоминание про маму на час позже",
            Language::Ru,
            None,
            NOW,
        ))
        .await
        .unwrap();
    assert_eq!(
        moved,
        "Перенёс: напомню завтра, 8 декабря, в 10:00 — позвонить маме."
    );
    let ambiguous = s
        .manage
        .execute(msg("перенеси на час позже", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert!(ambiguous.contains("Какое именно"), "{ambiguous}");
    let cancelled = s
        .manage
        .execute(msg("отмени напоминание про маму", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert_eq!(cancelled, "Отменил напоминание: позвонить маме.");
    let mum = s
        .store
        .all()
        .into_iter()
        .find(|r| r.text == "позвонить маме")
        .unwrap();
    assert!(matches!(mum.status, ReminderStatus::Cancelled(_)));
    assert_eq!(mum.due_at, datetime!(2026-12-08 07:00 UTC));
    let only = s
        .manage
        .execute(msg("отмени напоминание", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert_eq!(only, "Отменил напоминание: проверить духовку.");
    let none = s
        .manage
        .execute(msg("какие у меня напоминания", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert_eq!(none, "Напоминаний нет, сэр.");
}

#[tokio::test]
async fn per_user_limits_on_count_and_horizon_are_kept() {
    let config = RemindersConfig {
        max_pending: 2,
        horizon: Duration::days(30),
        ..RemindersConfig::default()
    };
    let s = setup(config);
    for _ in 0..3 {
        s.llm.push_reply(&oracle("чай", r#""in_minutes":5"#));
    }
    for _ in 0..2 {
        assert!(s
            .manage
            .execute(msg("напомни через 5 минут чай", Language::Ru, None, NOW))
            .await
            .unwrap()
            .starts_with("Напомню"));
    }
    let third = s
        .manage
        .execute(msg("напомни через 5 минут чай", Language::Ru, None, NOW))
        .await
        .unwrap();
    assert!(third.contains("предел"), "{third}");
    let s = setup(RemindersConfig {
        horizon: Duration::days(30),
        ..RemindersConfig::default()
    });
    s.llm
        .push_reply(&oracle("налоги", r#""date":"2027-06-01","hour":10"#));
    let far = s
        .manage
        .execute(msg(
            "напомни 1 июня 2027 в 10 про налоги",
            Language::Ru,
            None,
            NOW,
        ))
        .await
        .unwrap();
    assert!(far.contains("30 дней"), "{far}");
    assert!(s.store.all().is_empty());
}

/// A channel that records what it sent, failing as told.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(i64, String)>>,
    fail_next: Mutex<Option<SendError>>,
}

#[async_trait]
impl ReminderChannel for Recorder {
    async fn send(&self, chat_id: i64, text: &str) -> Result<(), SendError> {
        if let Some(error) = self.fail_next.lock().unwrap().take() {
            return Err(error);
        }
        self.sent.lock().unwrap().push((chat_id, text.to_owned()));
        Ok(())
    }
}

#[tokio::test]
async fn firing_delivers_each_due_reminder_once_with_a_late_note_after_downtime() {
    let s = setup(RemindersConfig::default());
    s.llm
        .push_reply(&oracle("позвонить маме", r#""in_minutes":10"#));
    s.manage
        .execute(msg(
            "напомни через 10 минут позвонить маме",
            Language::Ru,
            None,
            NOW,
        ))
        .await;
    s.llm.push_reply(&oracle("чай", r#""in_minutes":60"#));
    s.manage
        .execute(msg("напомни через час чай", Language::Ru, None, NOW))
        .await;
    let channel = Arc::new(Recorder::default());
    let fire = FireRemindersUseCase::new(
        s.store.clone(),
        Arc::new(InMemoryProfiles::default()),
        channel.clone(),
        FireConfig::default(),
        None,
    );
    assert_eq!(
        fire.execute(NOW + Duration::minutes(9))
            .await
            .unwrap()
            .claimed,
        0
    );
    let on_time = fire.execute(NOW + Duration::minutes(10)).await.unwrap();
    assert_eq!((on_time.fired, on_time.late), (1, 0));
    assert_eq!(
        fire.execute(NOW + Duration::minutes(11))
            .await
            .unwrap()
            .claimed,
        0,
        "never twice"
    );
    // The bot was down from minute 11 to minute 90.
    let late = fire.execute(NOW + Duration::minutes(90)).await.unwrap();
    assert_eq!((late.fired, late.late), (1, 1));
    let sent = channel.sent.lock().unwrap().clone();
    assert_eq!(
        sent[0],
        (42, "⏰ Позвольте напомнить, сэр: позвонить маме".to_owned())
    );
    assert!(sent[1].1.contains("опоздание на 30 мин"), "{}", sent[1].1);
    assert!(s
        .store
        .all()
        .iter()
        .all(|r| matches!(r.status, ReminderStatus::Delivered(_))));
}

#[tokio::test]
async fn a_send_that_surely_failed_is_retried_and_one_that_may_have_arrived_is_not() {
    let s = setup(RemindersConfig::default());
    s.llm.push_reply(&oracle("чай", r#""in_minutes":1"#));
    s.manage
        .execute(msg("напомни через минуту чай", Language::Ru, None, NOW))
        .await;
    let channel = Arc::new(Recorder::default());
    let fire = FireRemindersUseCase::new(
        s.store.clone(),
        Arc::new(InMemoryProfiles::default()),
        channel.clone(),
        FireConfig::default(),
        None,
    );
    let due = NOW + Duration::minutes(1);
    *channel.fail_next.lock().unwrap() = Some(SendError::NotSent("429".into()));
    assert_eq!(fire.execute(due).await.unwrap().failed, 1);
    assert_eq!(
        s.store.all()[0].status,
        ReminderStatus::Pending,
        "kept for the next round"
    );
    assert_eq!(
        fire.execute(due + Duration::seconds(1))
            .await
            .unwrap()
            .fired,
        1
    );
    assert_eq!(channel.sent.lock().unwrap().len(), 1);

    s.llm.push_reply(&oracle("кофе", r#""in_minutes":2"#));
    s.manage
        .execute(msg("напомни через 2 минуты кофе", Language::Ru, None, NOW))
        .await;
    *channel.fail_next.lock().unwrap() = Some(SendError::MaybeSent("timeout".into()));
    assert_eq!(
        fire.execute(NOW + Duration::minutes(2))
            .await
            .unwrap()
            .failed,
        1
    );
    assert_eq!(
        fire.execute(NOW + Duration::minutes(10))
            .await
            .unwrap()
            .claimed,
        0,
        "not sent again"
    );
}

/// A user whose profile names a zone gets reminders resolved and listed on their own clock —
/// the zone set through the admin use case, read by the reminders use case — while a user
/// without one stays on the operator's default.
#[tokio::test]
async fn a_user_in_another_zone_is_reminded_on_their_own_clock_and_others_keep_the_default() {
    use butler_application::admin::UpdateProfileUseCase;
    use butler_domain::ports::UserProfileRepository;
    use butler_domain::ProfileUpdate;

    let clock = Arc::new(butler_testkit::fakes::ManualClock::starting_at(NOW));
    let s = setup(RemindersConfig::default());
    let (profiles, manage) = (&s.profiles, &s.manage);
    let perm = UserId::new(59);
    profiles.get_or_create(perm).await.unwrap();
    profiles.get_or_create(USER).await.unwrap();
    UpdateProfileUseCase::new(profiles.clone(), clock)
        .execute(
            perm,
            &ProfileUpdate {
                time_zone: Some(Some(UserTimeZone::new("Asia/Yekaterinburg").unwrap())),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(manage.zone_of(perm).await.name(), "Asia/Yekaterinburg");
    assert_eq!(manage.zone_of(USER).await.name(), "Europe/Moscow");

    let ask = |user: UserId, text: &'static str| ReminderMessage {
        user,
        chat_id: user.get(),
        text,
        message_id: None,
        language: Language::Ru,
        zone: None,
        now: NOW,
    };
    s.llm
        .push_reply(&oracle("позвонить маме", r#""in_days":1,"hour":9"#));
    let reply = manage
        .execute(ask(perm, "Напомни завтра в 9 позвонить маме"))
        .await;
    assert_eq!(
        reply.as_deref(),
        Some("Напомню завтра, 8 декабря, в 09:00: позвонить маме.")
    );
    s.llm
        .push_reply(&oracle("позвонить маме", r#""in_days":1,"hour":9"#));
    manage
        .execute(ask(USER, "Напомни завтра в 9 позвонить маме"))
        .await;
    let due = |user: UserId| {
        s.store
            .all()
            .into_iter()
            .find(|r| r.user_id == user)
            .map(|r| (r.due_at, r.time_zone))
            .unwrap()
    };
    assert_eq!(
        due(perm),
        (
            datetime!(2026-12-08 04:00 UTC),
            "Asia/Yekaterinburg".to_owned()
        ),
        "09:00 in Perm is 04:00 UTC"
    );
    assert_eq!(
        due(USER),
        (datetime!(2026-12-08 06:00 UTC), "Europe/Moscow".to_owned())
    );
    let list = manage
        .execute(ask(perm, "Какие у меня напоминания?"))
        .await
        .unwrap();
    assert_eq!(
        list,
        "Ваши напоминания:\n1. завтра, 8 декабря, в 09:00 — позвонить маме"
    );

    // Moved to London, the day before the clocks go forward (Sunday 28 March 2027, 01:00
    // GMT → 02:00 BST): 09:00 tomorrow is summer time, and 01:30, which does not exist that
    // night, moves forward by the gap.
    let london = UserTimeZone::new("Europe/London").unwrap();
    let mut profile = profiles.get(perm).await.unwrap().unwrap();
    profile.time_zone = Some(london);
    profiles.save(&profile).await.unwrap();
    let saturday = datetime!(2027-03-27 12:00 UTC);
    for (answer, due, confirmation) in [
        (
            oracle("позвонить маме", r#""in_days":1,"hour":9"#),
            datetime!(2027-03-28 08:00 UTC),
            "Напомню завтра, 28 марта, в 09:00: позвонить маме.",
        ),
        (
            oracle(
                "проверить котёл",
                r#""in_days":1,"hour":1,"minute":30,"part_of_day":"night""#,
            ),
            datetime!(2027-03-28 01:30 UTC),
            "Напомню завтра, 28 марта, в 02:30: проверить котёл.",
        ),
    ] {
        s.llm.push_reply(&answer);
        let reply = manage
            .execute(ReminderMessage {
                now: saturday,
                ..ask(perm, "напомни завтра ...")
            })
            .await;
        assert_eq!(reply.as_deref(), Some(confirmation));
        assert!(
            s.store
                .all()
                .iter()
                .any(|r| r.due_at == due && r.time_zone == "Europe/London"),
            "{confirmation}: {:?}",
            s.store.all()
        );
    }
}

/// The zone is learned from what the user says — proposed once, set only on «да» — and from a
/// home-city fact the extractor stored; an unknown city, or the zone the user already has,
/// gets no proposal.
#[tokio::test]
async fn a_zone_learned_from_the_conversation_is_proposed_once_and_set_only_when_confirmed() {
    use butler_application::reminders::ZoneOfferUseCase;
    use butler_domain::ports::{FactRepository, UserProfileRepository};
    use butler_domain::{FactKind, MemoryFact};
    use butler_testkit::fakes::{InMemoryFacts, ManualClock};

    let s = setup(RemindersConfig::default());
    let (profiles, manage) = (&s.profiles, &s.manage);
    let facts = Arc::new(InMemoryFacts::default());
    let clock = Arc::new(ManualClock::starting_at(NOW));
    let moscow = UserTimeZone::new("Europe/Moscow").unwrap();
    let zones = ZoneOfferUseCase::new(profiles.clone(), clock.clone(), moscow.clone())
        .with_facts(facts.clone());
    profiles.get_or_create(USER).await.unwrap();

    assert_eq!(zones.offer(USER, "Как дела?").await, None);
    assert_eq!(
        zones.offer(USER, "Я живу в Урюпинске").await,
        None,
        "unknown city"
    );
    assert_eq!(
        zones.offer(USER, "Я живу в Москве").await,
        None,
        "already the zone in force"
    );
    let offer = zones
        .offer(USER, "Кстати, я живу в Перми")
        .await
        .expect("a proposal");
    assert_eq!(offer.zone.name(), "Asia/Yekaterinburg");
    assert_eq!(
        offer.question,
        "Вы в Перми — ставлю часовой пояс Екатеринбург, UTC+5? Напоминания буду считать по нему."
    );
    assert_eq!(
        profiles.get(USER).await.unwrap().unwrap().time_zone,
        None,
        "nothing set before the answer"
    );
    assert_eq!(
        zones.offer(USER, "Я живу в Перми, говорю же").await,
        None,
        "proposed once"
    );
    let stale = zones.answer(USER, "Asia/Tokyo", true).await;
    assert!(stale.contains("неактуален"), "{stale}");
    let done = zones.answer(USER, "Asia/Yekaterinburg", true).await;
    assert!(
        done.starts_with("Готово, сэр: часовой пояс Екатеринбург (UTC+5)."),
        "{done}"
    );
    assert_eq!(manage.zone_of(USER).await.name(), "Asia/Yekaterinburg");
    s.llm
        .push_reply(&oracle("позвонить маме", r#""in_days":1,"hour":9"#));
    manage
        .execute(ReminderMessage {
            user: USER,
            chat_id: 42,
            text: "Напомни завтра в 9 позвонить маме",
            message_id: None,
            language: Language::Ru,
            zone: None,
            now: NOW,
        })
        .await;
    assert_eq!(s.store.all()[0].due_at, datetime!(2026-12-08 04:00 UTC));

    // A home city the extractor stored is proposed on the next message; «нет» keeps the zone
    // and the question is not asked again.
    let other = UserId::new(77);
    profiles.get_or_create(other).await.unwrap();
    facts
        .save(&[MemoryFact::new(
            other,
            "home city",
            FactKind::Place,
            "Живёт в Новосибирске",
            vec![],
            NOW,
        )
        .unwrap()])
        .await
        .unwrap();
    let offer = zones.offer(other, "Привет").await.expect("from the fact");
    assert_eq!(offer.zone.name(), "Asia/Novosibirsk");
    assert!(offer.question.contains("UTC+7"), "{}", offer.question);
    let kept = zones.answer(other, "Asia/Novosibirsk", false).await;
    assert_eq!(
        kept,
        "Как скажете, сэр: часовой пояс прежний — Москва (UTC+3)."
    );
    assert_eq!(profiles.get(other).await.unwrap().unwrap().time_zone, None);
    assert_eq!(zones.offer(other, "Привет ещё раз").await, None);
}

#[tokio::test]
async fn a_dated_event_in_memory_is_offered_once_only_with_consent_and_its_yes_sets_the_reminder() {
    use butler_application::reminders::ReminderOfferUseCase;
    use butler_domain::ports::{FactRepository, UserProfileRepository};
    use butler_domain::reminder::ReminderId;
    use butler_domain::{FactKind, MemoryFact};
    use butler_testkit::fakes::{InMemoryFacts, ManualClock};

    let s = setup(RemindersConfig::default());
    let manage = Arc::new(
        ManageRemindersUseCase::new(
            s.store.clone(),
            s.llm.clone(),
            RemindersConfig::default(),
            None,
        )
        .with_profiles(s.profiles.clone()),
    );
    let facts = Arc::new(InMemoryFacts::default());
    let clock = Arc::new(ManualClock::starting_at(NOW));
    let offers = ReminderOfferUseCase::new(
        s.profiles.clone(),
        facts.clone(),
        manage,
        clock.clone(),
        Duration::days(60),
        None,
    );
    let fact = |key: &str, kind, text: &str| {
        MemoryFact::new(USER, key, kind, text, vec![], NOW - Duration::hours(1)).unwrap()
    };
    let concert = fact("concert", FactKind::Date, "Идёт на концерт 15 декабря");
    facts
        .save(&[
            concert.clone(),
            fact("exam", FactKind::Date, "Сдавал экзамен 5 декабря 2026"),
            fact(
                "trip",
                FactKind::Promise,
                "Обещал съездить к маме в пятницу",
            ),
            fact(
                "vacation",
                FactKind::Date,
                "Отпуск с 10 января по 20 января",
            ),
            fact("wedding", FactKind::Date, "Свадьба сестры 20 марта"),
            fact("cat", FactKind::Preference, "Любит кошек"),
        ])
        .await
        .unwrap();
    s.profiles.get_or_create(USER).await.unwrap();

    // Off by default: nothing is offered, nothing recorded.
    assert!(offers.find(USER).await.is_empty());
    assert!(s
        .profiles
        .get(USER)
        .await
        .unwrap()
        .unwrap()
        .reminder_offers_made
        .is_empty());

    let on = offers.switch(USER, Some(true)).await;
    assert!(
        on.starts_with("Хорошо, сэр: если я запомню событие с датой"),
        "{on}"
    );
    let made = offers.find(USER).await;
    // Past (5 December), weekday (ambiguous), two dates, beyond the horizon (20 March), no
    // date: only the concert.
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].fact_id, concert.id);
    assert_eq!(made[0].chat_id, 42);
    assert_eq!(
        made[0].question,
        "Позволите напомнить, сэр? «Идёт на концерт 15 декабря» — напомню во вторник, 15 декабря, в 09:00."
    );
    assert_eq!(
        s.profiles
            .get(USER)
            .await
            .unwrap()
            .unwrap()
            .reminder_offers_made,
        vec!["concert@2026-12-15".to_owned()]
    );
    assert!(offers.find(USER).await.is_empty(), "offered once");
    // The same event extracted again (a new fact of the same key) is not offered again.
    facts
        .save(&[fact("concert", FactKind::Date, "Концерт 15 декабря")])
        .await
        .unwrap();
    assert!(offers.find(USER).await.is_empty(), "offered once per event");

    // "Yes", twice: one reminder, at 09:00 Moscow on the 15th, confirmed in words.
    let yes = offers.answer(USER, concert.id, true).await;
    assert_eq!(
        yes,
        "Напомню во вторник, 15 декабря, в 09:00: Идёт на концерт 15 декабря."
    );
    offers.answer(USER, concert.id, true).await;
    let stored = s.store.all();
    assert_eq!(stored.len(), 1, "a double press stores one");
    assert_eq!(stored[0].id, ReminderId::of_offer(concert.id));
    assert_eq!(stored[0].due_at, datetime!(2026-12-15 06:00 UTC));

    // A button for something never offered is stale; "no" only answers.
    let cat = fact("cat2", FactKind::Preference, "Любит собак 1 января");
    facts.save(std::slice::from_ref(&cat)).await.unwrap();
    assert!(offers
        .answer(USER, cat.id, true)
        .await
        .contains("неактуален"));
    let made = offers.find(USER).await;
    assert_eq!(made.len(), 1);
    let no = offers.answer(USER, cat.id, false).await;
    assert_eq!(no, "Как скажете, сэр: напоминать не буду.");
    assert_eq!(s.store.all().len(), 1);

    // Switched off: nothing more.
    offers.switch(USER, Some(false)).await;
    facts
        .save(&[fact("dentist", FactKind::Date, "Стоматолог 20.12 в 10:30")])
        .await
        .unwrap();
    assert!(offers.find(USER).await.is_empty());
    offers.switch(USER, Some(true)).await;
    let made = offers.find(USER).await;
    assert_eq!(made.len(), 1);
    assert!(
        made[0]
            .question
            .contains("в воскресенье, 20 декабря, в 10:30"),
        "{}",
        made[0].question
    );
}
