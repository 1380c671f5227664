//! End-to-end behaviour of the Telegram bot: the real teloxide client long-polls the fake Bot
//! API over HTTP and answers through the real reply use case (over in-memory fakes).

mod support;

use std::time::{Duration, Instant};

use butler_application::prompt::templates::FALLBACK_REPLY;
use butler_domain::ports::{LlmError, SttError, UserProfileRepository};
use butler_domain::{Role, Source, UserLimits};
use butler_presentation::telegram::{Access, BotConfig, BotDeps, Limits};
use butler_testkit::fakes::LlmStep;
use butler_testkit::telegram::{Failure, Voice};
use support::{test_config, wait_until, BotHarness, FakeWorld, WAIT};

const ALICE: i64 = 1001;
const BOB: i64 = 2002;

#[tokio::test]
async fn a_text_message_gets_an_alfred_reply_in_the_same_chat_and_two_events_are_stored() {
    let world = FakeWorld::default();
    world.llm.push_reply("Добрый вечер, сэр. Чай подан.");
    let bot = BotHarness::start(&world).await;

    bot.telegram
        .push_text(ALICE, ALICE, "Добрый вечер, Альфред");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert_eq!(sent[0].text, "Добрый вечер, сэр. Чай подан.");
    assert_eq!(sent[0].parse_mode, None, "replies are plain text");
    let events = world.events(ALICE);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].role, Role::User);
    assert_eq!(events[0].content, "Добрый вечер, Альфред");
    assert_eq!(events[1].role, Role::Assistant);
    assert!(events.iter().all(|e| e.source == Source::Text));
    assert!(bot.telegram.sent_messages(BOB).is_empty());
    assert_eq!(world.observer.send_failures(), 0);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn the_start_command_gets_the_butler_greeting_without_asking_the_model() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;

    bot.telegram.push_text(ALICE, ALICE, "/start");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert!(sent[0].text.contains("Альфред"), "{}", sent[0].text);
    assert!(world.llm.requests().is_empty());
    assert!(world.events(ALICE).is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_voice_note_is_downloaded_transcribed_answered_and_stored_as_voice() {
    let world = FakeWorld::default();
    world.stt.push_text("Купила сегодня молоко");
    world.llm.push_reply("Непременно, сэр.");
    let bot = BotHarness::start(&world).await;

    let audio = b"OggS fake opus payload".to_vec();
    bot.telegram.push_voice(ALICE, Voice::ogg(audio.clone(), 3));
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert!(
        sent[0].text.starts_with("«Купила сегодня молоко»"),
        "{}",
        sent[0].text
    );
    assert!(sent[0].text.ends_with("Непременно, сэр."));
    let clips = world.stt.clips();
    assert_eq!(clips.len(), 1);
    assert_eq!(clips[0].bytes, audio);
    assert_eq!(clips[0].mime_type, "audio/ogg");
    assert_eq!(clips[0].duration, Some(Duration::from_secs(3)));
    let events = world.events(ALICE);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].content, "Купила сегодня молоко");
    assert!(events.iter().all(|e| e.source == Source::Voice));
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn an_overlong_voice_note_gets_a_clear_reply_and_is_never_downloaded() {
    let world = FakeWorld::default();
    let config = BotConfig {
        max_voice_duration: Duration::from_secs(60),
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    bot.telegram.push_voice(ALICE, Voice::ogg(vec![1; 64], 61));
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert!(sent[0].text.contains("60 с"), "{}", sent[0].text);
    assert!(bot.telegram.calls_to("getFile").is_empty());
    assert!(bot.telegram.downloads().is_empty());
    assert!(world.stt.clips().is_empty());
    assert!(world.events(ALICE).is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn an_oversized_voice_note_gets_a_clear_reply_and_is_never_downloaded() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;

    let voice = Voice {
        declared_size: Some(25 * 1024 * 1024),
        ..Voice::ogg(vec![1; 64], 10)
    };
    bot.telegram.push_voice(ALICE, voice);
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert!(sent[0].text.contains("20 МБ"), "{}", sent[0].text);
    assert!(bot.telegram.downloads().is_empty());
    assert!(world.stt.clips().is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_voice_note_larger_than_announced_is_cut_off_during_download() {
    let world = FakeWorld::default();
    let config = BotConfig {
        max_voice_bytes: 1024,
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    let voice = Voice {
        declared_size: Some(100),
        ..Voice::ogg(vec![7; 4096], 2)
    };
    bot.telegram.push_voice(ALICE, voice);
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert!(sent[0].text.contains("МБ"), "{}", sent[0].text);
    assert!(world.stt.clips().is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_transcription_gets_a_polite_reply_and_stores_nothing() {
    let world = FakeWorld::default();
    world.stt.push_error(SttError::Unavailable {
        detail: "connection refused".to_owned(),
    });
    let bot = BotHarness::start(&world).await;

    bot.telegram.push_voice(ALICE, Voice::ogg(vec![1; 64], 2));
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert!(
        sent[0].text.contains("не удалось разобрать"),
        "{}",
        sent[0].text
    );
    assert!(world.llm.requests().is_empty());
    assert!(world.events(ALICE).is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn without_speech_to_text_a_voice_note_gets_a_please_type_reply() {
    let world = FakeWorld::default();
    let deps = BotDeps {
        stt: None,
        ..world.deps()
    };
    let bot = BotHarness::start_with(deps, test_config()).await;

    bot.telegram.push_voice(ALICE, Voice::ogg(vec![1; 64], 2));
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert!(sent[0].text.contains("текстом"), "{}", sent[0].text);
    assert!(bot.telegram.downloads().is_empty());
    assert!(world.events(ALICE).is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn stickers_photos_and_documents_get_a_short_in_persona_explanation() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;

    bot.telegram.push_sticker(ALICE);
    bot.telegram.push_photo(ALICE);
    bot.telegram.push_document(ALICE, "report.pdf");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 3, WAIT)
        .await
        .unwrap();

    for message in &sent {
        assert!(
            message.text.contains("текст и голосовые"),
            "{}",
            message.text
        );
    }
    assert!(world.llm.requests().is_empty());
    assert!(world.events(ALICE).is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_model_failure_gets_the_fallback_reply_and_the_bot_answers_the_next_message() {
    let world = FakeWorld::default();
    world.llm.push(LlmStep::Fail(LlmError::Unavailable {
        detail: "connection refused".to_owned(),
    }));
    world.llm.push_reply("Снова к вашим услугам.");
    let bot = BotHarness::start(&world).await;

    bot.telegram.push_text(ALICE, ALICE, "Ты здесь?");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    assert_eq!(sent[0].text, FALLBACK_REPLY);
    assert!(
        world.events(ALICE).is_empty(),
        "nothing stored on a model failure"
    );

    bot.telegram.push_text(ALICE, ALICE, "А теперь?");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    assert_eq!(sent[1].text, "Снова к вашим услугам.");
    assert_eq!(world.events(ALICE).len(), 2);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn nothing_of_a_user_off_the_allow_list_is_stored_and_they_are_told_once() {
    let world = FakeWorld::default();
    let config = BotConfig {
        access: Access::Only(vec![ALICE.into()]),
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    bot.telegram.push_text(BOB, BOB, "Привет");
    bot.telegram.push_text(BOB, BOB, "Ау?");
    let alices = bot.telegram.push_text(ALICE, ALICE, "Добрый день");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    bot.telegram.wait_for_messages(BOB, 1, WAIT).await.unwrap();
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();

    let refused = bot.telegram.sent_messages(BOB);
    assert_eq!(refused.len(), 1, "one refusal per user: {refused:?}");
    assert!(refused[0].text.contains("частный"), "{}", refused[0].text);
    assert_eq!(
        world.inbox.stored_update_ids(),
        vec![alices],
        "only the allowed user's update entered the inbox"
    );
    assert!(world.events(BOB).is_empty());
    assert_eq!(
        world.llm.requests().len(),
        1,
        "only the allowed user reached the model"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn in_an_allowed_group_any_member_may_address_the_butler_and_nothing_reaches_their_private_memory(
) {
    let world = FakeWorld::default();
    let group = -100_700;
    let config = BotConfig {
        access: Access::Only(vec![ALICE.into()]),
        groups: butler_presentation::telegram::GroupConfig {
            allowed_chats: vec![group],
            ..butler_presentation::telegram::GroupConfig::default()
        },
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    // Bob is not on ALLOWED_USER_IDS: in the group he may address the butler, in private not.
    bot.telegram.push_text(BOB, group, "Альфред, кто ты?");
    bot.telegram.push_text(BOB, BOB, "Привет");
    bot.telegram.wait_for_messages(BOB, 1, WAIT).await.unwrap();
    bot.telegram
        .wait_for_messages(group, 1, WAIT)
        .await
        .unwrap();
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();

    assert!(bot.telegram.sent_messages(BOB)[0].text.contains("частный"));
    assert!(world.events(BOB).is_empty(), "nothing in Bob's own memory");
    assert_eq!(
        world
            .memory
            .all(butler_domain::UserId::group(group, None))
            .len(),
        2,
        "the group's memory holds the turn"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_user_over_the_rate_is_told_once_and_the_refused_messages_cost_nothing() {
    let world = FakeWorld::default();
    let config = BotConfig {
        limits: Limits {
            per_minute: 1,
            burst: 2,
            per_day: 0,
        },
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    for i in 0..5 {
        bot.telegram
            .push_text(ALICE, ALICE, &format!("Сообщение {i}"));
    }
    bot.telegram.push_text(BOB, BOB, "А я только спросить");
    bot.telegram.wait_for_messages(BOB, 1, WAIT).await.unwrap();
    bot.telegram
        .wait_for_messages(ALICE, 3, WAIT)
        .await
        .unwrap();
    wait_until("three refusals", || world.observer.refusals().len() == 3).await;

    let sent = bot.telegram.sent_messages(ALICE);
    assert_eq!(sent.len(), 3, "two answers and one notice: {sent:?}");
    assert!(sent[2].text.contains("перевести дух"), "{}", sent[2].text);
    let stored: Vec<String> = world.events(ALICE).into_iter().map(|e| e.content).collect();
    assert_eq!(stored.len(), 4, "only the two answered turns: {stored:?}");
    assert!(!stored.iter().any(|c| c.contains("Сообщение 2")));
    assert_eq!(
        world.llm.requests().len(),
        3,
        "Alice's two answers and Bob's; the refused messages cost no model call"
    );
    assert_eq!(world.observer.refusals(), ["rate", "rate", "rate"]);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_burst_behind_a_slow_model_is_refused_at_the_rate_it_arrived() {
    let world = FakeWorld::default();
    // A model on a CPU: every answer takes longer than the bucket needs to refill a token.
    for _ in 0..8 {
        world.llm.push(LlmStep::Delay(
            Duration::from_millis(1_500),
            "Минуточку, сэр.".to_owned(),
        ));
    }
    let config = BotConfig {
        limits: Limits {
            per_minute: 60,
            burst: 2,
            per_day: 0,
        },
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;
    for i in 0..8 {
        bot.telegram.push_text(ALICE, ALICE, &format!("Срочно {i}"));
    }
    bot.telegram
        .wait_for_messages(ALICE, 3, WAIT)
        .await
        .unwrap();
    wait_until("six refusals", || world.observer.refusals().len() == 6).await;

    let sent = bot.telegram.sent_messages(ALICE);
    assert_eq!(sent.len(), 3, "two answers and one notice: {sent:?}");
    assert_eq!(
        world.llm.requests().len(),
        2,
        "the burst is judged by its arrival, not by when the slow model gets to it"
    );
    assert_eq!(world.events(ALICE).len(), 4);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_reply_whose_done_mark_fails_for_a_while_is_sent_once() {
    let world = FakeWorld::default();
    // A busy database: the next four marks fail, for longer than the lease lasts.
    world
        .inbox
        .failing_completes
        .store(4, std::sync::atomic::Ordering::SeqCst);
    let mut config = test_config();
    config.inbox.lease = Duration::from_millis(300);
    config.inbox.poll_interval = Duration::from_millis(20);
    let bot = BotHarness::start_with(world.deps(), config).await;

    bot.telegram.push_text(ALICE, ALICE, "Который час?");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    wait_until("the update marked done", || {
        world
            .inbox
            .failing_completes
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
    })
    .await;
    wait_until("the backlog emptied", || {
        futures::executor::block_on(butler_domain::ports::UpdateInbox::backlog(
            world.inbox.as_ref(),
        ))
        .unwrap()
            == 0
    })
    .await;
    // Had the lease lapsed while the mark failed, the update would have been claimed again
    // (and its stored reply re-sent) before the mark could succeed.
    assert_eq!(
        bot.telegram.sent_messages(ALICE).len(),
        1,
        "the reply went out once"
    );
    assert_eq!(world.llm.requests().len(), 1);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn the_daily_quota_and_a_users_exception_set_by_support_are_applied() {
    let world = FakeWorld::default();
    // Support lifted Bob's quota.
    let bob = world.profiles.get_or_create(BOB.into()).await.unwrap();
    let mut vip = bob.clone();
    vip.limits = UserLimits {
        per_day: Some(0),
        ..UserLimits::default()
    };
    world.profiles.save(&vip).await.unwrap();
    let config = BotConfig {
        limits: Limits {
            per_minute: 0,
            burst: 1,
            per_day: 2,
        },
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;
    for i in 0..4 {
        bot.telegram.push_text(ALICE, ALICE, &format!("Вопрос {i}"));
        bot.telegram.push_text(BOB, BOB, &format!("Вопрос {i}"));
    }
    bot.telegram.wait_for_messages(BOB, 4, WAIT).await.unwrap();
    bot.telegram
        .wait_for_messages(ALICE, 3, WAIT)
        .await
        .unwrap();
    wait_until("two refusals", || world.observer.refusals().len() == 2).await;

    let alice = bot.telegram.sent_messages(ALICE);
    assert_eq!(alice.len(), 3, "two answers, then one notice: {alice:?}");
    assert!(
        alice[2].text.contains("2 сообщений в сутки"),
        "{}",
        alice[2].text
    );
    assert_eq!(world.events(ALICE).len(), 4);
    assert_eq!(world.events(BOB).len(), 8, "no quota for Bob");
    assert_eq!(world.observer.refusals(), ["quota", "quota"]);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_5000_character_reply_arrives_as_two_messages_in_order() {
    let world = FakeWorld::default();
    let first = "Первая часть. ".repeat(180); // 2520 chars
    let second = "Вторая часть. ".repeat(177); // 2478 chars
    let reply = format!("{}\n\n{}", first.trim(), second.trim());
    assert!(reply.chars().count() >= 4990);
    world.llm.push_reply(&reply);
    let bot = BotHarness::start(&world).await;

    bot.telegram.push_text(ALICE, ALICE, "Расскажи подробно");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();

    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].text, first.trim());
    assert_eq!(sent[1].text, second.trim());
    assert!(sent[0].message_id < sent[1].message_id);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn two_interleaved_users_keep_separate_memories() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;

    for i in 0..3 {
        bot.telegram.push_text(ALICE, ALICE, &format!("Алиса {i}"));
        bot.telegram.push_text(BOB, BOB, &format!("Боб {i}"));
    }
    bot.telegram
        .wait_for_messages(ALICE, 3, WAIT)
        .await
        .unwrap();
    bot.telegram.wait_for_messages(BOB, 3, WAIT).await.unwrap();

    let alice: Vec<_> = world
        .events(ALICE)
        .into_iter()
        .filter(|e| e.role == Role::User)
        .map(|e| e.content)
        .collect();
    let bob: Vec<_> = world
        .events(BOB)
        .into_iter()
        .filter(|e| e.role == Role::User)
        .map(|e| e.content)
        .collect();
    assert_eq!(alice, ["Алиса 0", "Алиса 1", "Алиса 2"]);
    assert_eq!(bob, ["Боб 0", "Боб 1", "Боб 2"]);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_reply_for_one_user_does_not_block_another_user() {
    let world = FakeWorld::default();
    // Alice's model call outlasts the whole test: Bob must be answered while it runs.
    world.llm.push(LlmStep::Delay(
        Duration::from_secs(600),
        "Не спеша, сэр.".to_owned(),
    ));
    let bot = BotHarness::start(&world).await;

    bot.telegram.push_text(ALICE, ALICE, "Долгий вопрос");
    wait_for_llm_requests(&world, 1).await;
    bot.telegram.push_text(BOB, BOB, "Быстрый вопрос");
    bot.telegram.wait_for_messages(BOB, 1, WAIT).await.unwrap();
    assert!(
        bot.telegram.sent_messages(ALICE).is_empty(),
        "Bob was answered while Alice's reply was still being generated"
    );
    bot.kill().await;
}

#[tokio::test]
async fn one_users_messages_are_answered_one_at_a_time_in_order() {
    let world = FakeWorld::default();
    world.llm.push(LlmStep::Delay(
        Duration::from_millis(800),
        "первый ответ".to_owned(),
    ));
    world.llm.push_reply("второй ответ");
    world.llm.push_reply("третий ответ");
    let bot = BotHarness::start(&world).await;

    bot.telegram.push_text(ALICE, ALICE, "первый");
    bot.telegram.push_text(ALICE, ALICE, "второй");
    bot.telegram.push_text(ALICE, ALICE, "третий");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 3, WAIT)
        .await
        .unwrap();

    let texts: Vec<_> = sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["первый ответ", "второй ответ", "третий ответ"]);
    let asked: Vec<_> = world
        .llm
        .requests()
        .iter()
        .map(|r| r.messages.last().unwrap().content.clone())
        .collect();
    assert_eq!(asked.len(), 3);
    assert!(
        asked[1].contains("второй") && asked[2].contains("третий"),
        "{asked:?}"
    );
    // The second prompt already remembers the first exchange.
    let second_prompt = &world.llm.requests()[1].messages;
    assert!(second_prompt
        .iter()
        .any(|m| m.content.contains("первый ответ")));
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn flood_control_is_waited_out_and_exactly_one_copy_is_delivered() {
    let world = FakeWorld::default();
    world.llm.push_reply("Терпение — добродетель, сэр.");
    let bot = BotHarness::start(&world).await;
    bot.telegram
        .fail_next("sendMessage", 1, Failure::RetryAfter(1));

    bot.telegram.push_text(ALICE, ALICE, "Алло");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert_eq!(sent.len(), 1);
    let calls = bot.telegram.calls_to("sendMessage");
    assert_eq!(calls.len(), 2, "one rejected, one delivered");
    assert_eq!(calls[0].injected, Some(Failure::RetryAfter(1)));
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    // A probe: a duplicate of the first reply would be sent before the probe's answer.
    bot.telegram.push_text(ALICE, ALICE, "Проверка");
    bot.telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    assert_eq!(bot.telegram.sent_messages(ALICE).len(), 2, "no duplicate");
    assert_eq!(
        world.observer.send_failures(),
        1,
        "the rejected call is counted"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_send_whose_outcome_is_unknown_is_not_repeated_and_the_bot_carries_on() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;
    bot.telegram
        .fail_next("sendMessage", 1, Failure::BrokenResponse);

    bot.telegram.push_text(ALICE, ALICE, "Первое");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    bot.telegram.push_text(ALICE, ALICE, "Второе");
    bot.telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();

    assert_eq!(
        bot.telegram.calls_to("sendMessage").len(),
        2,
        "the broken send was not resent"
    );
    assert_eq!(
        world.observer.send_failures(),
        1,
        "the broken send is counted"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn the_typing_indicator_is_sent_at_once_and_refreshed_while_the_model_is_slow() {
    let world = FakeWorld::default();
    world.llm.push(LlmStep::Delay(
        Duration::from_millis(1300),
        "Готово.".to_owned(),
    ));
    let config = BotConfig {
        typing_interval: Duration::from_millis(400),
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    bot.telegram.push_text(ALICE, ALICE, "Подумай хорошенько");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    let calls = bot.telegram.calls();
    let sent_at = calls.iter().find(|c| c.method == "sendMessage").unwrap().at;
    let typing: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "sendChatAction")
        .inspect(|c| {
            assert_eq!(c.chat_id(), Some(ALICE));
            assert_eq!(c.str_param("action"), Some("typing"));
        })
        .filter(|c| c.at <= sent_at)
        .collect();
    assert!(
        typing.len() >= 3,
        "typing sent {} times before the reply",
        typing.len()
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let after = bot.telegram.calls_to("sendChatAction").len();
    assert_eq!(after, typing.len(), "typing stops once the reply is sent");
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_quick_reply_sends_no_typing_and_a_slow_one_shows_it_after_the_delay() {
    let world = FakeWorld::default();
    world.llm.push_reply("Мгновенно.");
    world.llm.push(LlmStep::Delay(
        Duration::from_millis(900),
        "Не сразу.".to_owned(),
    ));
    let config = BotConfig {
        typing_delay: Duration::from_millis(300),
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    bot.telegram.push_text(ALICE, ALICE, "Быстро");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        bot.telegram.calls_to("sendChatAction").is_empty(),
        "a reply within the delay needs no typing indicator"
    );

    let pushed = Instant::now();
    bot.telegram.push_text(ALICE, ALICE, "Медленно");
    bot.telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    let calls = bot.telegram.calls();
    let typing = bot.telegram.calls_to("sendChatAction");
    assert_eq!(typing.len(), 1, "one indicator while the model thinks");
    let sent_at = calls
        .iter()
        .filter(|c| c.method == "sendMessage")
        .map(|c| c.at)
        .max()
        .unwrap();
    assert!(typing[0].at < sent_at, "typing comes before the reply");
    assert!(
        typing[0].at >= pushed + Duration::from_millis(300),
        "typing waits for the delay: {:?} after the message",
        typing[0].at - pushed
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_typing_indicator_never_prevents_the_reply() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;
    bot.telegram
        .fail_next("sendChatAction", 5, Failure::Status(400));

    bot.telegram.push_text(ALICE, ALICE, "Привет");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    assert_eq!(sent.len(), 1);
    assert!(bot.telegram.calls_to("sendChatAction")[0]
        .injected
        .is_some());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_bot_does_not_answer_updates_already_answered() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;
    bot.telegram.push_text(ALICE, ALICE, "До перезапуска");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    let telegram = bot.telegram.clone();
    bot.stop().await.unwrap();
    assert_eq!(
        telegram.unconfirmed_updates(),
        0,
        "shutdown confirmed what was answered"
    );

    let bot = BotHarness::start_on(telegram.clone(), world.deps(), test_config()).await;
    telegram.push_text(ALICE, ALICE, "После перезапуска");
    telegram.wait_for_messages(ALICE, 2, WAIT).await.unwrap();
    // A probe: Alice's updates are handled in order, so a re-answered old update would have
    // been sent before the probe's answer.
    telegram.push_text(ALICE, ALICE, "Проверка");
    let sent = telegram.wait_for_messages(ALICE, 3, WAIT).await.unwrap();

    assert_eq!(telegram.sent_messages(ALICE).len(), 3, "{sent:?}");
    assert_eq!(world.llm.requests().len(), 3);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_crashed_bot_does_not_answer_again_after_restart() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;
    bot.telegram.push_text(ALICE, ALICE, "До падения");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    // Polling acknowledged the update with its next getUpdates, before the crash.
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();
    let telegram = bot.telegram.clone();
    bot.kill().await;

    let bot = BotHarness::start_on(telegram.clone(), world.deps(), test_config()).await;
    telegram.push_text(ALICE, ALICE, "После падения");
    telegram.wait_for_messages(ALICE, 2, WAIT).await.unwrap();
    // A probe, answered after anything re-delivered before it (per-user order).
    telegram.push_text(ALICE, ALICE, "Проверка");
    telegram.wait_for_messages(ALICE, 3, WAIT).await.unwrap();

    assert_eq!(telegram.sent_messages(ALICE).len(), 3);
    assert_eq!(world.events(ALICE).len(), 6);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_a_reply_in_flight_finish() {
    let world = FakeWorld::default();
    world.llm.push(LlmStep::Delay(
        Duration::from_millis(800),
        "Успел, сэр.".to_owned(),
    ));
    let bot = BotHarness::start(&world).await;
    let telegram = bot.telegram.clone();

    telegram.push_text(ALICE, ALICE, "Последний вопрос");
    wait_for_llm_requests(&world, 1).await;
    bot.stop().await.unwrap();

    let sent = telegram.sent_messages(ALICE);
    assert_eq!(
        sent.len(),
        1,
        "the reply in flight was delivered before stopping"
    );
    assert_eq!(sent[0].text, "Успел, сэр.");
    assert_eq!(world.events(ALICE).len(), 2);
    assert_eq!(telegram.unconfirmed_updates(), 0);
}

#[tokio::test]
async fn group_messages_are_answered_in_the_group_quoting_the_question() {
    let world = FakeWorld::default();
    let group = -100_500;
    let config = BotConfig {
        groups: butler_presentation::telegram::GroupConfig {
            allowed_chats: vec![group],
            ..butler_presentation::telegram::GroupConfig::default()
        },
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;

    bot.telegram
        .push_text(ALICE, group, "Альфред, который час?");
    bot.telegram
        .wait_for_messages(group, 1, WAIT)
        .await
        .unwrap();

    let call = &bot.telegram.calls_to("sendMessage")[0];
    assert!(
        call.params.get("reply_parameters").is_some(),
        "{:?}",
        call.params
    );
    assert!(bot.telegram.sent_messages(ALICE).is_empty());
    assert!(
        world.events(ALICE).is_empty(),
        "a group's turn is the group's memory, not the sender's"
    );
    bot.stop().await.unwrap();
}

async fn wait_for_llm_requests(world: &FakeWorld, n: usize) {
    let deadline = Instant::now() + WAIT;
    while world.llm.requests().len() < n {
        assert!(Instant::now() < deadline, "the model was not asked in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_reply_whose_done_mark_fails_until_its_lease_lapsed_is_still_sent_once() {
    let world = FakeWorld::default();
    // Every mark fails until the test says otherwise.
    world
        .inbox
        .failing_completes
        .store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
    let mut config = test_config();
    config.inbox.lease = Duration::from_millis(300);
    config.inbox.poll_interval = Duration::from_millis(20);
    let bot = BotHarness::start_with(world.deps(), config).await;

    // Renewals fail too, so the lease lapses while the mark fails; claims still work.
    world
        .inbox
        .failing_renewals
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let update = bot.telegram.push_text(ALICE, ALICE, "Который час?");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    wait_until("the update claimed again after its lease lapsed", || {
        world.inbox.claims_of(update) >= 2
    })
    .await;
    world
        .inbox
        .failing_renewals
        .store(false, std::sync::atomic::Ordering::SeqCst);
    world
        .inbox
        .failing_completes
        .store(0, std::sync::atomic::Ordering::SeqCst);
    wait_until("the backlog emptied", || {
        futures::executor::block_on(butler_domain::ports::UpdateInbox::backlog(
            world.inbox.as_ref(),
        ))
        .unwrap()
            == 0
    })
    .await;
    // A probe, answered after anything re-sent before it (per-conversation order).
    bot.telegram.push_text(ALICE, ALICE, "Проверка");
    bot.telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    assert_eq!(
        bot.telegram.sent_messages(ALICE).len(),
        2,
        "the first reply went out once, though its update was claimed again or marked late"
    );
    assert_eq!(world.llm.requests().len(), 2);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_bot_stopped_while_the_done_mark_fails_re_sends_the_stored_reply_after_restart() {
    let world = FakeWorld::default();
    world
        .inbox
        .failing_completes
        .store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
    let mut config = test_config();
    config.inbox.lease = Duration::from_millis(300);
    config.inbox.poll_interval = Duration::from_millis(20);
    config.shutdown_grace = Duration::from_millis(200);
    let bot = BotHarness::start_with(world.deps(), config.clone()).await;
    bot.telegram.push_text(ALICE, ALICE, "Который час?");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    let telegram = bot.telegram.clone();
    bot.stop().await.unwrap();
    let backlog = || {
        futures::executor::block_on(butler_domain::ports::UpdateInbox::backlog(
            world.inbox.as_ref(),
        ))
        .unwrap()
    };
    assert_eq!(backlog(), 1, "the update was never marked done");

    // The documented duplicate: the restarted bot sends the stored reply again, without
    // asking the model.
    world
        .inbox
        .failing_completes
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let bot = BotHarness::start_on(telegram.clone(), world.deps(), config).await;
    let sent = telegram.wait_for_messages(ALICE, 2, WAIT).await.unwrap();
    assert_eq!(sent[0].text, sent[1].text);
    assert_eq!(world.llm.requests().len(), 1, "re-sent from memory");
    wait_until("the backlog emptied", || backlog() == 0).await;
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_polling_bot_whose_delete_webhook_fails_at_start_fails_its_start() {
    let world = FakeWorld::default();
    let telegram = butler_testkit::telegram::FakeTelegram::start().await;
    // Even a failure that passes (flood control) fails a polling start: nothing can be
    // received without Telegram, and the supervisor restarts the process.
    telegram.fail_next("deleteWebhook", 1, Failure::RetryAfter(1));
    let settings = butler_presentation::telegram::BotSettings {
        token: telegram.token().to_owned().into(),
        api_url: Some(telegram.api_url()),
        delivery: butler_presentation::telegram::Delivery::Polling,
        config: test_config(),
    };
    let outcome = tokio::time::timeout(
        WAIT,
        butler_presentation::telegram::run_bot(
            settings,
            world.deps(),
            tokio_util::sync::CancellationToken::new(),
        ),
    )
    .await
    .expect("the start fails on its own");
    let error = outcome.expect_err("deleteWebhook failed");
    assert!(error.to_string().contains("deleteWebhook"), "{error}");
    assert!(telegram.calls_to("getUpdates").is_empty(), "never polled");
}

#[tokio::test]
async fn a_reply_still_running_when_the_grace_period_ends_is_stopped_and_its_update_released_at_once(
) {
    let world = FakeWorld::default();
    world.llm.push(LlmStep::Delay(
        Duration::from_secs(30),
        "Не успел, сэр.".to_owned(),
    ));
    let config = BotConfig {
        shutdown_grace: Duration::from_millis(200),
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config.clone()).await;
    let telegram = bot.telegram.clone();
    let update = telegram.push_text(ALICE, ALICE, "Долгий вопрос");
    wait_for_llm_requests(&world, 1).await;
    bot.stop().await.unwrap();

    // Released, not left to expire: the conversation is free at once (the lease would
    // otherwise hold it for INBOX_LEASE_SECS), and the update is pending for the next process.
    assert!(
        !world.inbox.is_held(
            ALICE,
            butler_domain::ports::LeaseScope::Replies,
            time::OffsetDateTime::now_utc()
        ),
        "the reply lease was given back"
    );
    assert_eq!(
        futures::executor::block_on(butler_domain::ports::UpdateInbox::backlog(
            world.inbox.as_ref()
        ))
        .unwrap(),
        1,
        "the update stays pending"
    );
    assert!(telegram.sent_messages(ALICE).is_empty());
    assert!(
        world.events(ALICE).is_empty(),
        "nothing stored of the cut reply"
    );

    // The next process answers it at once.
    let bot = BotHarness::start_on(telegram.clone(), world.deps(), config).await;
    telegram.wait_for_messages(ALICE, 1, WAIT).await.unwrap();
    assert_eq!(world.inbox.claims_of(update), 2);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn an_update_interrupted_five_times_is_given_up_without_asking_the_model() {
    use butler_domain::ports::{InboxUpdate, UpdateInbox};
    let world = FakeWorld::default();
    let poison = 900;
    let payload = serde_json::json!({
        "update_id": poison,
        "message": butler_testkit::telegram::FakeTelegram::message_object(
            poison,
            ALICE,
            ALICE,
            serde_json::json!({ "text": "Ядовитое сообщение" }),
        ),
    })
    .to_string();
    let now = time::OffsetDateTime::now_utc();
    world
        .inbox
        .store(&InboxUpdate {
            update_id: poison,
            conversation: ALICE,
            payload,
            received_at: butler_domain::timestamp::truncate_to_millis(now),
        })
        .await
        .unwrap();
    // Five claims that each died with their process (each lease lapsed at once).
    for _ in 0..5 {
        let claimed = world
            .inbox
            .claim(now, time::Duration::ZERO)
            .await
            .unwrap()
            .expect("the update is claimable again");
        assert_eq!(claimed.update.update_id, poison);
    }

    let bot = BotHarness::start(&world).await;
    wait_until("the poison update settled", || {
        futures::executor::block_on(world.inbox.backlog()).unwrap() == 0
    })
    .await;
    assert_eq!(world.inbox.claims_of(poison), 6);
    // A probe from the same user, answered after the given-up update.
    bot.telegram.push_text(ALICE, ALICE, "Проверка");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    assert_eq!(bot.telegram.sent_messages(ALICE).len(), 1);
    let requests = world.llm.requests();
    assert_eq!(
        requests.len(),
        1,
        "the model was asked only about the probe"
    );
    assert!(!requests[0]
        .messages
        .iter()
        .any(|m| m.content.contains("Ядовитое")));
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn answered_updates_are_purged_from_the_inbox_once_past_their_retention() {
    let world = FakeWorld::default();
    let mut config = test_config();
    config.inbox.retention = Duration::from_millis(50);
    config.inbox.purge_every = Duration::from_millis(50);
    let bot = BotHarness::start_with(world.deps(), config).await;
    let update = bot.telegram.push_text(ALICE, ALICE, "Добрый вечер");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    // Answered after the start-up purge: only the periodic one can remove it.
    wait_until("the answered update purged", || {
        !world.inbox.stored_update_ids().contains(&update)
    })
    .await;
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn polling_keeps_an_update_unconfirmed_and_retries_storing_it_while_the_inbox_is_down() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;
    world.inbox.outage.set(true);
    bot.telegram.push_text(ALICE, ALICE, "Вы меня слышите?");
    wait_until("the store retried", || {
        world
            .inbox
            .refused_stores
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2
    })
    .await;
    assert_eq!(
        bot.telegram.unconfirmed_updates(),
        1,
        "not confirmed to Telegram while not stored"
    );
    world.inbox.outage.set(false);
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();
    assert_eq!(world.llm.requests().len(), 1);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn messages_without_a_human_sender_are_dropped_silently_and_never_stored() {
    let world = FakeWorld::default();
    // Open to everyone: only the missing human sender keeps these out.
    let bot = BotHarness::start(&world).await;
    let group = -100_700;
    // Another bot in a group, and a channel's post forwarded into its discussion group.
    bot.telegram.push_update_of_kind("message", |id| {
        let mut message = butler_testkit::telegram::FakeTelegram::message_object(
            id,
            777,
            group,
            serde_json::json!({ "text": "Я бот" }),
        );
        message["from"]["is_bot"] = serde_json::json!(true);
        message
    });
    bot.telegram.push_update_of_kind("message", |id| {
        let mut message = butler_testkit::telegram::FakeTelegram::message_object(
            id,
            888,
            group,
            serde_json::json!({ "text": "Новости канала" }),
        );
        message.as_object_mut().unwrap().remove("from");
        message["sender_chat"] =
            serde_json::json!({ "id": -100_800, "type": "channel", "title": "Канал" });
        message
    });
    let alices = bot.telegram.push_text(ALICE, ALICE, "Добрый день");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    bot.telegram.wait_until_all_confirmed(WAIT).await.unwrap();

    assert_eq!(world.inbox.stored_update_ids(), vec![alices]);
    assert!(bot.telegram.sent_messages(group).is_empty(), "silent");
    assert_eq!(bot.telegram.all_sent_messages().len(), 1);
    assert_eq!(world.llm.requests().len(), 1);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_refusal_waiting_on_telegram_does_not_hold_up_receiving() {
    let world = FakeWorld::default();
    let config = BotConfig {
        access: Access::Only(vec![ALICE.into()]),
        ..test_config()
    };
    let bot = BotHarness::start_with(world.deps(), config).await;
    // The refusal to Bob is the next sendMessage: flood control makes it wait a second.
    bot.telegram
        .fail_next("sendMessage", 1, Failure::RetryAfter(1));
    bot.telegram.push_text(BOB, BOB, "Привет");
    bot.telegram.push_text(ALICE, ALICE, "Добрый день");
    bot.telegram.wait_for_messages(BOB, 1, WAIT).await.unwrap();
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();

    let order: Vec<i64> = bot
        .telegram
        .all_sent_messages()
        .iter()
        .map(|m| m.chat_id)
        .collect();
    assert_eq!(
        order,
        [ALICE, BOB],
        "Alice, who wrote after Bob, was answered while Bob's refusal waited"
    );
    bot.stop().await.unwrap();
}

/// A model that counts how many calls it is answering at once.
struct CountingLlm {
    inner: std::sync::Arc<butler_testkit::fakes::FakeLlm>,
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl butler_domain::ports::LlmClient for CountingLlm {
    async fn complete(
        &self,
        request: &butler_domain::ports::LlmRequest,
    ) -> Result<butler_domain::ports::LlmReply, LlmError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let reply = self.inner.complete(request).await;
        self.now.fetch_sub(1, SeqCst);
        reply
    }
}

#[tokio::test]
async fn a_bot_answers_at_most_its_configured_number_of_conversations_at_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let world = FakeWorld::default();
    let gate = world.llm.gate();
    let llm = std::sync::Arc::new(CountingLlm {
        inner: world.llm.clone(),
        now: std::sync::atomic::AtomicUsize::new(0),
        most: std::sync::atomic::AtomicUsize::new(0),
    });
    let mut config = test_config();
    config.inbox.workers = 2;
    let bot = BotHarness::start_with(world.deps_with_llm(llm.clone()), config).await;
    let users = [ALICE, BOB, 3003, 4004];
    for user in users {
        bot.telegram.push_text(user, user, "Вопрос");
    }
    // Two answers wait in the model while all four conversations are in the inbox.
    wait_until("two answers in the model, four updates stored", || {
        llm.now.load(SeqCst) == 2 && world.inbox.stored_update_ids().len() == 4
    })
    .await;
    gate.add_permits(4);
    for user in users {
        bot.telegram.wait_for_messages(user, 1, WAIT).await.unwrap();
    }
    assert_eq!(world.llm.requests().len(), 4);
    assert_eq!(llm.most.load(SeqCst), 2, "never more than two at once");
    bot.stop().await.unwrap();
}
