//! The bot token never shows up in errors or logs, at any level, even when Telegram calls fail.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use butler_presentation::telegram::{run_bot, BotError, BotSettings, Delivery};
use butler_testkit::telegram::{Failure, FakeTelegram};
use support::{test_config, FakeWorld, WAIT};
use tokio_util::sync::CancellationToken;

/// A token shaped like a real one, and a secret half to search for.
const TOKEN: &str = "7000000001:AAFakeTokenForTests_abcdefghijklmnop";
const SECRET: &str = "AAFakeTokenForTests";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures every log line (teloxide's `log` records included) at trace level on this thread.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let captured = Captured::default();
    let writer = captured.clone();
    let guard = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
        .set_default();
    (captured, guard)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "current_thread")]
async fn an_unreachable_telegram_fails_start_up_without_the_token_in_the_error_or_logs() {
    let (logs, _guard) = capture_logs();
    let settings = BotSettings {
        token: TOKEN.to_owned().into(),
        api_url: Some(format!("http://127.0.0.1:{}/", free_port())),
        delivery: Delivery::Polling,
        config: test_config(),
    };
    let result = run_bot(
        settings,
        FakeWorld::default().deps(),
        CancellationToken::new(),
    )
    .await;

    let error = result.expect_err("nothing listens on that port");
    assert!(matches!(error, BotError::Startup { .. }), "{error:?}");
    for text in [error.to_string(), format!("{error:?}"), logs.text()] {
        assert!(!text.contains(SECRET), "token leaked: {text}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_token_telegram_rejects_fails_start_up_without_the_token_in_the_error() {
    let telegram = FakeTelegram::start().await;
    let settings = BotSettings {
        token: "7000000001:AAWrongTokenWrongTokenWrongTokenWrong"
            .to_owned()
            .into(),
        api_url: Some(telegram.api_url()),
        delivery: Delivery::Polling,
        config: test_config(),
    };
    let error = run_bot(
        settings,
        FakeWorld::default().deps(),
        CancellationToken::new(),
    )
    .await
    .expect_err("the fake refuses other tokens");
    let text = error.to_string();
    assert!(text.contains("getMe"), "{text}");
    assert!(!text.contains("AAWrongToken"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn failing_telegram_calls_are_logged_without_the_token_even_at_trace_level() {
    let (logs, _guard) = capture_logs();
    let telegram = Arc::new(FakeTelegram::start_with_token(TOKEN).await);
    let world = FakeWorld::default();
    let settings = BotSettings {
        token: TOKEN.to_owned().into(),
        api_url: Some(telegram.api_url()),
        delivery: Delivery::Polling,
        config: test_config(),
    };
    let shutdown = CancellationToken::new();
    let bot = tokio::spawn(run_bot(settings, world.deps(), shutdown.clone()));

    telegram.fail_next("sendMessage", 1, Failure::BrokenResponse);
    telegram.fail_next("sendChatAction", 1, Failure::Status(400));
    telegram.push_text(1, 1, "первое");
    telegram.wait_for_messages(1, 1, WAIT).await.unwrap();
    telegram.fail_next("sendMessage", 1, Failure::RetryAfter(1));
    telegram.push_text(1, 1, "второе");
    telegram.wait_for_messages(1, 2, WAIT).await.unwrap();
    // Shutdown lets the handler finish (and log) before the bot returns.
    shutdown.cancel();
    bot.await.unwrap().unwrap();

    let text = logs.text();
    assert!(
        text.contains("reply not delivered"),
        "the broken send was logged:\n{text}"
    );
    assert!(
        text.contains("flood control"),
        "the 429 was logged:\n{text}"
    );
    assert!(!text.contains(SECRET), "token leaked:\n{text}");
    for line in text
        .lines()
        .filter(|l| l.contains(" INFO ") || l.contains(" WARN "))
    {
        assert!(!line.contains("первое"), "message text at info: {line}");
    }
}
