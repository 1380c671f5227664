//! Reminders through real `butler-bot` processes, the fake Bot API and the real teloxide
//! client: a user asks for a reminder in chat (the scripted model answers the extraction as a
//! perfect model would), and it is delivered exactly once, on time, when
//!
//! - the only process (SQLite, long polling) is SIGKILLed and restarted before it is due;
//! - two replicas (webhook mode, the MongoDB-wire server) run and one is SIGKILLed at the due
//!   moment;
//! - the bot runs in webhook mode.
//!
//! Each reminder is due at the first whole minute at least [`MARGIN`] ahead (the request says
//! a clock time, as users do), so a test waits between `MARGIN` and a minute for it.

mod bot_process;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use butler_application::reminders::delivery_text;
use butler_application::reminders::request::EXTRACTION_INSTRUCTIONS;
use butler_domain::{Language, UserId};
use butler_factory::settings::Settings;
use butler_factory::wiring;
use butler_testkit::llm_server::{ScriptedLlm, Step};
use butler_testkit::storage::TestStorage;
use butler_testkit::telegram::{Delivered, FakeTelegram};
use time::OffsetDateTime;

use bot_process::{
    bot_env, replica_unit_env, two_replica_ports, wait_for_polling, BotProcess, WAIT,
};

const TASK: &str = "проверить духовку";
/// The least time between asking and the reminder being due: room for the request, a kill and
/// a restart on a loaded machine.
const MARGIN: time::Duration = time::Duration::seconds(12);
/// How late a delivery may come and still be on time. The scheduler wakes at the due time (it
/// sleeps until the earliest due reminder, at most 0.5 s between looks); the rest is a
/// database round trip and one `sendMessage` on a machine shared with builds.
const ON_TIME: Duration = Duration::from_secs(3);
/// `REMINDERS_LEASE_SECS` in the replica test: how long a claim of a killed replica holds.
const LEASE_SECS: u64 = 3;

/// A reminder the user will ask for: when it is due, and the extraction a perfect model
/// gives for the request.
struct Asked {
    due: OffsetDateTime,
    request: String,
}

impl Asked {
    /// Due at the first whole minute (UTC, the bot's `DEFAULT_TIME_ZONE` here) at least
    /// [`MARGIN`] from now; the scripted model answers the extraction for it on `llm`.
    fn next_minute(llm: &ScriptedLlm) -> Self {
        let earliest = OffsetDateTime::now_utc() + MARGIN;
        let mut due = earliest
            .replace_nanosecond(0)
            .and_then(|t| t.replace_second(0))
            .expect("a whole minute");
        if due < earliest {
            due += time::Duration::minutes(1);
        }
        let (hour, minute) = (due.hour(), due.minute());
        // «в 3 утра»: an hour before 7 without a part of the day is asked back.
        let part = if hour <= 6 { r#""morning""# } else { "null" };
        let extraction = format!(
            r#"{{"task":"{TASK}","in_minutes":null,"date":"{:04}-{:02}-{:02}","in_days":null,"weekday":null,"hour":{hour},"minute":{minute},"part_of_day":{part}}}"#,
            due.year(),
            u8::from(due.month()),
            due.day()
        );
        llm.route(EXTRACTION_INSTRUCTIONS, Step::reply(extraction));
        Self {
            due,
            request: format!("Напомни в {hour}:{minute:02} {TASK}"),
        }
    }

    /// The due time as an [`Instant`] of this process's clock.
    fn due_instant(&self) -> Instant {
        let ahead = self.due - OffsetDateTime::now_utc();
        let now = Instant::now();
        match Duration::try_from(ahead) {
            Ok(ahead) => now + ahead,
            Err(_) => now - Duration::try_from(-ahead).unwrap_or_default(),
        }
    }
}

/// The environment every bot here runs with: reminders in UTC, no fact extraction (the
/// scripted model answers only the reminder's extraction).
fn reminder_env(
    telegram: &FakeTelegram,
    llm: &ScriptedLlm,
    store: &TestStorage,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let extra: Vec<(&str, &str)> = [
        ("DEFAULT_TIME_ZONE", "UTC"),
        ("MEMORY_FACTS_ENABLED", "false"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .collect();
    bot_env(&telegram.api_url(), llm, store, &extra)
}

/// Every message the fake Bot API accepts, with the moment it did, collected in the
/// background.
fn record_deliveries(telegram: &FakeTelegram) -> Arc<Mutex<Vec<Delivered>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut receiver = telegram.subscribe_delivered();
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some(delivered) = receiver.recv().await {
            sink.lock().expect("deliveries lock").push(delivered);
        }
    });
    seen
}

/// The copies of the reminder delivered to `user` so far.
fn reminder_copies(deliveries: &Mutex<Vec<Delivered>>, user: i64) -> Vec<Delivered> {
    let expected = delivery_text(Language::Ru, TASK, None);
    deliveries
        .lock()
        .expect("deliveries lock")
        .iter()
        .filter(|d| d.chat_id == user && d.text == expected)
        .cloned()
        .collect()
}

/// Asks for the reminder as `user` and waits for the butler's confirmation.
async fn ask(telegram: &FakeTelegram, user: i64, asked: &Asked, logs: impl Fn() -> String) {
    telegram.push_text(user, user, &asked.request);
    if let Err(error) = telegram.wait_for_messages(user, 1, WAIT).await {
        panic!("no confirmation: {error}\n{}", logs());
    }
    let confirmation = &telegram.sent_messages(user)[0].text;
    assert!(
        confirmation.starts_with("Напомню") && confirmation.contains(TASK),
        "the butler confirms the reminder: {confirmation:?}\n{}",
        logs()
    );
}

/// Waits until the inbox at `metrics` holds no update left to answer (the request was marked
/// done), so a kill now cannot make a restarted process answer it again.
async fn wait_until_inbox_done(metrics: &str, logs: impl Fn() -> String) {
    let started = Instant::now();
    loop {
        let backlog = match reqwest::get(format!("http://{metrics}/readyz")).await {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .ok()
                .map(|r| r["inbox"]["backlog"].clone()),
            Err(_) => None,
        };
        if backlog == Some(serde_json::json!(0)) {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "the request stayed in the inbox ({backlog:?})\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the first copy of the reminder for `user`, at most until `deadline`.
async fn wait_for_reminder(
    deliveries: &Mutex<Vec<Delivered>>,
    user: i64,
    deadline: Instant,
    logs: impl Fn() -> String,
) -> Delivered {
    loop {
        if let Some(first) = reminder_copies(deliveries, user).into_iter().next() {
            return first;
        }
        assert!(
            Instant::now() < deadline,
            "the reminder was not delivered in time\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts the delivery came at the due time or within [`ON_TIME`] after it, and says when.
fn assert_on_time(delivered: &Delivered, due: Instant, what: &str) {
    let early = due.saturating_duration_since(delivered.at);
    let late = delivered.at.saturating_duration_since(due);
    eprintln!("{what}: delivered {late:?} after it was due");
    assert!(
        early <= Duration::from_millis(20),
        "{what}: delivered {early:?} before it was due"
    );
    assert!(
        late <= ON_TIME,
        "{what}: delivered {late:?} after it was due"
    );
}

/// The store has no pending reminder of `user` left: it is marked delivered, so no process
/// will send it again. The mark follows Telegram's answer to the send, which the fake records
/// when the request arrives, so it is waited for (at most [`WAIT`]).
async fn assert_marked_delivered(store: &TestStorage, user: i64) {
    let settings = Settings::from_sources(None, |name| store.var(name)).expect("settings");
    let storage = wiring::open_storage(&settings).await.expect("open storage");
    let started = Instant::now();
    loop {
        let pending = storage
            .reminders
            .list_pending(UserId::new(user))
            .await
            .expect("list pending reminders");
        if pending.is_empty() {
            return;
        }
        assert!(started.elapsed() < WAIT, "still pending: {pending:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_set_before_a_sigkill_is_delivered_once_and_on_time_by_the_restarted_bot() {
    const USER: i64 = 27_001;
    let llm = ScriptedLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let deliveries = record_deliveries(&telegram);
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    let metrics = format!("127.0.0.1:{}", butler_testkit::services::free_port());
    let env = reminder_env(&telegram, &llm, &store, &[("METRICS_ADDR", &metrics)]);

    let mut first = BotProcess::spawn("reminder-killed", &env);
    wait_for_polling(&telegram, &first, 1).await;
    let asked = Asked::next_minute(&llm);
    ask(&telegram, USER, &asked, || first.log_text()).await;
    wait_until_inbox_done(&metrics, || first.log_text()).await;
    let due = asked.due_instant();
    assert!(
        Instant::now() + Duration::from_secs(2) < due,
        "the test had no time left to kill and restart before the reminder was due"
    );
    first.kill();
    assert!(
        reminder_copies(&deliveries, USER).is_empty(),
        "nothing delivered before it was due"
    );

    let restarted = BotProcess::spawn("reminder-restarted", &env);
    let delivered = wait_for_reminder(&deliveries, USER, due + ON_TIME + WAIT, || {
        restarted.log_text()
    })
    .await;
    assert_on_time(&delivered, due, "after a SIGKILL and a restart");
    assert_marked_delivered(&store, USER).await;
    // A second copy would come at once (the same round) or after the lease (60 s): the store
    // says none will, and none came meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        reminder_copies(&deliveries, USER).len(),
        1,
        "delivered once"
    );
    assert_eq!(
        telegram.sent_messages(USER).len(),
        2,
        "the confirmation and the reminder, nothing answered twice: {:?}",
        telegram.sent_messages(USER)
    );
}

/// The logs of `replicas`, one after the other.
fn all_logs(replicas: &[BotProcess]) -> String {
    replicas
        .iter()
        .map(BotProcess::log_text)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_on_mongodb_one_killed_at_the_due_moment_the_reminder_comes_once() {
    const USER: i64 = 27_002;
    let llm = ScriptedLlm::start().await;
    let telegram = Arc::new(FakeTelegram::start().await);
    let deliveries = record_deliveries(&telegram);
    let store = TestStorage::mongo("reminder_replicas")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ports = two_replica_ports();
    let lease = LEASE_SECS.to_string();
    let mut replicas = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let mut env = reminder_env(
            &telegram,
            &llm,
            &store,
            &[
                (
                    "TELEGRAM_WEBHOOK_URL",
                    "https://bot.example.com/telegram/webhook",
                ),
                ("INBOX_LEASE_SECS", "2"),
                ("REMINDERS_LEASE_SECS", &lease),
            ],
        );
        env.extend(replica_unit_env(*port));
        replicas.push(BotProcess::spawn(&format!("reminder-replica{index}"), &env));
    }
    if let Err(error) = telegram.wait_for_calls("setWebhook", 2, WAIT).await {
        panic!(
            "both replicas set the webhook: {error}\n{}",
            all_logs(&replicas)
        );
    }
    telegram.set_webhook_targets(
        ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/telegram/webhook"))
            .collect(),
    );
    let asked = Asked::next_minute(&llm);
    ask(&telegram, USER, &asked, || all_logs(&replicas)).await;
    let due = asked.due_instant();
    assert!(Instant::now() < due, "asked after it was due");

    // Both replicas wake for it at the due moment; one of them dies right then — with the
    // claim, after it, or before claiming.
    tokio::time::sleep_until(due.into()).await;
    replicas[0].kill();
    let killed = Instant::now();
    let delivered = wait_for_reminder(
        &deliveries,
        USER,
        due + Duration::from_secs(LEASE_SECS) + ON_TIME + WAIT,
        || all_logs(&replicas),
    )
    .await;
    let late = delivered.at.saturating_duration_since(due);
    let path = if delivered.at < killed {
        "delivered before the kill took effect"
    } else if late > Duration::from_secs(LEASE_SECS) {
        "the killed replica held the claim; the survivor took it over after the lease"
    } else {
        "the survivor delivered it"
    };
    eprintln!("{path}, {late:?} after it was due");
    assert!(
        late <= Duration::from_secs(LEASE_SECS) + ON_TIME,
        "delivered {late:?} after it was due, more than the lease ({LEASE_SECS} s) and {ON_TIME:?}"
    );
    assert_marked_delivered(&store, USER).await;
    // A killed claimer's copy can only come after its lease: wait that out.
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    let copies = reminder_copies(&deliveries, USER);
    match copies.as_slice() {
        [_] => {}
        // The documented window: the killed replica's send was accepted and it died before
        // marking the reminder delivered, so the survivor sent it again after the lease.
        [first, second] if first.at < killed && second.at > killed => {
            eprintln!("the one documented duplicate: sent, then killed before it was marked");
        }
        _ => panic!(
            "delivered {} times: {:?}\n{}",
            copies.len(),
            copies.iter().map(|c| c.at).collect::<Vec<_>>(),
            all_logs(&replicas)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_webhook_mode_a_reminder_is_delivered_once_and_on_time() {
    const USER: i64 = 27_003;
    let llm = ScriptedLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let deliveries = record_deliveries(&telegram);
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    let port = butler_testkit::services::free_port();
    let url = format!("http://127.0.0.1:{port}/telegram/hook");
    let listen = format!("127.0.0.1:{port}");
    let env = reminder_env(
        &telegram,
        &llm,
        &store,
        &[
            ("TELEGRAM_WEBHOOK_URL", &url),
            ("TELEGRAM_WEBHOOK_LISTEN", &listen),
        ],
    );
    let bot = BotProcess::spawn("reminder-webhook", &env);
    if let Err(error) = telegram.wait_for_calls("setWebhook", 1, WAIT).await {
        panic!("no setWebhook: {error}\n{}", bot.log_text());
    }
    let asked = Asked::next_minute(&llm);
    ask(&telegram, USER, &asked, || bot.log_text()).await;
    assert!(
        telegram.calls_to("getUpdates").is_empty(),
        "webhook mode does not poll"
    );
    let due = asked.due_instant();
    let delivered =
        wait_for_reminder(&deliveries, USER, due + ON_TIME + WAIT, || bot.log_text()).await;
    assert_on_time(&delivered, due, "in webhook mode");
    assert_marked_delivered(&store, USER).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        reminder_copies(&deliveries, USER).len(),
        1,
        "delivered once"
    );
}
