//! Real `butler-bot` processes under load, killed, stopped and replicated: the durable inbox
//! (docs/operations/deploy.md) end to end. Each user sends their next message after the reply
//! to the previous one, as people do; the scripted LLM server echoes the message it answers,
//! so every reply names its message and order and duplicates can be checked exactly.
//!
//! - SIGKILL of the only process (SQLite, long polling) mid-load, then a restart: every
//!   message answered, in per-user order; duplicates counted (only the documented window);
//!   memory holds each turn once.
//! - SIGTERM mid-load: replies in flight finish within the grace period or are released; none
//!   lost after a restart.
//! - Webhook security against the real listener.
//! - Two replicas in webhook mode on the MongoDB-wire server, the fake Bot API delivering round
//!   robin like a load balancer, one replica killed mid-way: the survivor takes over.

mod bot_process;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use butler_domain::{Role, UserId};
use butler_factory::settings::Settings;
use butler_factory::wiring;
use butler_testkit::llm_server::ScriptedLlm;
use butler_testkit::storage::TestStorage;
use butler_testkit::telegram::FakeTelegram;

use bot_process::{
    bot_env, replica_unit_env, two_replica_ports, wait_for_polling, BotProcess, WAIT,
};

const REPLY_PREFIX: &str = "Ответ: ";

/// The text user `user` sends as their message number `i`.
fn message(user: i64, i: usize) -> String {
    format!("вопрос {i} от {user}")
}

/// The environment of a bot on `telegram`, `llm` and `store`, with room for many replies at
/// once, plus `extra`.
fn bot_env_on(
    telegram: &FakeTelegram,
    llm: &ScriptedLlm,
    store: &TestStorage,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let extra: Vec<(&str, &str)> = [("LLM_MAX_CONCURRENCY", "64")]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    bot_env(&telegram.api_url(), llm, store, &extra)
}

/// What each user was sent: the index of the message each reply answers, with the reply's
/// message id (assigned in the order the Bot API accepted the replies).
fn replies(telegram: &FakeTelegram, user: i64) -> Vec<(usize, i64)> {
    telegram
        .sent_messages(user)
        .iter()
        .filter_map(|m| {
            let rest = m.text.strip_prefix(REPLY_PREFIX)?;
            let rest = rest.strip_prefix("вопрос ")?;
            let (i, from) = rest.split_once(" от ")?;
            (from.parse::<i64>().ok()? == user)
                .then_some(())
                .and(i.parse().ok())
                .map(|i| (i, m.message_id))
        })
        .collect()
}

/// The indices of the messages `user`'s replies answer, in the order they were sent.
fn answered(telegram: &FakeTelegram, user: i64) -> Vec<usize> {
    replies(telegram, user)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

/// Users `users` each send `per_user` messages, each after the reply to the previous one;
/// `during` runs meanwhile (kills, restarts). Returns when every message was answered, or
/// panics with `logs()` after [`WAIT`] without progress.
async fn converse<F, Fut>(
    telegram: &Arc<FakeTelegram>,
    users: &[i64],
    per_user: usize,
    during: F,
    logs: impl Fn() -> String,
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let senders = users.iter().map(|&user| {
        let telegram = Arc::clone(telegram);
        async move {
            for i in 0..per_user {
                telegram.push_text(user, user, &message(user, i));
                let started = Instant::now();
                while !answered(&telegram, user).contains(&i) {
                    if started.elapsed() > WAIT {
                        return Err(format!("user {user}: message {i} not answered"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Ok(())
        }
    });
    let (results, ()) = tokio::join!(futures::future::join_all(senders), during());
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{failures:?}\nlogs:\n{}", logs());
}

/// Checks every user got every answer in order; returns the replies sent more than once, as
/// (user, message index, the ids of every copy).
fn duplicates_after_checking_order(
    telegram: &FakeTelegram,
    users: &[i64],
    per_user: usize,
) -> Vec<(i64, usize, Vec<i64>)> {
    let mut duplicates = Vec::new();
    for &user in users {
        let got = replies(telegram, user);
        let mut firsts: Vec<usize> = Vec::new();
        for &(i, _) in &got {
            if !firsts.contains(&i) {
                firsts.push(i);
            }
        }
        assert_eq!(
            firsts,
            (0..per_user).collect::<Vec<_>>(),
            "user {user}: every message answered, in order (replies: {got:?})"
        );
        for i in 0..per_user {
            let copies: Vec<i64> = got
                .iter()
                .filter(|(j, _)| *j == i)
                .map(|(_, id)| *id)
                .collect();
            if copies.len() > 1 {
                duplicates.push((user, i, copies));
            }
        }
    }
    duplicates
}

/// Every duplicate is the documented one: a process died after Telegram accepted a reply and
/// before the update was marked done, so the reply was sent again after the kill — one copy
/// among `before` (the replies sent before the kill), one after. Any other duplicate (two
/// copies from the same side of the kill) is a bug.
fn assert_only_the_crash_window(duplicates: &[(i64, usize, Vec<i64>)], before: &[i64]) {
    for (user, i, copies) in duplicates {
        let (old, new): (Vec<i64>, Vec<i64>) = copies.iter().partition(|id| before.contains(id));
        assert!(
            old.len() == 1 && new.len() == 1,
            "user {user}, message {i}: copies {copies:?} are not one sent before the kill and \
             one after it"
        );
    }
}

/// Each user's memory holds each turn exactly once.
async fn assert_each_turn_stored_once(store: &TestStorage, users: &[i64], per_user: usize) {
    let settings = Settings::from_sources(None, |name| store.var(name)).expect("settings");
    let storage = wiring::open_storage(&settings).await.expect("open storage");
    for &user in users {
        let events = storage
            .memory
            .recent(UserId::new(user), 10_000, None)
            .await
            .expect("read events");
        let mut turns: BTreeMap<String, usize> = BTreeMap::new();
        for event in events.iter().filter(|e| e.role == Role::User) {
            *turns.entry(event.content.clone()).or_default() += 1;
        }
        assert_eq!(turns.len(), per_user, "user {user}: every turn stored");
        assert!(
            turns.values().all(|&n| n == 1),
            "user {user}: no turn stored twice: {turns:?}"
        );
        assert_eq!(
            events.len(),
            2 * per_user,
            "user {user}: one reply stored per turn"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bot_killed_mid_load_answers_every_message_once_and_in_order_after_a_restart() {
    const USERS: i64 = 50;
    const PER_USER: usize = 10;
    let llm = ScriptedLlm::start().await;
    llm.echo(REPLY_PREFIX, Duration::from_millis(20));
    let telegram = Arc::new(FakeTelegram::start().await);
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    let env = bot_env_on(&telegram, &llm, &store, &[]);
    let users: Vec<i64> = (1..=USERS).map(|u| 5000 + u).collect();

    let first = BotProcess::spawn("killed", &env);
    wait_for_polling(&telegram, &first, 1).await;
    let bot = Arc::new(std::sync::Mutex::new(first));
    // A point between a tenth and nine tenths of the load, different on every run.
    let kill_after = 50 + (std::process::id() as usize * 7919 + 13) % 400;
    let restarted_env = env.clone();
    let sent_before_kill = Arc::new(std::sync::Mutex::new(Vec::new()));
    let during = {
        let telegram = Arc::clone(&telegram);
        let bot = Arc::clone(&bot);
        let sent_before_kill = Arc::clone(&sent_before_kill);
        move || async move {
            while telegram.all_sent_messages().len() < kill_after {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            bot.lock().unwrap().kill();
            // The dead process sends nothing more: these are exactly the replies before it.
            let sent: Vec<i64> = telegram
                .all_sent_messages()
                .iter()
                .map(|m| m.message_id)
                .collect();
            eprintln!("killed after {} replies; restarted", sent.len());
            *sent_before_kill.lock().unwrap() = sent;
            *bot.lock().unwrap() = BotProcess::spawn("restarted", &restarted_env);
        }
    };
    let logs = {
        let bot = Arc::clone(&bot);
        move || bot.lock().map(|b| b.log_text()).unwrap_or_default()
    };
    converse(&telegram, &users, PER_USER, during, logs).await;

    let duplicates = duplicates_after_checking_order(&telegram, &users, PER_USER);
    eprintln!(
        "{} messages, {} replies sent, {} duplicate(s), {} model calls",
        users.len() * PER_USER,
        telegram.all_sent_messages().len(),
        duplicates.len(),
        llm.served()
    );
    // The documented window: the process died after Telegram accepted a reply and before the
    // update was marked done, so the restarted process sent it again. Any other duplicate (two
    // copies from one process) is a bug.
    assert_only_the_crash_window(&duplicates, &sent_before_kill.lock().unwrap());
    assert_each_turn_stored_once(&store, &users, PER_USER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_load_finishes_or_releases_replies_in_flight_and_loses_none() {
    const USERS: i64 = 20;
    let llm = ScriptedLlm::start().await;
    // Slower than the grace period: replies in flight at SIGTERM cannot finish and must be
    // released, not lost.
    llm.echo(REPLY_PREFIX, Duration::from_millis(1500));
    let telegram = Arc::new(FakeTelegram::start().await);
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    let env = bot_env_on(
        &telegram,
        &llm,
        &store,
        &[("SHUTDOWN_GRACE_SECS", "0"), ("INBOX_LEASE_SECS", "60")],
    );
    let users: Vec<i64> = (1..=USERS).map(|u| 6000 + u).collect();
    let mut bot = BotProcess::spawn("terminated", &env);
    wait_for_polling(&telegram, &bot, 1).await;
    for &user in &users {
        telegram.push_text(user, user, &message(user, 0));
    }
    let started = Instant::now();
    while llm.in_flight() < users.len() / 2 {
        assert!(started.elapsed() < WAIT, "{}", bot.log_text());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = bot.terminate(Duration::from_secs(10)).await;
    let log = bot.log_text();
    assert!(
        status.success(),
        "clean exit after SIGTERM: {status}\n{log}"
    );
    assert!(
        log.contains("releasing their updates"),
        "replies in flight were released: {log}"
    );
    let answered_before: usize = users.iter().map(|&u| answered(&telegram, u).len()).sum();
    assert!(answered_before < users.len(), "the grace period was 0 s");

    // A fresh process answers everything released, at once: no lease to wait out even with
    // INBOX_LEASE_SECS=60.
    llm.echo(REPLY_PREFIX, Duration::from_millis(10));
    let restarted = Instant::now();
    let bot = BotProcess::spawn("after-sigterm", &env);
    for &user in &users {
        while !answered(&telegram, user).contains(&0) {
            assert!(
                restarted.elapsed() < Duration::from_secs(30),
                "user {user} not answered after the restart\n{}",
                bot.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(
        duplicates_after_checking_order(&telegram, &users, 1),
        Vec::new(),
        "nothing answered twice"
    );
    assert_each_turn_stored_once(&store, &users, 1).await;
}

/// A message update as Telegram would POST it.
fn update_json(update_id: i64, message_id: i64, user: i64, text: &str) -> serde_json::Value {
    serde_json::json!({
        "update_id": update_id,
        "message": FakeTelegram::message_object(
            message_id,
            user,
            user,
            serde_json::json!({ "text": text }),
        ),
    })
}

async fn post(url: &str, secret: Option<&str>, body: Vec<u8>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_strangers_and_bad_bodies_stays_up_and_answers_a_replay_once() {
    const SECRET: &str = "s3cret-Value_for-the-webhook";
    const ALICE: i64 = 7001;
    let llm = ScriptedLlm::start().await;
    llm.echo(REPLY_PREFIX, Duration::ZERO);
    let telegram = FakeTelegram::start().await;
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    let port = butler_testkit::services::free_port();
    let metrics = format!("127.0.0.1:{}", butler_testkit::services::free_port());
    let url = format!("http://127.0.0.1:{port}/telegram/hook");
    let listen = format!("127.0.0.1:{port}");
    let env = bot_env_on(
        &telegram,
        &llm,
        &store,
        &[
            ("TELEGRAM_WEBHOOK_URL", &url),
            ("TELEGRAM_WEBHOOK_LISTEN", &listen),
            ("TELEGRAM_WEBHOOK_SECRET", SECRET),
            ("METRICS_ADDR", &metrics),
        ],
    );
    let mut bot = BotProcess::spawn("webhook", &env);
    if let Err(error) = telegram.wait_for_calls("setWebhook", 1, WAIT).await {
        panic!("no setWebhook: {error}\n{}", bot.log_text());
    }
    let set = &telegram.calls_to("setWebhook")[0];
    assert_eq!(set.str_param("url"), Some(url.as_str()));
    assert_eq!(set.str_param("secret_token"), Some(SECRET));
    assert_eq!(
        set.params["allowed_updates"],
        serde_json::json!(["message", "stopped_message_generation", "callback_query"]),
        "messages, stop presses and the reminder list's cancel buttons are asked for, nothing else"
    );
    assert!(
        telegram.calls_to("getUpdates").is_empty(),
        "webhook mode does not poll"
    );

    let good = serde_json::to_vec(&update_json(900, 1, ALICE, "первый")).unwrap();
    // Strangers: no secret, a wrong one, one that is a prefix of the right one.
    assert_eq!(post(&url, None, good.clone()).await, 401);
    assert_eq!(post(&url, Some("wrong"), good.clone()).await, 401);
    assert_eq!(post(&url, Some(&SECRET[..10]), good.clone()).await, 401);
    // Bodies that are not updates, with the right secret.
    assert_eq!(
        post(&url, Some(SECRET), vec![b'x'; 2 * 1024 * 1024]).await,
        413
    );
    assert_eq!(
        post(&url, Some(SECRET), b"{\"update_id\": ".to_vec()).await,
        400
    );
    assert_eq!(post(&url, Some(SECRET), b"[1, 2, 3]".to_vec()).await, 400);
    // A kind the butler does not answer: acknowledged and dropped.
    let unknown = serde_json::json!({"update_id": 901, "brand_new_kind": {"x": 1}});
    assert_eq!(
        post(&url, Some(SECRET), serde_json::to_vec(&unknown).unwrap()).await,
        200
    );
    assert!(
        bot.child.try_wait().unwrap().is_none(),
        "the process is still up"
    );
    let readyz = reqwest::get(format!("http://{metrics}/readyz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let readyz: serde_json::Value = serde_json::from_str(&readyz).unwrap();
    assert_eq!(
        readyz["inbox"]["backlog"], 0,
        "nothing was stored: {readyz}"
    );
    assert_eq!(llm.served(), 0, "nothing reached the model");

    // The real update, then Telegram's redelivery of it, then a probe: answered in order, so a
    // second answer to the replay would come before the probe's.
    assert_eq!(post(&url, Some(SECRET), good.clone()).await, 200);
    assert_eq!(post(&url, Some(SECRET), good).await, 200);
    let probe = serde_json::to_vec(&update_json(902, 2, ALICE, "проба")).unwrap();
    assert_eq!(post(&url, Some(SECRET), probe).await, 200);
    let sent = match telegram.wait_for_messages(ALICE, 2, WAIT).await {
        Ok(sent) => sent,
        Err(error) => panic!("{error}\n{}", bot.log_text()),
    };
    let texts: Vec<String> = telegram
        .sent_messages(ALICE)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        vec![
            format!("{REPLY_PREFIX}первый"),
            format!("{REPLY_PREFIX}проба")
        ],
        "the replay was not answered again ({sent:?})"
    );
    assert_eq!(llm.served(), 2);
    let status = bot.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}\n{}", bot.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_mongodb_serve_one_webhook_and_the_survivor_takes_over_a_killed_one() {
    const USERS: i64 = 20;
    const PER_USER: usize = 8;
    let llm = ScriptedLlm::start().await;
    llm.echo(REPLY_PREFIX, Duration::from_millis(20));
    let telegram = Arc::new(FakeTelegram::start().await);
    let store = TestStorage::mongo("durability_replicas")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ports = two_replica_ports();
    let public_url = "https://bot.example.com/telegram/webhook";
    let mut replicas = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let mut env = bot_env_on(
            &telegram,
            &llm,
            &store,
            &[
                ("TELEGRAM_WEBHOOK_URL", public_url),
                ("INBOX_LEASE_SECS", "2"),
            ],
        );
        env.extend(replica_unit_env(*port));
        replicas.push(BotProcess::spawn(&format!("replica{index}"), &env));
    }
    if let Err(error) = telegram.wait_for_calls("setWebhook", 2, WAIT).await {
        panic!(
            "both replicas set the webhook: {error}\n{}\n{}",
            replicas[0].log_text(),
            replicas[1].log_text()
        );
    }
    // The load balancer: round robin over the replicas; a dead one is skipped by retrying.
    telegram.set_webhook_targets(
        ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/telegram/webhook"))
            .collect(),
    );
    let users: Vec<i64> = (1..=USERS).map(|u| 8000 + u).collect();
    let total = users.len() * PER_USER;
    let replicas = Arc::new(std::sync::Mutex::new(replicas));
    let recovery = Arc::new(std::sync::Mutex::new(None));
    let during = {
        let telegram = Arc::clone(&telegram);
        let replicas = Arc::clone(&replicas);
        let recovery = Arc::clone(&recovery);
        move || async move {
            while telegram.all_sent_messages().len() < total / 3 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            replicas.lock().unwrap()[0].kill();
            let killed = Instant::now();
            let sent_at_kill: Vec<i64> = telegram
                .all_sent_messages()
                .iter()
                .map(|m| m.message_id)
                .collect();
            // Recovery: every user answered again after the kill (those the dead replica held
            // wait for their leases to expire).
            let mut waiting: Vec<i64> = (8001..=8000 + USERS).collect();
            let counts: HashMap<i64, usize> = waiting
                .iter()
                .map(|&u| (u, telegram.sent_messages(u).len()))
                .collect();
            while !waiting.is_empty() && killed.elapsed() < WAIT {
                waiting.retain(|u| telegram.sent_messages(*u).len() <= counts[u]);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            *recovery.lock().unwrap() = Some((sent_at_kill, killed.elapsed()));
        }
    };
    let logs = {
        let replicas = Arc::clone(&replicas);
        move || {
            replicas
                .lock()
                .map(|r| {
                    r.iter()
                        .map(BotProcess::log_text)
                        .collect::<Vec<_>>()
                        .join("\n---\n")
                })
                .unwrap_or_default()
        }
    };
    converse(&telegram, &users, PER_USER, during, logs).await;

    let duplicates = duplicates_after_checking_order(&telegram, &users, PER_USER);
    let (sent_at_kill, recovered_in) = recovery.lock().unwrap().take().expect("the kill happened");
    eprintln!(
        "{total} messages over two replicas; replica 0 killed after {} replies; every user \
         answered again {recovered_in:?} after the kill; {} duplicate(s)",
        sent_at_kill.len(),
        duplicates.len()
    );
    assert_only_the_crash_window(&duplicates, &sent_at_kill);
    assert_each_turn_stored_once(&store, &users, PER_USER).await;
    let survivor_log = replicas.lock().unwrap()[1].log_text();
    eprintln!(
        "updates the survivor took over from the dead replica: {}",
        survivor_log
            .matches("answering an update an earlier claim did not finish")
            .count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_llm_servers_one_killed_mid_load_costs_no_reply_and_it_rejoins_when_back() {
    const USERS: i64 = 10;
    const PER_USER: usize = 12;
    let delay = Duration::from_millis(30);
    let first = ScriptedLlm::start().await;
    let second = ScriptedLlm::start().await;
    first.echo(REPLY_PREFIX, delay);
    second.echo(REPLY_PREFIX, delay);
    let first_port = first.addr().port();
    let urls = format!("{},{}", first.base_url(), second.base_url());
    let telegram = Arc::new(FakeTelegram::start().await);
    let store = TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"));
    let env = bot_env_on(&telegram, &second, &store, &[("LLM_BASE_URL", &urls)]);
    let bot = BotProcess::spawn("two-llms", &env);
    wait_for_polling(&telegram, &bot, 1).await;

    // Phase 1: the first server dies a quarter of the way through the load.
    let users: Vec<i64> = (1..=USERS).map(|u| 9000 + u).collect();
    let first = Arc::new(std::sync::Mutex::new(Some(first)));
    let during = {
        let telegram = Arc::clone(&telegram);
        let first = Arc::clone(&first);
        move || async move {
            let quarter = USERS as usize * PER_USER / 4;
            while telegram.all_sent_messages().len() < quarter {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // Dropping the server closes its listener and every open connection.
            drop(first.lock().unwrap().take());
        }
    };
    converse(&telegram, &users, PER_USER, during, || bot.log_text()).await;
    let fallbacks: Vec<String> = telegram
        .all_sent_messages()
        .into_iter()
        .map(|m| m.text)
        .filter(|t| !t.starts_with(REPLY_PREFIX))
        .collect();
    assert!(
        fallbacks.is_empty(),
        "no fallback reply while the other server was up: {fallbacks:?}"
    );
    assert!(
        duplicates_after_checking_order(&telegram, &users, PER_USER).is_empty(),
        "nothing answered twice"
    );

    // Phase 2: the first server comes back on its port; after its back-off and a probe it
    // gets requests again.
    let back = ScriptedLlm::start_on_port(first_port).await;
    back.echo(REPLY_PREFIX, delay);
    let started = Instant::now();
    let mut user = 9100;
    while back.served() == 0 {
        assert!(
            started.elapsed() < WAIT,
            "the server that came back got no request\n{}",
            bot.log_text()
        );
        user += 1;
        converse(&telegram, &[user], 2, || async {}, || bot.log_text()).await;
    }
    eprintln!(
        "the restarted server rejoined after {:?} and served {} request(s)",
        started.elapsed(),
        back.served()
    );
}
