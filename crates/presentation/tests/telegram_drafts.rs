//! Streaming to Telegram: private chats see the reply grow as paced `sendMessageDraft`
//! previews (within Telegram's limit in UTF-16 units), then get one real message; groups get no
//! drafts; a server without the method turns drafts off once, a chat that refuses them loses
//! only its own, any other error skips one draft; failures of the model or of Telegram midway never lose the reply's
//! rules (fallback, nothing stored) or the final message.

mod support;

use std::time::Duration;

use butler_application::prompt::templates::FALLBACK_REPLY;
use butler_domain::ports::LlmError;
use butler_presentation::telegram::{BotConfig, DraftPacing};
use butler_testkit::fakes::LlmStep;
use butler_testkit::telegram::Failure;
use support::{test_config, BotHarness, FakeWorld, WAIT};

const ALICE: i64 = 1001;
const BOB: i64 = 1002;
const GROUP: i64 = -4242;

/// Pacing under test; "Thinking…" off, so only the text drafts are counted (it has tests of its
/// own, in `telegram_stop.rs`).
const PACING: DraftPacing = DraftPacing {
    interval: Duration::from_millis(200),
    min_chars: 4,
    first_after: Duration::from_millis(100),
    thinking: false,
};

fn config() -> BotConfig {
    BotConfig {
        drafts: PACING,
        groups: butler_presentation::telegram::GroupConfig {
            allowed_chats: vec![GROUP],
            ..butler_presentation::telegram::GroupConfig::default()
        },
        ..test_config()
    }
}

/// A bot whose model streams [`LONG_REPLY`], a word every `every`.
async fn streaming_bot(every: Duration) -> (FakeWorld, BotHarness) {
    let world = FakeWorld::default();
    world.llm.push(LlmStep::streamed(LONG_REPLY, every));
    let bot = BotHarness::start_with(world.deps(), config()).await;
    (world, bot)
}

/// Sends a message to `chat` and waits for the one reply.
async fn ask(bot: &BotHarness, chat: i64) -> Vec<butler_testkit::telegram::SentMessage> {
    bot.telegram.push_text(ALICE, chat, "Что нового?");
    bot.telegram.wait_for_messages(chat, 1, WAIT).await.unwrap()
}

const LONG_REPLY: &str = "Добрый вечер, сэр. Позвольте доложить: чай заварен, камин растоплен, \
     газеты разложены по порядку важности, а ваш зонт высушен и ждёт у двери.";

#[tokio::test]
async fn a_private_reply_grows_as_paced_drafts_then_arrives_as_one_message() {
    let (world, bot) = streaming_bot(Duration::from_millis(60)).await;

    let sent = ask(&bot, ALICE).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, LONG_REPLY);

    let drafts = bot.telegram.drafts(ALICE);
    assert!(
        drafts.len() >= 3,
        "the reply grew in several drafts: {drafts:?}"
    );
    for pair in drafts.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= PACING.interval, "drafts {gap:?} apart");
        assert!(
            pair[1].text.len() > pair[0].text.len(),
            "each draft shows more"
        );
    }
    for draft in &drafts {
        assert!(LONG_REPLY.starts_with(&draft.text), "{:?}", draft.text);
        assert_eq!(draft.draft_id, drafts[0].draft_id, "one draft, updated");
        assert!(draft.text.chars().count() >= PACING.min_chars);
    }
    let final_at = bot
        .telegram
        .calls_to("sendMessage")
        .last()
        .map(|c| c.at)
        .unwrap();
    assert!(
        drafts.iter().all(|d| d.at < final_at),
        "the real message comes last"
    );
    assert_eq!(world.events(ALICE).len(), 2);
    assert_eq!(world.events(ALICE)[1].content, LONG_REPLY);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_reply_ready_at_once_is_sent_without_a_draft() {
    let world = FakeWorld::default();
    world.llm.push_reply("Сию минуту, сэр.");
    let bot = BotHarness::start_with(world.deps(), config()).await;
    bot.telegram.push_text(ALICE, ALICE, "Чаю?");
    bot.telegram
        .wait_for_messages(ALICE, 1, WAIT)
        .await
        .unwrap();
    assert!(bot.telegram.drafts(ALICE).is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn group_chats_get_no_drafts_only_their_own_message() {
    let (_, bot) = streaming_bot(Duration::from_millis(40)).await;
    bot.telegram.push_text(ALICE, GROUP, "Альфред, что нового?");
    support::wait_until("the group's final text", || {
        bot.telegram
            .sent_messages(GROUP)
            .first()
            .is_some_and(|m| m.text == LONG_REPLY)
    })
    .await;
    assert_eq!(bot.telegram.sent_messages(GROUP).len(), 1);
    assert!(bot.telegram.calls_to("sendMessageDraft").is_empty());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_without_drafts_turns_them_off_once_and_replies_keep_coming() {
    let world = FakeWorld::default();
    for _ in 0..2 {
        world
            .llm
            .push(LlmStep::streamed(LONG_REPLY, Duration::from_millis(40)));
    }
    let bot = BotHarness::start_with(world.deps(), config()).await;
    bot.telegram.reject_drafts();
    bot.telegram.push_text(ALICE, ALICE, "Раз");
    bot.telegram.push_text(ALICE, ALICE, "Два");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    assert!(sent.iter().all(|m| m.text == LONG_REPLY));
    assert_eq!(
        bot.telegram.calls_to("sendMessageDraft").len(),
        1,
        "tried once, then off for the process"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_model_failing_mid_stream_gives_the_fallback_and_stores_nothing() {
    let world = FakeWorld::default();
    world.llm.push(LlmStep::StreamFails {
        pieces: LONG_REPLY.split_inclusive(' ').map(str::to_owned).collect(),
        every: Duration::from_millis(40),
        error: LlmError::Unavailable {
            detail: "the stream broke".to_owned(),
        },
    });
    let bot = BotHarness::start_with(world.deps(), config()).await;
    let sent = ask(&bot, ALICE).await;
    assert_eq!(sent[0].text, FALLBACK_REPLY);
    assert!(
        !bot.telegram.drafts(ALICE).is_empty(),
        "text was shown before the failure"
    );
    assert!(
        world.events(ALICE).is_empty(),
        "no question without its answer"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_rejected_draft_is_skipped_and_the_next_ones_still_go_out() {
    let (_, bot) = streaming_bot(Duration::from_millis(40)).await;
    bot.telegram
        .fail_next("sendMessageDraft", 1, Failure::Status(400));
    let sent = ask(&bot, ALICE).await;
    assert_eq!(sent[0].text, LONG_REPLY);
    let calls = bot.telegram.calls_to("sendMessageDraft");
    assert!(
        calls.len() >= 2 && !bot.telegram.drafts(ALICE).is_empty(),
        "one bad draft does not turn drafts off: {calls:?}"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn telegram_failing_while_drafting_never_delays_the_final_message() {
    let (_, bot) = streaming_bot(Duration::from_millis(40)).await;
    // teloxide waits 10 s after a 5xx before it returns: the draft is abandoned, not awaited.
    bot.telegram
        .fail_next("sendMessageDraft", 100, Failure::Status(500));
    let pushed = std::time::Instant::now();
    let sent = ask(&bot, ALICE).await;
    assert_eq!(sent[0].text, LONG_REPLY);
    assert!(
        pushed.elapsed() < Duration::from_secs(8),
        "the reply (under a second of streaming) waited for a draft: {:?}",
        pushed.elapsed()
    );
    bot.stop().await.unwrap();
}

/// A streamed reply with more UTF-16 units than Telegram's limit but fewer characters.
fn emoji_reply() -> String {
    (1..=90)
        .map(|i| format!("{}{i}", "😀".repeat(40)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn an_emoji_heavy_long_reply_keeps_its_draft_growing_within_4096_utf16_units() {
    let reply = emoji_reply();
    assert!(reply.encode_utf16().count() > 7000 && reply.chars().count() < 4096);
    let world = FakeWorld::default();
    world
        .llm
        .push(LlmStep::streamed(&reply, Duration::from_millis(20)));
    let bot = BotHarness::start_with(world.deps(), config()).await;
    bot.telegram
        .push_text(ALICE, ALICE, "Смайлики, пожалуйста.");
    let sent = bot
        .telegram
        .wait_for_messages(ALICE, 2, WAIT)
        .await
        .unwrap();
    let arrived: String = sent.iter().map(|m| m.text.replace(' ', "")).collect();
    assert!(
        arrived == reply.replace(' ', ""),
        "the reply arrives whole (but for the space at the cut), in two messages"
    );

    let drafts = bot.telegram.drafts(ALICE);
    assert_eq!(
        drafts.len(),
        bot.telegram.calls_to("sendMessageDraft").len(),
        "Telegram accepted every draft (none over its limit)"
    );
    for draft in &drafts {
        assert!(draft.text.encode_utf16().count() <= 4096);
        let shown = draft.text.strip_prefix('…').unwrap_or(&draft.text);
        assert!(reply.contains(shown), "a draft shows a part of the reply");
    }
    let past_the_limit: Vec<_> = drafts.iter().filter(|d| d.text.starts_with('…')).collect();
    assert!(
        past_the_limit.len() >= 2,
        "the preview kept growing after the reply passed 4096 units: {} of {} drafts",
        past_the_limit.len(),
        drafts.len()
    );
    assert!(past_the_limit
        .windows(2)
        .all(|pair| pair[0].text != pair[1].text));
    bot.stop().await.unwrap();
}

/// A bot whose model streams [`LONG_REPLY`] `replies` times.
async fn bot_streaming(replies: usize) -> (FakeWorld, BotHarness) {
    let world = FakeWorld::default();
    for _ in 0..replies {
        world
            .llm
            .push(LlmStep::streamed(LONG_REPLY, Duration::from_millis(40)));
    }
    let bot = BotHarness::start_with(world.deps(), config()).await;
    (world, bot)
}

/// Sends a message in the private chat of `user` and waits for its `nth` reply.
async fn ask_privately(bot: &BotHarness, user: i64, nth: usize) {
    bot.telegram.push_text(user, user, "Что нового?");
    let sent = bot
        .telegram
        .wait_for_messages(user, nth, WAIT)
        .await
        .unwrap();
    assert_eq!(sent[nth - 1].text, LONG_REPLY);
}

fn draft_calls_to(bot: &BotHarness, chat: i64) -> usize {
    bot.telegram
        .calls_to("sendMessageDraft")
        .iter()
        .filter(|call| call.chat_id() == Some(chat))
        .count()
}

#[tokio::test]
async fn an_error_about_one_draft_that_mentions_the_method_leaves_drafts_on_for_every_chat() {
    let (_, bot) = bot_streaming(2).await;
    bot.telegram.fail_next(
        "sendMessageDraft",
        1,
        Failure::Api {
            status: 400,
            description: "Bad Request: text is not valid for method sendMessageDraft".to_owned(),
        },
    );
    ask_privately(&bot, ALICE, 1).await;
    assert!(
        draft_calls_to(&bot, ALICE) >= 2 && !bot.telegram.drafts(ALICE).is_empty(),
        "the chat's next drafts still went out"
    );
    ask_privately(&bot, BOB, 1).await;
    assert!(
        !bot.telegram.drafts(BOB).is_empty(),
        "another chat still gets drafts"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_chat_that_refuses_drafts_gets_none_after_while_other_chats_still_do() {
    let (_, bot) = bot_streaming(3).await;
    bot.telegram.fail_next(
        "sendMessageDraft",
        1,
        Failure::Api {
            status: 400,
            description: "Bad Request: TEXTDRAFT_PEER_INVALID".to_owned(),
        },
    );
    ask_privately(&bot, ALICE, 1).await;
    ask_privately(&bot, ALICE, 2).await;
    assert_eq!(
        draft_calls_to(&bot, ALICE),
        1,
        "the refusing chat was not asked again"
    );
    ask_privately(&bot, BOB, 1).await;
    assert!(
        !bot.telegram.drafts(BOB).is_empty(),
        "other chats still get drafts"
    );
    bot.stop().await.unwrap();
}
