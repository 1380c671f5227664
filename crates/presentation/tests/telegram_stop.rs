//! Telegram as of Bot API 10.3 in private chats, against the fake Bot API with the real teloxide
//! client: "Thinking…" at once, the drafts' stop button cancelling the generation, and
//! replies with Markdown sent as rich messages (plain text when rejected).

mod support;

use std::time::{Duration, Instant};

use butler_domain::Role;
use butler_presentation::telegram::BotConfig;
use butler_testkit::fakes::LlmStep;
use butler_testkit::telegram::Failure;
use support::{test_config, wait_until, BotHarness, FakeWorld, WAIT};

const ALICE: i64 = 1001;
const BOB: i64 = 2002;

/// A reply that takes about ten seconds to write, a word every 100 ms.
fn slow_reply() -> (String, LlmStep) {
    let text = (0..100)
        .map(|i| format!("слово{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let step = LlmStep::streamed(&text, Duration::from_millis(100));
    (text, step)
}

fn config() -> BotConfig {
    let mut config = test_config();
    config.drafts.interval = Duration::from_millis(100);
    config.drafts.first_after = Duration::from_millis(50);
    config
}

/// The id of the live draft in `chat` once it shows some text.
async fn drafting(bot: &BotHarness, chat: i64) -> i64 {
    wait_until("a text draft", || {
        bot.telegram.drafts(chat).iter().any(|d| !d.text.is_empty())
    })
    .await;
    bot.telegram.drafts(chat)[0].draft_id
}

#[tokio::test]
async fn the_stop_button_cancels_the_generation_at_once_and_keeps_what_was_written() {
    let world = FakeWorld::default();
    let (full, step) = slow_reply();
    world.llm.push(step);
    world.llm.push_reply("Продолжаю, мадам.");
    let bot = BotHarness::start_with(world.deps(), config()).await;

    bot.telegram
        .push_text(ALICE, ALICE, "Расскажи длинную историю");
    let draft = drafting(&bot, ALICE).await;
    assert!(
        bot.telegram.drafts(ALICE).iter().all(|d| d.can_stop),
        "every draft offers the stop button"
    );
    let pressed = Instant::now();
    bot.telegram.push_stop(ALICE, draft);
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    assert!(
        pressed.elapsed() < Duration::from_secs(1),
        "stopped within a second: {:?}",
        pressed.elapsed()
    );
    let kept = &sent[0].text;
    assert!(kept.ends_with('…'), "{kept}");
    let written = kept.trim_end_matches('…');
    assert!(
        !written.is_empty() && full.starts_with(written) && written.len() < full.len() / 2,
        "what was written before the stop: {kept}"
    );
    // Stored as the butler's turn, and the next turn continues from it.
    let events = world.events(ALICE);
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[1].role, events[1].content.as_str()),
        (Role::Assistant, kept.as_str())
    );
    bot.telegram.push_text(ALICE, ALICE, "Продолжай");
    bot.telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    let next: String = world.llm.requests()[1]
        .messages
        .iter()
        .map(|m| m.content.clone())
        .collect();
    assert!(
        next.contains(written),
        "the next prompt holds the stopped turn"
    );
    assert_eq!(world.observer.stops(), [true]);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_stop_for_another_chats_draft_is_ignored() {
    let world = FakeWorld::default();
    let (full, step) = slow_reply();
    world
        .llm
        .push(LlmStep::streamed(&full[..60], Duration::from_millis(50)));
    let _ = step;
    let bot = BotHarness::start_with(world.deps(), config()).await;

    bot.telegram.push_text(ALICE, ALICE, "Расскажи");
    let draft = drafting(&bot, ALICE).await;
    bot.telegram.push_stop(BOB, draft);
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    assert_eq!(
        sent[0].text,
        full[..60].trim(),
        "Alice's reply was not stopped"
    );
    assert_eq!(world.observer.stops(), [false]);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn thinking_shows_as_soon_as_the_message_is_taken_up_before_the_model_answers() {
    let world = FakeWorld::default();
    world.llm.push(LlmStep::Delay(
        Duration::from_millis(800),
        "Готово, сэр.".to_owned(),
    ));
    let bot = BotHarness::start_with(world.deps(), config()).await;
    let mut delivered = bot.telegram.subscribe_delivered();

    bot.telegram.push_text(ALICE, ALICE, "Который час?");
    let reply = tokio::time::timeout(WAIT, delivered.recv())
        .await
        .unwrap()
        .unwrap();
    let drafts = bot.telegram.drafts(ALICE);
    let thinking = drafts.first().expect("a draft before the reply");
    assert_eq!(thinking.text, "", "an empty draft: Telegram's Thinking…");
    assert!(
        reply.at.duration_since(thinking.at) >= Duration::from_millis(700),
        "it came before the model's answer"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn markdown_replies_are_sent_as_rich_messages_and_as_plain_text_when_rejected() {
    let world = FakeWorld::default();
    world.llm.push_reply("**Чай** подан:\n- чёрный\n- зелёный");
    world.llm.push_reply("Без разметки, сэр.");
    world.llm.push_reply("Снова **чай**.");
    let bot = BotHarness::start_with(world.deps(), config()).await;

    bot.telegram.push_text(ALICE, ALICE, "Чаю?");
    bot.telegram.push_text(ALICE, ALICE, "А просто так?");
    bot.telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    bot.telegram.fail_next(
        "sendRichMessage",
        1,
        Failure::Api {
            status: 400,
            description: "Bad Request: can't parse the rich message".to_owned(),
        },
    );
    bot.telegram.push_text(ALICE, ALICE, "Ещё?");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 3, WAIT)
        .await
        .unwrap();

    assert!(sent[0].rich, "Markdown goes as a rich message");
    assert_eq!(sent[0].text, "**Чай** подан:\n- чёрный\n- зелёный");
    assert!(!sent[1].rich, "plain prose stays plain");
    assert!(!sent[2].rich, "rejected, then sent as plain text");
    assert_eq!(sent[2].text, "Снова **чай**.");
    assert_eq!(world.observer.rich_fallbacks(), 1);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn stop_presses_are_asked_of_telegram_with_every_poll() {
    let world = FakeWorld::default();
    let bot = BotHarness::start(&world).await;
    let call = &bot.telegram.calls_to("getUpdates")[0];
    let kinds = call.params["allowed_updates"].clone();
    assert!(
        kinds.as_array().is_some_and(|k| k
            .contains(&serde_json::json!("stopped_message_generation"))
            && k.contains(&serde_json::json!("message"))),
        "{kinds}"
    );
    bot.stop().await.unwrap();
}
