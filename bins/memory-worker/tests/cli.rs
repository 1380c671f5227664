//! The `memory-worker` binary against real storage (a SQLite file, the MongoDB-wire test
//! server) and a scripted OpenAI-compatible server: `--dry-run`, `--once`, `--max-users`, the
//! LLM concurrency limit, a failing user, SIGTERM during `--interval`, two workers at once over
//! the same users, and a timed run over 1,000 users.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::{Duration, Instant};

use butler_domain::{Source, UserId, UserMemoryEvent};
use butler_factory::settings::Settings;
use butler_factory::wiring::{self, Storage};
use butler_testkit::llm_server::{ScriptedLlm, Step};
use butler_testkit::storage::TestStorage;
use time::OffsetDateTime;

/// A fresh SQLite store.
fn sqlite() -> TestStorage {
    TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh database on the MongoDB-wire test server.
async fn mongo() -> TestStorage {
    TestStorage::mongo("worker_cli")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The store's repositories, opened as the binaries open them.
async fn open(backend: &TestStorage) -> Storage {
    let settings = Settings::from_sources(None, |name| backend.var(name))
        .unwrap_or_else(|e| panic!("storage settings: {e}"));
    wiring::open_storage(&settings)
        .await
        .unwrap_or_else(|e| panic!("open the store: {e}"))
}

/// `turns` question/answer pairs for `user`, oldest first, one second apart.
async fn seed_user(s: &Storage, user: i64, turns: usize) {
    let id = UserId::new(user);
    s.profiles.get_or_create(id).await.unwrap();
    let start = OffsetDateTime::now_utc() - time::Duration::days(1);
    let events: Vec<UserMemoryEvent> = (0..turns)
        .flat_map(|i| {
            let at = start + time::Duration::seconds(2 * i as i64);
            [
                UserMemoryEvent::user(id, format!("u{user} q{i}"), Source::Text, at),
                UserMemoryEvent::assistant(
                    id,
                    format!("u{user} a{i}"),
                    Source::Text,
                    at + time::Duration::seconds(1),
                ),
            ]
        })
        .collect();
    s.memory.append(&events).await.unwrap();
}

/// The worker command with a clean environment: storage, the scripted LLM, JSON logs. Fact
/// extraction is off (these tests count and script summariser calls; one more call per batch
/// would take every other scripted reply): `once_also_extracts_facts` turns it on.
fn worker(
    backend: &TestStorage,
    llm: &ScriptedLlm,
    extra: &[(&str, &str)],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_memory-worker"));
    cmd.env_clear()
        .envs(backend.env())
        .env("LLM_BASE_URL", llm.base_url())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("MEMORY_FACTS_ENABLED", "false")
        .envs(extra.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(backend: &TestStorage, llm: &ScriptedLlm, args: &[&str]) -> Output {
    worker(backend, llm, &[])
        .args(args)
        .output()
        .await
        .expect("run memory-worker")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `(user_id, status)` of every "worker user done" log line.
fn user_statuses(out: &Output) -> Vec<(i64, String)> {
    text(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "worker user done")
        .map(|v| {
            let f = &v["fields"];
            let user = f["user_id"]
                .as_str()
                .and_then(|u| u.parse().ok())
                .or_else(|| f["user_id"].as_i64())
                .expect("user_id in the log line");
            (user, f["status"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

async fn count(s: &Storage, user: i64) -> u64 {
    s.memory.count(UserId::new(user)).await.unwrap()
}

async fn summary(s: &Storage, user: i64) -> Option<String> {
    s.profiles
        .get(UserId::new(user))
        .await
        .unwrap()
        .and_then(|p| p.memory_summary)
}

/// The newest 20 events are the last ten turns, in order.
async fn assert_kept_the_newest_turns(s: &Storage, user: i64, turns: usize) {
    let events = s.memory.recent(UserId::new(user), 100, None).await.unwrap();
    let contents: Vec<String> = events.into_iter().map(|e| e.content).collect();
    let expected: Vec<String> = (turns - 10..turns)
        .flat_map(|i| [format!("u{user} q{i}"), format!("u{user} a{i}")])
        .collect();
    assert_eq!(contents, expected, "user {user}");
}

async fn dry_run_lists_and_changes_nothing(backend: TestStorage) {
    let stores = open(&backend).await;
    for (user, turns) in [(1, 5), (2, 30), (3, 25), (4, 28)] {
        seed_user(&stores, user, turns).await;
    }
    let llm = ScriptedLlm::start().await;
    let out = run(&backend, &llm, &["--once", "--dry-run"]).await;
    assert_exit(&out, 0);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "would compress user 2 (60 events)",
            "would compress user 4 (56 events)"
        ],
        "over the threshold of 50, busiest first"
    );
    assert_eq!(llm.request_count(), 0);
    for (user, events) in [(1, 10), (2, 60), (3, 50), (4, 56)] {
        assert_eq!(count(&stores, user).await, events);
        assert_eq!(summary(&stores, user).await, None);
    }
}

/// With the embedded default (no LLM server), a dry run must not load, let alone download,
/// the model: it only lists candidates.
#[tokio::test]
async fn a_dry_run_on_the_embedded_default_loads_and_downloads_no_model() {
    let backend = sqlite();
    let stores = open(&backend).await;
    seed_user(&stores, 9, 30).await;
    let models = std::env::temp_dir().join(format!("worker-dry-run-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_memory-worker"))
        .env_clear()
        .envs(backend.env())
        .env("LLM_MODELS_DIR", &models)
        .env("RUST_LOG", "info")
        .args(["--once", "--dry-run"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run memory-worker");
    assert_exit(&out, 0);
    assert_eq!(
        text(&out.stdout).trim(),
        "would compress user 9 (60 events)"
    );
    assert!(
        !models.exists() || std::fs::read_dir(&models).map_or(0, Iterator::count) == 0,
        "the dry run fetched a model into {}",
        models.display()
    );
    assert!(!text(&out.stderr).contains("embedded model loaded"));
}

#[tokio::test]
async fn a_dry_run_lists_users_and_changes_nothing_in_sqlite() {
    dry_run_lists_and_changes_nothing(sqlite()).await;
}

#[tokio::test]
async fn a_dry_run_lists_users_and_changes_nothing_in_mongodb() {
    dry_run_lists_and_changes_nothing(mongo().await).await;
}

async fn once_compresses_within_max_users_and_the_llm_limit(backend: TestStorage) {
    let stores = open(&backend).await;
    for (user, turns) in [(1, 26), (2, 30), (3, 27), (4, 29), (5, 28), (6, 10)] {
        seed_user(&stores, user, turns).await;
    }
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::reply("Любит шахматы.").delayed(Duration::from_millis(300)));
    let out = worker(&backend, &llm, &[("LLM_MAX_CONCURRENCY", "2")])
        .args(["--once", "--max-users", "3", "--parallelism", "8"])
        .output()
        .await
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(
        llm.max_in_flight(),
        2,
        "8 compressions allowed, but LLM_MAX_CONCURRENCY=2 at the LLM"
    );
    let mut done: Vec<(i64, String)> = user_statuses(&out);
    done.sort();
    assert_eq!(
        done,
        [(2, "ok".into()), (4, "ok".into()), (5, "ok".into())],
        "the three busiest users"
    );
    for (user, turns) in [(2, 30), (4, 29), (5, 28)] {
        assert_eq!(count(&stores, user).await, 20);
        assert_kept_the_newest_turns(&stores, user, turns).await;
        assert_eq!(
            summary(&stores, user).await.as_deref(),
            Some("Любит шахматы.")
        );
    }
    for (user, events) in [(1, 52), (3, 54), (6, 20)] {
        assert_eq!(count(&stores, user).await, events, "user {user} untouched");
    }

    // The next run picks up the rest.
    let out = run(&backend, &llm, &["--once"]).await;
    assert_exit(&out, 0);
    let mut done: Vec<i64> = user_statuses(&out).into_iter().map(|(u, _)| u).collect();
    done.sort_unstable();
    assert_eq!(done, [1, 3]);
    assert_eq!(count(&stores, 1).await, 20);
    assert_eq!(count(&stores, 3).await, 20);
    assert_eq!(
        llm.request_count(),
        5,
        "one summariser call per compressed user"
    );
}

#[tokio::test]
async fn once_compresses_within_max_users_and_the_llm_limit_in_sqlite() {
    once_compresses_within_max_users_and_the_llm_limit(sqlite()).await;
}

#[tokio::test]
async fn once_compresses_within_max_users_and_the_llm_limit_in_mongodb() {
    once_compresses_within_max_users_and_the_llm_limit(mongo().await).await;
}

#[tokio::test]
async fn once_also_extracts_facts_and_stores_them_before_deleting_the_turns() {
    let backend = sqlite();
    let stores = open(&backend).await;
    seed_user(&stores, 1, 30).await;
    let llm = ScriptedLlm::start().await;
    llm.push(Step::reply("Любит шахматы."));
    llm.push(Step::reply(
        r#"[{"key":"hobby","kind":"preference","text":"Любит шахматы"}]"#,
    ));
    let out = worker(&backend, &llm, &[("MEMORY_FACTS_ENABLED", "true")])
        .args(["--once"])
        .output()
        .await
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(llm.request_count(), 2, "the summary, then the facts");
    assert_eq!(count(&stores, 1).await, 20);
    let facts = stores.facts.current(UserId::new(1), 10).await.unwrap();
    assert_eq!(facts.len(), 1, "{facts:?}");
    assert_eq!(facts[0].text, "Любит шахматы");
    let found = stores
        .facts
        .search(UserId::new(1), "Во что я люблю играть? В шахматы?", 5)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn once_exits_non_zero_when_a_user_fails_and_loses_nothing() {
    let backend = sqlite();
    let stores = open(&backend).await;
    seed_user(&stores, 1, 30).await;
    seed_user(&stores, 2, 29).await;
    let llm = ScriptedLlm::start().await;
    // User 1 (the busiest, first with --parallelism 1): the first call and its 3 retries fail.
    for _ in 0..4 {
        llm.push(Step::server_error());
    }
    llm.set_default_reply("Любит шахматы.");
    let out = run(&backend, &llm, &["--once", "--parallelism", "1"]).await;
    assert_exit(&out, 1);
    let statuses = user_statuses(&out);
    assert_eq!(
        statuses,
        [(1, "error".to_owned()), (2, "ok".to_owned())],
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        count(&stores, 1).await,
        60,
        "nothing deleted without a summary"
    );
    assert_eq!(summary(&stores, 1).await, None);
    assert_eq!(
        count(&stores, 2).await,
        20,
        "the failure did not stop the run"
    );
    assert!(
        text(&out.stderr).contains("\"failures\":1"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn sigterm_during_interval_mode_finishes_the_current_user_then_exits() {
    let backend = sqlite();
    let stores = open(&backend).await;
    for user in 1..=3 {
        seed_user(&stores, user, 30).await;
    }
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::reply("Любит шахматы.").delayed(Duration::from_millis(800)));
    let child = worker(&backend, &llm, &[])
        .args(["--interval", "1h", "--parallelism", "1"])
        .spawn()
        .unwrap();
    llm.wait_for_requests(1, Duration::from_secs(20)).await;
    let pid = child.id().expect("the worker is running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the worker exits after SIGTERM")
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it waited for the summariser call in flight"
    );
    assert_eq!(llm.request_count(), 1, "no user started after the stop");
    let compressed: Vec<i64> = user_statuses(&out).into_iter().map(|(u, _)| u).collect();
    assert_eq!(compressed.len(), 1, "{}", text(&out.stderr));
    assert_eq!(
        count(&stores, compressed[0]).await,
        20,
        "the current user finished"
    );
    for user in (1..=3).filter(|u| *u != compressed[0]) {
        assert_eq!(count(&stores, user).await, 60);
    }
    assert!(
        text(&out.stderr).contains("\"not_started\":2"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_second_stop_signal_exits_at_once_and_the_user_in_flight_keeps_its_memory() {
    let backend = sqlite();
    let stores = open(&backend).await;
    seed_user(&stores, 1, 30).await;
    let llm = ScriptedLlm::start().await;
    // A summariser far slower than anyone stopping the worker waits for.
    llm.set_default(Step::reply("Любит шахматы.").delayed(Duration::from_secs(300)));
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let mut child = worker(&backend, &llm, &[])
        .args(["--once"])
        .stderr(log.reopen().expect("the log file"))
        .spawn()
        .unwrap();
    llm.wait_for_requests(1, Duration::from_secs(20)).await;
    let pid = child.id().expect("the worker is running").to_string();
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();
    signal("-TERM");
    let started = Instant::now();
    // The first signal is taken (the worker waits for its compression), then the second.
    while !log_text().contains("shutdown requested") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "still finishing the user"
    );
    signal("-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the worker exits at once after a second SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(143), "128 + SIGTERM\n{}", log_text());
    assert_eq!(
        count(&stores, 1).await,
        60,
        "the cut compression deleted nothing"
    );
    assert_eq!(summary(&stores, 1).await, None);
}

#[tokio::test]
async fn two_workers_at_once_over_the_same_users_in_mongodb_compress_each_once() {
    const USERS: i64 = 16;
    const TURNS: usize = 30;
    let backend = mongo().await;
    let stores = open(&backend).await;
    for user in 1..=USERS {
        seed_user(&stores, user, TURNS).await;
    }
    let llm = ScriptedLlm::start().await;
    // A distinct summary per summariser call, so a summary written twice or two summaries
    // glued together would show.
    for i in 0..200 {
        llm.push(Step::reply(format!("Сводка №{i}")).delayed(Duration::from_millis(100)));
    }
    let args = ["--once", "--parallelism", "2"];
    let (a, b) = tokio::join!(run(&backend, &llm, &args), run(&backend, &llm, &args));
    assert_exit(&a, 0);
    assert_exit(&b, 0);

    let (a, b) = (user_statuses(&a), user_statuses(&b));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both workers found users: {a:?} {b:?}"
    );
    let mut outcomes: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (user, status) in a.iter().chain(&b) {
        outcomes.entry(*user).or_default().push(status.clone());
    }
    let mut summaries = BTreeSet::new();
    for user in 1..=USERS {
        let statuses = outcomes.get(&user).cloned().unwrap_or_default();
        assert!(
            statuses.iter().any(|s| s == "ok"),
            "user {user} compressed: {statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| ["ok", "busy", "skipped"].contains(&s.as_str())),
            "one compression of a user at a time: the other worker finds it busy or done, \
             never races it to a conflict: user {user}: {statuses:?}"
        );
        assert_eq!(count(&stores, user).await, 20, "user {user}");
        assert_kept_the_newest_turns(&stores, user, TURNS).await;
        let s = summary(&stores, user).await.expect("a summary");
        assert!(
            s.starts_with("Сводка №") && s.matches("Сводка").count() == 1,
            "one summariser output, not two: {s:?}"
        );
        summaries.insert(s);
    }
    assert_eq!(
        summaries.len(),
        USERS as usize,
        "no summary shared by two users"
    );
    let tally = |s: &str| outcomes.values().flatten().filter(|x| *x == s).count();
    eprintln!(
        "two workers over {USERS} users: ok {}, busy {}, skipped {}, summariser calls {}",
        tally("ok"),
        tally("busy"),
        tally("skipped"),
        llm.request_count()
    );
    assert_eq!(
        llm.request_count(),
        usize::try_from(USERS).unwrap(),
        "one summariser call per user: no work done twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_1000_users_in_sqlite_is_timed() {
    const USERS: i64 = 1000;
    const TURNS: usize = 26; // 52 events: just over the default threshold of 50
    let backend = sqlite();
    let stores = open(&backend).await;
    let seeding = Instant::now();
    for user in 1..=USERS {
        seed_user(&stores, user, TURNS).await;
    }
    let seeded = seeding.elapsed();
    let llm = ScriptedLlm::start().await;
    llm.set_default_reply("Любит шахматы.");
    let started = Instant::now();
    let out = run(&backend, &llm, &["--once"]).await;
    let took = started.elapsed();
    assert_exit(&out, 0);
    let statuses = user_statuses(&out);
    assert_eq!(statuses.len(), USERS as usize);
    assert!(statuses.iter().all(|(_, s)| s == "ok"));
    assert_eq!(llm.request_count(), USERS as usize);
    for user in [1, 500, USERS] {
        assert_eq!(count(&stores, user).await, 20);
    }
    let run_ms = text(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "worker run finished")
        .and_then(|v| v["fields"]["elapsed_ms"].as_u64())
        .expect("the run summary line");
    eprintln!(
        "memory-worker --once over {USERS} users x {} events (SQLite, zero-latency LLM, \
         LLM_MAX_CONCURRENCY default): run {run_ms} ms, process {:.2} s ({seeded:.2?} to seed)",
        2 * TURNS,
        took.as_secs_f64()
    );
}

#[tokio::test]
async fn it_compresses_on_a_sqlite_file_a_running_bot_owns() {
    let backend = sqlite();
    let stores = open(&backend).await;
    // What a starting bot does: the file's owner lock, held while `stores` lives.
    let _inbox = stores
        .inbox_for_bot()
        .await
        .unwrap_or_else(|e| panic!("the bot takes ownership: {e}"));
    seed_user(&stores, 1, 30).await;
    let llm = ScriptedLlm::start().await;
    llm.set_default(Step::reply("Любит шахматы."));
    let out = run(&backend, &llm, &["--once"]).await;
    assert_exit(&out, 0);
    assert_eq!(user_statuses(&out), [(1, "ok".to_owned())]);
    assert_eq!(count(&stores, 1).await, 20);
}
