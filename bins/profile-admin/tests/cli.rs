//! The `profile_admin` binary as support staff run it: every command against a SQLite file and
//! against the MongoDB-wire test server, with nothing but the storage settings (it has no key
//! of its own), and the exit codes (2 usage, 3 not found, 4 storage unavailable). Data is seeded in-process through the
//! real stores, then the process runs against the same storage.

use std::process::Output;

use butler_domain::{Source, Tone, UserId, UserMemoryEvent};
use butler_factory::settings::Settings;
use butler_factory::wiring::{self, Storage};
use butler_testkit::storage::TestStorage;
use time::{Duration, OffsetDateTime};

const LONG_MESSAGE: &str = "Напомни мне, пожалуйста, что в субботу репетиция квартета, \
    потом ужин с Анной в семь, а в воскресенье — шахматный турнир в клубе на набережной.";

/// A fresh SQLite store.
fn sqlite() -> TestStorage {
    TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh database on the MongoDB-wire test server.
async fn mongo() -> TestStorage {
    TestStorage::mongo("admin_cli")
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

/// The binary with a clean environment: only the storage settings and the given extras.
async fn run_with(env: &[(&str, String)], args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_profile_admin"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run profile_admin")
}

/// The binary as an operator runs it: with the storage settings, nothing else.
async fn admin(backend: &TestStorage, args: &[&str]) -> Output {
    run_with(&backend.env(), args).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Users 101 (three turns, one long message, a summary), 102 (nothing said) and 103 (one turn).
async fn seed(s: &Storage) {
    let start = OffsetDateTime::now_utc() - Duration::hours(1);
    let at = |i: i64| start + Duration::seconds(i);
    for id in [101, 102, 103] {
        s.profiles.get_or_create(UserId::new(id)).await.unwrap();
    }
    let u = UserId::new(101);
    let mut profile = s.profiles.get(u).await.unwrap().unwrap();
    profile.memory_summary = Some("Играет на виолончели; сестра Анна.".into());
    s.profiles.save(&profile).await.unwrap();
    s.memory
        .append(&[
            UserMemoryEvent::user(u, "Меня зовут Пётр", Source::Text, at(0)),
            UserMemoryEvent::assistant(u, "Рад знакомству, сэр Пётр.", Source::Text, at(1)),
            UserMemoryEvent::user(u, LONG_MESSAGE, Source::Voice, at(2)),
            UserMemoryEvent::assistant(u, "Записал, сэр.", Source::Text, at(3)),
            UserMemoryEvent::user(u, "Спасибо", Source::Text, at(4)),
            UserMemoryEvent::assistant(u, "Всегда к вашим услугам.", Source::Text, at(5)),
        ])
        .await
        .unwrap();
    let u = UserId::new(103);
    s.memory
        .append(&[
            UserMemoryEvent::user(u, "Привет", Source::Text, at(6)),
            UserMemoryEvent::assistant(u, "Добрый день, сэр.", Source::Text, at(7)),
        ])
        .await
        .unwrap();
}

async fn every_command_works(backend: TestStorage) {
    let stores = open(&backend).await;
    seed(&stores).await;

    let out = admin(&backend, &["migrate"]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!("{} at", backend.backend().name()))
            && stdout(&out).contains("schema and indexes are up to date"),
        "{}",
        stdout(&out)
    );

    // list: a table by ascending id with event counts and the summary flag.
    let out = admin(&backend, &["list"]).await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("USER_ID") && lines[0].contains("EVENTS"),
        "{text}"
    );
    let cells = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let row = cells(lines[1]);
    assert_eq!(row[0], "101", "{text}");
    assert!(
        row.contains(&"witty".to_owned()) && row.contains(&"ru".to_owned()),
        "{text}"
    );
    assert_eq!(&row[row.len() - 3..row.len() - 1], ["6", "yes"], "{text}");
    assert_eq!(
        &cells(lines[2])[cells(lines[2]).len() - 3..][..2],
        ["0", "no"],
        "{text}"
    );
    assert!(lines[3].starts_with("103"), "{text}");

    // list --json, paged.
    let out = admin(
        &backend,
        &["list", "--after", "101", "--limit", "1", "--json"],
    )
    .await;
    assert_exit(&out, 0);
    let page: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["user_id"], 102);
    assert_eq!(page[0]["event_count"], 0);

    // show: profile, summary, recent events with long content truncated.
    let out = admin(&backend, &["show", "101", "--events", "4"]).await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("summary:   Играет на виолончели; сестра Анна."),
        "{text}"
    );
    assert!(
        text.contains("events:    6") && text.contains("recent events (4):"),
        "{text}"
    );
    assert!(
        !text.contains("Меня зовут Пётр"),
        "only the 4 newest: {text}"
    );
    assert!(text.contains("Напомни мне") && text.contains('…'), "{text}");
    assert!(!text.contains("набережной"), "content truncated: {text}");

    // update: validated, persisted, visible to the next reader.
    let out = admin(
        &backend,
        &[
            "update",
            "101",
            "--persona",
            "Jeeves",
            "--tone",
            "formal",
            "--language",
            "en",
            "--topics",
            "cello, chess",
        ],
    )
    .await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("updated user 101"),
        "{}",
        stdout(&out)
    );
    let p = stores
        .profiles
        .get(UserId::new(101))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.persona.as_str(), p.tone, p.language.code()),
        ("Jeeves", Tone::Formal, "en")
    );
    assert_eq!(p.preferred_topics, ["cello", "chess"]);
    assert_eq!(
        p.memory_summary.as_deref(),
        Some("Играет на виолончели; сестра Анна."),
        "an update keeps the summary"
    );

    // time zone: an IANA name, shown, exported; `default` returns to DEFAULT_TIME_ZONE.
    let out = admin(&backend, &["show", "101"]).await;
    assert!(
        stdout(&out).contains("time zone: default"),
        "{}",
        stdout(&out)
    );
    let out = admin(
        &backend,
        &["update", "101", "--time-zone", "Asia/Yekaterinburg"],
    )
    .await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("time-zone=Asia/Yekaterinburg"),
        "{}",
        stdout(&out)
    );
    let out = admin(&backend, &["show", "101"]).await;
    assert!(
        stdout(&out).contains("time zone: Asia/Yekaterinburg"),
        "{}",
        stdout(&out)
    );
    let zone_of = |stores: &Storage| {
        let profiles = stores.profiles.clone();
        async move {
            profiles
                .get(UserId::new(101))
                .await
                .unwrap()
                .unwrap()
                .time_zone
                .map(|z| z.name().to_owned())
        }
    };
    assert_eq!(
        zone_of(&stores).await.as_deref(),
        Some("Asia/Yekaterinburg")
    );

    // export: everything, untruncated, as JSON.
    let out = admin(&backend, &["export", "101"]).await;
    assert_exit(&out, 0);
    let record: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(record["profile"]["tone"], "formal");
    assert_eq!(record["profile"]["event_count"], 6);
    let events = record["events"].as_array().unwrap();
    assert_eq!(events.len(), 6);
    assert_eq!(events[0]["content"], "Меня зовут Пётр");
    assert_eq!(events[2]["content"], LONG_MESSAGE);
    assert_eq!(events[2]["source"], "voice");
    assert_eq!(record["profile"]["time_zone"], "Asia/Yekaterinburg");
    let out = admin(&backend, &["update", "101", "--time-zone", "default"]).await;
    assert_exit(&out, 0);
    assert_eq!(zone_of(&stores).await, None);

    // limits: shown, set (a number, 0 = unlimited), back to the default, kept by a reset.
    let out = admin(&backend, &["limits", "101"]).await;
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        "user 101: per-minute=default burst=default per-day=default"
    );
    let out = admin(
        &backend,
        &[
            "limits",
            "101",
            "--per-minute",
            "60",
            "--burst",
            "5",
            "--per-day",
            "0",
        ],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        "user 101: per-minute=60 burst=5 per-day=unlimited"
    );
    let out = admin(&backend, &["limits", "101", "--burst", "default", "--json"]).await;
    assert_exit(&out, 0);
    let limits: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        limits,
        serde_json::json!({"per_minute": 60, "burst": null, "per_day": 0})
    );
    let out = admin(&backend, &["show", "101"]).await;
    assert!(
        stdout(&out).contains("limits:    per-minute=60 burst=default per-day=unlimited"),
        "{}",
        stdout(&out)
    );

    // reset without --yes and without a terminal: refused, nothing deleted.
    let out = admin(&backend, &["reset", "103"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("without --yes"), "{}", stderr(&out));
    assert_eq!(stores.memory.count(UserId::new(103)).await.unwrap(), 2);

    // reset --yes: memory gone, default profile back.
    let out = admin(&backend, &["reset", "101", "--yes"]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("6 events and 0 facts deleted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stores.memory.count(UserId::new(101)).await.unwrap(), 0);
    let p = stores
        .profiles
        .get(UserId::new(101))
        .await
        .unwrap()
        .unwrap();
    assert!(p.memory_summary.is_none() && p.preferred_topics.is_empty());
    assert_eq!(p.tone, Tone::Witty);
    assert_eq!(
        p.limits.per_minute,
        Some(60),
        "limits set by support survive a reset"
    );
    assert_eq!(
        stores.memory.count(UserId::new(103)).await.unwrap(),
        2,
        "other users untouched"
    );
}

async fn errors_have_their_exit_codes(backend: TestStorage) {
    let stores = open(&backend).await;
    seed(&stores).await;

    let out = admin(&backend, &["show", "999"]).await;
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("no profile stored for user 999"));
    for args in [
        &["update", "999", "--tone", "formal"][..],
        &["export", "999"],
        &["reset", "999", "--yes"],
    ] {
        assert_exit(&admin(&backend, args).await, 3);
    }
    assert!(
        stores
            .profiles
            .get(UserId::new(999))
            .await
            .unwrap()
            .is_none(),
        "no command created the unknown user"
    );

    let out = admin(&backend, &["update", "101", "--tone", "sarcastic"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("witty, formal, casual"),
        "{}",
        stderr(&out)
    );
    let out = admin(&backend, &["update", "101", "--persona", "  "]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("persona must not be empty"),
        "{}",
        stderr(&out)
    );
    assert_exit(&admin(&backend, &["update", "101"]).await, 2);
    let out = admin(&backend, &["update", "101", "--time-zone", "Perm"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("expected an IANA name such as Europe/Moscow"),
        "{}",
        stderr(&out)
    );
    let out = admin(&backend, &["limits", "101", "--burst", "0"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("burst 0 is out of range"),
        "{}",
        stderr(&out)
    );
    let out = admin(&backend, &["limits", "101", "--per-day", "lots"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("a whole number or `default`"),
        "{}",
        stderr(&out)
    );
    assert_exit(
        &admin(&backend, &["limits", "999", "--per-day", "5"]).await,
        3,
    );
    assert_exit(&admin(&backend, &["show", "alice"]).await, 2);
    let p = stores
        .profiles
        .get(UserId::new(101))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.tone, Tone::Witty, "rejected updates wrote nothing");
    assert_eq!(p.time_zone, None, "rejected updates wrote nothing");
}

#[tokio::test]
async fn every_command_works_against_sqlite() {
    every_command_works(sqlite()).await;
}

#[tokio::test]
async fn every_command_works_against_the_mongodb_wire_server() {
    every_command_works(mongo().await).await;
}

#[tokio::test]
async fn errors_have_their_exit_codes_against_sqlite() {
    errors_have_their_exit_codes(sqlite()).await;
}

#[tokio::test]
async fn errors_have_their_exit_codes_against_the_mongodb_wire_server() {
    errors_have_their_exit_codes(mongo().await).await;
}

#[tokio::test]
async fn whoever_can_open_the_storage_can_run_it_and_it_does_not_pretend_otherwise() {
    // No key is asked for: one would come from the same configuration the caller already
    // reads, and the database it opens needs none.
    let backend = sqlite();
    seed(&open(&backend).await).await;
    let out = admin(&backend, &["list"]).await;
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("101"), "{}", stdout(&out));

    // Its help says where access is really decided.
    let help = admin(&backend, &["--help"]).await;
    assert_exit(&help, 0);
    let text = stdout(&help);
    assert!(
        text.contains("no key of its own") && text.contains("docs/operations/admin.md"),
        "{text}"
    );
    assert!(!text.contains("5 unauthorised"), "{text}");
}

#[tokio::test]
async fn unusable_storage_exits_4_on_both_backends() {
    // SQLite: the parent of the database "directory" is a regular file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let env = vec![
        ("STORAGE", "sqlite".to_owned()),
        ("SQLITE_PATH", file.join("butler.db").display().to_string()),
    ];
    let out = run_with(&env, &["list"]).await;
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("not-a-directory"), "{}", stderr(&out));

    // MongoDB: nothing listens on the port; the password in the URI is never printed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = vec![
        ("STORAGE", "mongodb".to_owned()),
        (
            "MONGODB_URI",
            format!("mongodb://butler:s3cret-pass@127.0.0.1:{port}/?directConnection=true"),
        ),
    ];
    let out = run_with(&env, &["show", "1"]).await;
    assert_exit(&out, 4);
    let printed = stderr(&out);
    assert!(printed.contains(&port.to_string()), "{printed}");
    assert!(!printed.contains("s3cret-pass"), "{printed}");
}

#[tokio::test]
async fn an_update_made_with_the_cli_shapes_the_next_reply() {
    let backend = sqlite();
    let stores = open(&backend).await;
    seed(&stores).await;
    let out = admin(
        &backend,
        &["update", "103", "--persona", "Jeeves", "--tone", "formal"],
    )
    .await;
    assert_exit(&out, 0);

    // The bot's reply use case, wired from the same settings, answers the next message.
    let llm = butler_testkit::llm_server::ScriptedLlm::start().await;
    llm.push_reply("Good afternoon, sir.");
    let mut env = backend.env();
    env.push(("LLM_BASE_URL", llm.base_url()));
    let settings = butler_factory::settings::Settings::from_sources(None, |name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    let app = butler_factory::wiring::build(&settings).await.unwrap();
    let reply = app
        .reply
        .execute(butler_application::ReplyInput {
            user_id: UserId::new(103),
            text: "Добрый день".into(),
            source: Source::Text,
            origin: None,
        })
        .await;
    assert_eq!(reply.persona, "Jeeves");
    let requests = llm.requests();
    let system = requests[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("Jeeves") && system.contains("официальный"),
        "{system}"
    );
}

/// Runs the binary on a pseudo-terminal (util-linux `script`), typing `answer`.
async fn admin_on_a_terminal(backend: &TestStorage, args: &str, answer: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_profile_admin"));
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .envs(backend.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("`script` runs profile_admin on a terminal: install util-linux (bsdutils): {e}")
        });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(answer.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn reset_on_a_terminal_asks_first() {
    let backend = sqlite();
    let stores = open(&backend).await;
    seed(&stores).await;
    let out = admin_on_a_terminal(&backend, "reset 101", "n\n").await;
    assert_exit(&out, 2);
    let screen = stdout(&out);
    assert!(
        screen.contains("Reset user 101: delete all memory and restore the default profile? [y/N]")
            && screen.contains("reset cancelled"),
        "{screen}"
    );
    assert_eq!(stores.memory.count(UserId::new(101)).await.unwrap(), 6);

    let out = admin_on_a_terminal(&backend, "reset 101", "y\n").await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("6 events and 0 facts deleted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stores.memory.count(UserId::new(101)).await.unwrap(), 0);
}

#[tokio::test]
async fn it_works_on_a_sqlite_file_a_running_bot_owns() {
    let backend = sqlite();
    let stores = open(&backend).await;
    // What a starting bot does: the file's owner lock, held while `stores` lives.
    let _inbox = stores
        .inbox_for_bot()
        .await
        .unwrap_or_else(|e| panic!("the bot takes ownership: {e}"));
    let user = UserId::new(404);
    stores.profiles.get_or_create(user).await.unwrap();
    stores
        .memory
        .append(&[UserMemoryEvent::user(
            user,
            "Привет",
            Source::Text,
            OffsetDateTime::now_utc(),
        )])
        .await
        .unwrap();
    let out = admin(&backend, &["show", "404"]).await;
    assert_exit(&out, 0);
    let out = admin(&backend, &["reset", "404", "--yes"]).await;
    assert_exit(&out, 0);
    assert_eq!(stores.memory.count(user).await.unwrap(), 0);
}

/// User 201 in Perm's zone with a pending, a delivered and a cancelled reminder; user 202 with
/// no zone of their own. Returns the pending one's id and due time.
async fn seed_reminders(s: &Storage) -> (butler_domain::reminder::ReminderId, OffsetDateTime) {
    use butler_domain::reminder::{Reminder, UserTimeZone};
    let now = OffsetDateTime::now_utc();
    let perm = UserTimeZone::new("Asia/Yekaterinburg").unwrap();
    let user = UserId::new(201);
    let mut profile = s.profiles.get_or_create(user).await.unwrap();
    profile.time_zone = Some(perm.clone());
    s.profiles.save(&profile).await.unwrap();
    s.profiles.get_or_create(UserId::new(202)).await.unwrap();
    let make = |text: &str, due: OffsetDateTime| {
        Reminder::new(user, 201, text, due, &perm, now - Duration::hours(2)).unwrap()
    };
    let pending = make("позвонить маме", now + Duration::days(1));
    let delivered = make("проверить духовку", now - Duration::hours(1));
    let cancelled = make("купить билеты", now + Duration::days(2));
    for r in [&pending, &delivered, &cancelled] {
        s.reminders.add(r).await.unwrap();
    }
    let claimed = s
        .reminders
        .claim_due(now, Duration::minutes(1), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(s
        .reminders
        .mark_delivered(delivered.id, claimed[0].token, now)
        .await
        .unwrap());
    s.reminders.cancel(user, cancelled.id, now).await.unwrap();
    (pending.id, pending.due_at)
}

async fn reminders_are_listed_in_the_users_zone_shown_exported_and_cancelled(backend: TestStorage) {
    use butler_domain::reminder::{ReminderStatus, UserTimeZone};
    let stores = open(&backend).await;
    let (id, due) = seed_reminders(&stores).await;
    let perm = UserTimeZone::new("Asia/Yekaterinburg").unwrap();
    let on_perm_clock = perm.wall_clock(due);

    let out = admin(&backend, &["reminders", "201"]).await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("DUE (Asia/Yekaterinburg)"),
        "{text}"
    );
    assert!(
        lines[1].contains("delivered") && lines[1].contains("проверить духовку"),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&id.short())
            && lines[2].contains(&on_perm_clock)
            && lines[2].contains("pending")
            && lines[2].contains("позвонить маме"),
        "{text}"
    );
    assert!(lines[3].contains("cancelled"), "{text}");

    let out = admin(&backend, &["reminders", "201", "--json"]).await;
    assert_exit(&out, 0);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed[1]["reminder_id"], id.to_string());
    assert_eq!(listed[1]["state"], "pending");
    assert!(
        listed[1]["due_local"].as_str().unwrap().ends_with("+05:00"),
        "{listed}"
    );
    assert_eq!(listed[1]["time_zone"], "Asia/Yekaterinburg");

    let out = admin(&backend, &["show", "201"]).await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("time zone: Asia/Yekaterinburg\n"), "{text}");
    assert!(
        text.contains(&format!(
            "reminders: 1 pending; next {on_perm_clock} — позвонить маме"
        )),
        "{text}"
    );
    let out = admin(&backend, &["show", "202"]).await;
    let text = stdout(&out);
    assert!(
        text.contains("time zone: default (Europe/Moscow)")
            && text.contains("reminders: none pending"),
        "{text}"
    );

    let out = admin(&backend, &["export", "201"]).await;
    assert_exit(&out, 0);
    let record: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let exported = record["reminders"].as_array().unwrap();
    assert_eq!(exported.len(), 3, "{record}");
    assert_eq!(exported[0]["state"], "delivered");
    assert!(exported[0]["finished_at"].is_string());
    assert_eq!(record["profile"]["time_zone"], "Asia/Yekaterinburg");

    // --cancel takes the short id the table shows; a second cancel, an unknown id and an
    // unknown user are errors with their exit codes, and change nothing.
    let out = admin(&backend, &["reminders", "201", "--cancel", &id.short()]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!("cancelled reminder {id} of user 201")),
        "{}",
        stdout(&out)
    );
    assert!(matches!(
        stores.reminders.get(id).await.unwrap().unwrap().status,
        ReminderStatus::Cancelled(_)
    ));
    let out = admin(&backend, &["reminders", "201", "--cancel", &id.to_string()]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("was already cancelled"),
        "{}",
        stderr(&out)
    );
    let out = admin(&backend, &["reminders", "201", "--cancel", "0000dead"]).await;
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("user 201 has no reminder 0000dead"),
        "{}",
        stderr(&out)
    );
    let out = admin(&backend, &["reminders", "999"]).await;
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("no profile stored for user 999"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn reminders_are_listed_in_the_users_zone_shown_exported_and_cancelled_against_sqlite() {
    reminders_are_listed_in_the_users_zone_shown_exported_and_cancelled(sqlite()).await;
}

#[tokio::test]
async fn reminders_are_listed_in_the_users_zone_shown_exported_and_cancelled_against_the_mongodb_wire_server(
) {
    reminders_are_listed_in_the_users_zone_shown_exported_and_cancelled(mongo().await).await;
}

/// `--reminder-offers on|off`: the user's consent to reminders offered from memory, shown,
/// exported, and anything but `on`/`off` refused with exit 2 naming the form.
async fn reminder_offers_are_switched_shown_and_exported(backend: TestStorage) {
    let stores = open(&backend).await;
    seed(&stores).await;
    let out = admin(&backend, &["show", "101"]).await;
    assert!(
        stdout(&out).contains("offers:    off (0 offered)"),
        "{}",
        stdout(&out)
    );
    let out = admin(&backend, &["update", "101", "--reminder-offers", "yes"]).await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("expected `on` or `off`"),
        "{}",
        stderr(&out)
    );
    let out = admin(&backend, &["update", "101", "--reminder-offers", "on"]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("reminder-offers=on"),
        "{}",
        stdout(&out)
    );
    let p = stores
        .profiles
        .get(UserId::new(101))
        .await
        .unwrap()
        .unwrap();
    assert!(p.reminder_offers);
    let out = admin(&backend, &["show", "101"]).await;
    assert!(
        stdout(&out).contains("offers:    on (0 offered)"),
        "{}",
        stdout(&out)
    );
    let out = admin(&backend, &["export", "101"]).await;
    assert_exit(&out, 0);
    let record: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(record["profile"]["reminder_offers"], true);
    assert_eq!(
        record["profile"]["reminder_offers_made"],
        serde_json::json!([])
    );
    let out = admin(&backend, &["update", "101", "--reminder-offers", "off"]).await;
    assert_exit(&out, 0);
    let p = stores
        .profiles
        .get(UserId::new(101))
        .await
        .unwrap()
        .unwrap();
    assert!(!p.reminder_offers);
}

#[tokio::test]
async fn reminder_offers_are_switched_shown_and_exported_against_sqlite() {
    reminder_offers_are_switched_shown_and_exported(sqlite()).await;
}

#[tokio::test]
async fn reminder_offers_are_switched_shown_and_exported_against_the_mongodb_wire_server() {
    reminder_offers_are_switched_shown_and_exported(mongo().await).await;
}
