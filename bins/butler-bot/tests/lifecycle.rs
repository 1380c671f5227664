//! Starting and stopping the real `butler-bot` process at the edges: a webhook replica that
//! starts while the Bot API is unreachable; a stop bounded by the grace period even with a
//! compression in flight; a second stop signal that exits at once; and systemd units that wait
//! long enough for all of it.

mod bot_process;

use std::process::Command;
use std::time::{Duration, Instant};

use butler_domain::UserId;
use butler_factory::settings::Settings;
use butler_factory::wiring;
use butler_testkit::llm_server::{ScriptedLlm, Step};
use butler_testkit::storage::TestStorage;
use butler_testkit::telegram::FakeTelegram;

use bot_process::{bot_env, BotProcess, WAIT};

const REPLY_PREFIX: &str = "Ответ: ";
const SECRET: &str = "lifecycle-webhook-secret";
const ALICE: i64 = 4101;

/// The environment of a bot on the Bot API at `api_url`, `llm` and `store`, without fact
/// extraction, plus `extra`.
fn bot_env_at(
    api_url: &str,
    llm: &ScriptedLlm,
    store: &TestStorage,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let extra: Vec<(&str, &str)> = [("MEMORY_FACTS_ENABLED", "false")]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    bot_env(api_url, llm, store, &extra)
}

/// A message update as Telegram would POST it.
fn update_json(update_id: i64, user: i64, text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "update_id": update_id,
        "message": FakeTelegram::message_object(
            update_id,
            user,
            user,
            serde_json::json!({ "text": text }),
        ),
    }))
    .expect("JSON")
}

/// POSTs `body` to the webhook at `url` with the secret, retrying while nothing listens yet
/// (the process is starting); the status, or a panic with the log after [`WAIT`].
async fn post_when_listening(url: &str, body: Vec<u8>, bot: &mut BotProcess) -> u16 {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let started = Instant::now();
    loop {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => return response.status().as_u16(),
            Err(error) => {
                if let Ok(Some(status)) = bot.child.try_wait() {
                    panic!(
                        "the bot exited ({status}) instead of serving the webhook\n{}",
                        bot.log_text()
                    );
                }
                assert!(
                    started.elapsed() < WAIT,
                    "the webhook never answered: {error}\n{}",
                    bot.log_text()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The inbox backlog `/readyz` reports.
async fn backlog(metrics: &str) -> serde_json::Value {
    let readyz = reqwest::get(format!("http://{metrics}/readyz"))
        .await
        .expect("GET /readyz")
        .text()
        .await
        .expect("the /readyz body");
    let readyz: serde_json::Value = serde_json::from_str(&readyz).expect("/readyz is JSON");
    readyz["inbox"]["backlog"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_replica_starts_and_stores_updates_while_the_bot_api_is_unreachable() {
    let llm = ScriptedLlm::start().await;
    llm.echo(REPLY_PREFIX, Duration::ZERO);
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    // The Bot API's address, with nothing listening on it yet.
    let api_port = butler_testkit::services::free_port();
    let port = butler_testkit::services::free_port();
    let metrics = format!("127.0.0.1:{}", butler_testkit::services::free_port());
    let url = format!("http://127.0.0.1:{port}/telegram/hook");
    let listen = format!("127.0.0.1:{port}");
    let env = bot_env_at(
        &format!("http://127.0.0.1:{api_port}/"),
        &llm,
        &store,
        &[
            ("TELEGRAM_WEBHOOK_URL", &url),
            ("TELEGRAM_WEBHOOK_LISTEN", &listen),
            ("TELEGRAM_WEBHOOK_SECRET", SECRET),
            ("METRICS_ADDR", &metrics),
            ("TELEGRAM_WEBHOOK_MAX_CONNECTIONS", "7"),
        ],
    );
    let mut bot = BotProcess::spawn("webhook-without-api", &env);

    let status = post_when_listening(&url, update_json(500, ALICE, "Вы здесь?"), &mut bot).await;
    assert_eq!(status, 200, "{}", bot.log_text());
    assert_eq!(
        backlog(&metrics).await,
        1,
        "stored and waiting: {}",
        bot.log_text()
    );
    assert_eq!(
        llm.served(),
        0,
        "nothing is answered while Telegram is away"
    );

    // The Bot API comes back: the webhook is set and the stored update answered.
    let telegram = FakeTelegram::start_on_port(api_port).await;
    if let Err(error) = telegram.wait_for_messages(ALICE, 1, WAIT).await {
        panic!("{error}\n{}", bot.log_text());
    }
    assert_eq!(
        telegram.sent_messages(ALICE)[0].text,
        format!("{REPLY_PREFIX}Вы здесь?")
    );
    if let Err(error) = telegram.wait_for_calls("setWebhook", 1, WAIT).await {
        panic!("{error}\n{}", bot.log_text());
    }
    let set = &telegram.calls_to("setWebhook")[0];
    assert_eq!(set.str_param("url"), Some(url.as_str()));
    assert_eq!(
        set.params["max_connections"],
        serde_json::json!(7),
        "TELEGRAM_WEBHOOK_MAX_CONNECTIONS reaches Telegram"
    );
    let scrape = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the scrape");
    assert!(
        scrape.lines().any(
            |l| l.starts_with("telegram_setup_failures_total{method=\"getMe\"}")
                && !l.ends_with(" 0")
        ),
        "the failed getMe calls were counted:\n{scrape}"
    );
    let status = bot.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", bot.log_text());
}

/// Sends `signal` (`TERM`, `INT`) to the process.
fn send_signal(bot: &BotProcess, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &bot.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "SIG{signal} delivered");
}

/// Waits until the bot's log contains `needle`; panics with the log after [`WAIT`].
async fn wait_for_log(bot: &BotProcess, needle: &str) {
    let started = Instant::now();
    while !bot.log_text().contains(needle) {
        assert!(
            started.elapsed() < WAIT,
            "the log never said {needle:?}:\n{}",
            bot.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the process has exited, at most `within`; its status, or a panic with the log.
async fn exited_within(bot: &mut BotProcess, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = bot.child.try_wait().expect("poll the bot process") {
            return status;
        }
        assert!(
            started.elapsed() < within,
            "the bot was still running {within:?} later\n{}",
            bot.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_signal_during_the_grace_period_exits_at_once_and_the_update_is_kept() {
    let llm = ScriptedLlm::start().await;
    // A reply that would take far longer than the test waits.
    llm.echo(REPLY_PREFIX, Duration::from_secs(120));
    let telegram = FakeTelegram::start().await;
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    let env = bot_env_at(
        &telegram.api_url(),
        &llm,
        &store,
        &[("SHUTDOWN_GRACE_SECS", "300"), ("INBOX_LEASE_SECS", "2")],
    );
    let mut bot = BotProcess::spawn("second-signal", &env);
    telegram.push_text(ALICE, ALICE, "Долгий вопрос");
    let started = Instant::now();
    while llm.in_flight() == 0 {
        assert!(started.elapsed() < WAIT, "{}", bot.log_text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    send_signal(&bot, "TERM");
    wait_for_log(&bot, "shutdown requested").await;
    assert!(
        bot.child.try_wait().expect("poll").is_none(),
        "the first signal waits for the reply in flight (grace 300 s)"
    );
    // Ctrl-C on top of the SIGTERM: the operator does not want to wait.
    send_signal(&bot, "INT");
    let status = exited_within(&mut bot, Duration::from_secs(10)).await;
    assert_eq!(
        status.code(),
        Some(130),
        "128 + SIGINT, as the docs say\n{}",
        bot.log_text()
    );
    assert!(telegram.sent_messages(ALICE).is_empty(), "never answered");

    // The update was kept: the next process answers it.
    llm.echo(REPLY_PREFIX, Duration::ZERO);
    let bot = BotProcess::spawn("after-second-signal", &env);
    if let Err(error) = telegram.wait_for_messages(ALICE, 1, WAIT).await {
        panic!("{error}\n{}", bot.log_text());
    }
    assert_eq!(
        telegram.sent_messages(ALICE)[0].text,
        format!("{REPLY_PREFIX}Долгий вопрос")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_sigterm_a_compression_in_flight_gets_the_grace_period_and_no_more() {
    const GRACE_SECS: u64 = 2;
    let llm = ScriptedLlm::start().await;
    llm.echo(REPLY_PREFIX, Duration::ZERO);
    // The summariser hangs for far longer than any stop may take.
    llm.route(
        "Сожми разговор в сводку",
        Step::reply("сводка").delayed(Duration::from_secs(300)),
    );
    let telegram = FakeTelegram::start().await;
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    let grace = GRACE_SECS.to_string();
    let env = bot_env_at(
        &telegram.api_url(),
        &llm,
        &store,
        &[
            ("SHUTDOWN_GRACE_SECS", &grace),
            ("MEMORY_COMPRESS_THRESHOLD", "2"),
            ("MEMORY_KEEP_LAST", "1"),
        ],
    );
    let mut bot = BotProcess::spawn("compression-at-stop", &env);
    for (i, text) in ["Первый", "Второй"].into_iter().enumerate() {
        telegram.push_text(ALICE, ALICE, text);
        if let Err(error) = telegram.wait_for_messages(ALICE, i + 1, WAIT).await {
            panic!("{error}\n{}", bot.log_text());
        }
    }
    // Four events, over the threshold of two: the compression is now with the summariser.
    let started = Instant::now();
    while llm.in_flight() == 0 {
        assert!(
            started.elapsed() < WAIT,
            "no compression started\n{}",
            bot.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    send_signal(&bot, "TERM");
    let signalled = Instant::now();
    // The grace period, plus room for a slow machine; the summariser would take 300 s.
    let status = exited_within(&mut bot, Duration::from_secs(GRACE_SECS + 10)).await;
    eprintln!("stopped {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "{status}\n{}", bot.log_text());
    assert!(
        bot.log_text()
            .contains("compressions still running are cut"),
        "{}",
        bot.log_text()
    );

    // What is kept: the memory as it was before the compression — every event, no summary.
    let settings =
        Settings::from_sources(None, |name| store.var(name)).expect("the bot's settings");
    let storage = wiring::open_storage(&settings)
        .await
        .expect("open the bot's storage");
    let events = storage
        .memory
        .recent(UserId::new(ALICE), 100, None)
        .await
        .expect("read the events");
    assert_eq!(events.len(), 4, "nothing deleted: {events:?}");
    let profile = storage
        .profiles
        .get(UserId::new(ALICE))
        .await
        .expect("read the profile");
    assert!(
        profile.and_then(|p| p.memory_summary).is_none(),
        "no summary saved"
    );
}

#[test]
fn the_systemd_units_give_the_bot_longer_to_stop_than_its_stop_deadline() {
    let grace: u64 = butler_factory::settings::VARIABLES
        .iter()
        .find(|v| v.name == "SHUTDOWN_GRACE_SECS")
        .expect("SHUTDOWN_GRACE_SECS is in the table")
        .default
        .parse()
        .expect("a number of seconds");
    // After the grace period: the last getUpdates confirmation (5 s at most, from the signal)
    // and closing the listeners. A unit that waits less kills the bot mid-stop.
    const SLACK_SECS: u64 = 5;
    for unit in ["butler-bot.service", "butler-bot@.service"] {
        let text = std::fs::read_to_string(format!(
            "{}/../../config/systemd/{unit}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("read the unit");
        let stop: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .unwrap_or_else(|| panic!("{unit} sets TimeoutStopSec"))
            .trim()
            .parse()
            .expect("TimeoutStopSec in seconds");
        assert!(
            stop > grace + SLACK_SECS,
            "{unit}: TimeoutStopSec={stop} must exceed SHUTDOWN_GRACE_SECS ({grace}) + {SLACK_SECS}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("Environment=SHUTDOWN_GRACE_SECS")),
            "{unit} overrides the grace period: compare against that instead"
        );
    }
}
