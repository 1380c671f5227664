//! `profile_admin` commands in-process against the in-memory fakes: output, exit codes, the
//! confirmation guard and argument validation.

use std::sync::Arc;

use butler_application::admin::{
    FactsUseCase, ListProfilesUseCase, ShowUserUseCase, UpdateProfileUseCase,
};
use butler_application::ResetPersonalizationUseCase;
use butler_domain::ports::{Clock, FactRepository, UserMemoryRepository, UserProfileRepository};
use butler_domain::ports::{ConversationLeases, LeaseScope};
use butler_domain::{FactKind, MemoryFact, Source, UserId, UserMemoryEvent};
use butler_presentation::admin::{run, AdminCli, AdminDeps, ExitCode};
use butler_testkit::fakes::{
    InMemoryFacts, InMemoryInbox, InMemoryMemory, InMemoryProfiles, ManualClock,
};
use clap::Parser;

struct Fixture {
    profiles: Arc<InMemoryProfiles>,
    memory: Arc<InMemoryMemory>,
    facts: Arc<InMemoryFacts>,
    leases: Arc<InMemoryInbox>,
    clock: Arc<ManualClock>,
    deps: AdminDeps,
}

async fn fixture() -> Fixture {
    let profiles = Arc::new(InMemoryProfiles::default());
    let memory = Arc::new(InMemoryMemory::default());
    let facts = Arc::new(InMemoryFacts::default());
    let clock = Arc::new(ManualClock::default());
    let leases = Arc::new(InMemoryInbox::default());
    for id in [101, 102] {
        profiles.get_or_create(UserId::new(id)).await.unwrap();
    }
    let user = UserId::new(101);
    let events = vec![
        UserMemoryEvent::user(user, "Меня зовут Пётр", Source::Text, clock.now()),
        UserMemoryEvent::assistant(
            user,
            "Рад знакомству, сэр Пётр.",
            Source::Voice,
            clock.now(),
        ),
    ];
    memory.append(&events).await.unwrap();
    let deps = AdminDeps {
        list: ListProfilesUseCase::new(profiles.clone(), memory.clone()),
        show: ShowUserUseCase::new(profiles.clone(), memory.clone(), facts.clone()),
        update: UpdateProfileUseCase::new(profiles.clone(), clock.clone()),
        reset: ResetPersonalizationUseCase::new(
            profiles.clone(),
            memory.clone(),
            facts.clone(),
            leases.clone(),
            clock.clone(),
        ),
        facts: FactsUseCase::new(profiles.clone(), facts.clone()),
        reminders: butler_application::admin::RemindersAdminUseCase::new(
            profiles.clone(),
            Arc::new(butler_testkit::fakes::InMemoryReminders::default()),
            clock.clone(),
            butler_domain::reminder::UserTimeZone::utc(),
        ),
        migrate: Arc::new(|| Box::pin(async { Ok("indexes ok".to_owned()) })),
        reset_wait: std::time::Duration::from_millis(500),
    };
    Fixture {
        profiles,
        memory,
        facts,
        leases,
        clock,
        deps,
    }
}

async fn exec(f: &Fixture, args: &[&str], answer: Option<bool>) -> (ExitCode, String, String) {
    let cli =
        AdminCli::try_parse_from(std::iter::once("profile_admin").chain(args.iter().copied()))
            .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(cli, &f.deps, &mut out, &mut err, &mut |_| answer).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn list_prints_a_table_of_profiles_with_event_counts() {
    let f = fixture().await;
    let (code, out, _) = exec(&f, &["list"], None).await;
    assert_eq!(code, ExitCode::Ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("USER_ID  PERSONA"), "{out}");
    assert!(
        lines[1].starts_with("101")
            && lines[1].contains("Alfred-style дворецкий")
            && lines[1].contains("witty"),
        "{out}"
    );
    assert!(
        lines[1].split_whitespace().any(|c| c == "2"),
        "event count shown: {out}"
    );
    let (_, out, _) = exec(&f, &["list", "--after", "101", "--json"], None).await;
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["user_id"], 102);
}

#[tokio::test]
async fn show_and_export_describe_a_user_and_unknown_users_exit_3() {
    let f = fixture().await;
    let (code, out, _) = exec(&f, &["show", "101"], None).await;
    assert_eq!(code, ExitCode::Ok);
    assert!(
        out.contains("persona:   Alfred-style дворецкий") && out.contains("Меня зовут Пётр"),
        "{out}"
    );
    let (code, out, _) = exec(&f, &["export", "101"], None).await;
    assert_eq!(code, ExitCode::Ok);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["events"].as_array().unwrap().len(), 2);
    assert_eq!(json["events"][1]["source"], "voice");
    let (code, _, err) = exec(&f, &["show", "999"], None).await;
    assert_eq!(code, ExitCode::NotFound);
    assert!(err.contains("no profile stored for user 999"));
}

#[tokio::test]
async fn update_changes_the_profile_and_rejects_invalid_values_with_exit_2() {
    let f = fixture().await;
    let (code, out, _) = exec(
        &f,
        &[
            "update",
            "101",
            "--tone",
            "formal",
            "--topics",
            "cello, chess",
        ],
        None,
    )
    .await;
    assert_eq!(code, ExitCode::Ok, "{out}");
    let p = f.profiles.get(UserId::new(101)).await.unwrap().unwrap();
    assert_eq!(p.tone.code(), "formal");
    assert_eq!(p.preferred_topics, vec!["cello", "chess"]);
    let (code, _, err) = exec(&f, &["update", "101", "--persona", " "], None).await;
    assert_eq!(code, ExitCode::Usage);
    assert!(err.contains("persona must not be empty"));
    let (code, _, _) = exec(&f, &["update", "101"], None).await;
    assert_eq!(code, ExitCode::Usage);
}

#[test]
fn an_unknown_tone_is_a_usage_error_listing_the_allowed_values() {
    let err = AdminCli::try_parse_from(["profile_admin", "update", "1", "--tone", "sarcastic"])
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("witty, formal, casual"), "{err}");
    let err = AdminCli::try_parse_from(["profile_admin", "show", "alice"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("expected an integer"), "{err}");
}

#[tokio::test]
async fn reset_asks_for_confirmation_and_refuses_without_a_terminal() {
    let f = fixture().await;
    let (code, _, err) = exec(&f, &["reset", "101"], None).await;
    assert_eq!(code, ExitCode::Usage);
    assert!(err.contains("without --yes"));
    let (code, _, _) = exec(&f, &["reset", "101"], Some(false)).await;
    assert_eq!(code, ExitCode::Usage);
    assert_eq!(
        f.memory.all(UserId::new(101)).len(),
        2,
        "nothing deleted without confirmation"
    );
    let (code, out, _) = exec(&f, &["reset", "101"], Some(true)).await;
    assert_eq!(code, ExitCode::Ok);
    assert!(out.contains("2 events and 0 facts deleted"), "{out}");
    assert!(f.memory.all(UserId::new(101)).is_empty());
    let (code, _, _) = exec(&f, &["reset", "102", "--yes"], None).await;
    assert_eq!(code, ExitCode::Ok);
}

#[tokio::test]
async fn a_storage_outage_exits_4() {
    let f = fixture().await;
    f.profiles.outage.set(true);
    let (code, _, err) = exec(&f, &["list"], None).await;
    assert_eq!(code, ExitCode::Storage);
    assert!(err.contains("storage unavailable"));
    let (code, out, _) = exec(&f, &["migrate"], None).await;
    assert_eq!((code, out.trim()), (ExitCode::Ok, "indexes ok"));
}

#[tokio::test]
async fn resetting_an_unknown_user_exits_3_without_creating_a_profile() {
    let f = fixture().await;
    let (code, _, err) = exec(&f, &["reset", "999", "--yes"], Some(true)).await;
    assert_eq!(code, ExitCode::NotFound);
    assert!(err.contains("no profile stored for user 999"), "{err}");
    assert!(f.profiles.get(UserId::new(999)).await.unwrap().is_none());
}

#[tokio::test]
async fn update_as_json_does_not_claim_an_event_count() {
    let f = fixture().await;
    let (code, out, _) = exec(&f, &["update", "101", "--language", "en", "--json"], None).await;
    assert_eq!(code, ExitCode::Ok);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["language"], "en");
    assert!(json.get("event_count").is_none(), "{out}");
}

/// Two facts of user 101, the first superseded by a newer one of its key.
async fn seed_facts(f: &Fixture) -> (MemoryFact, MemoryFact, MemoryFact) {
    let user = UserId::new(101);
    let at = time::macros::datetime!(2026-11-29 10:00 UTC);
    let fact = |key: &str, text: &str, ms: i64| {
        MemoryFact::new(
            user,
            key,
            FactKind::Place,
            text,
            vec![],
            at + time::Duration::milliseconds(ms),
        )
        .unwrap()
    };
    let (kazan, tver, dog) = (
        fact("home_city", "Живёт в Казани", 0),
        fact("home_city", "Переехал в Тверь", 1),
        fact("dog_name", "Собаку зовут Бим", 2),
    );
    f.facts
        .save(&[kazan.clone(), tver.clone(), dog.clone()])
        .await
        .unwrap();
    (kazan, tver, dog)
}

#[tokio::test]
async fn facts_lists_current_facts_history_on_request_and_export_has_them_all() {
    let f = fixture().await;
    let (kazan, tver, dog) = seed_facts(&f).await;
    let (code, out, _) = exec(&f, &["facts", "101"], None).await;
    assert_eq!(code, ExitCode::Ok);
    assert!(out.starts_with("FACT_ID"), "{out}");
    assert!(
        out.contains(&tver.id.to_string()) && out.contains("Собаку зовут Бим"),
        "{out}"
    );
    assert!(
        !out.contains("Казани"),
        "superseded facts only with --history: {out}"
    );
    let (_, out, _) = exec(&f, &["facts", "101", "--history", "--json"], None).await;
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[0]["superseded_by"], tver.id.to_string());
    let (_, out, _) = exec(&f, &["show", "101"], None).await;
    assert!(
        out.contains("facts (2):") && out.contains("Переехал в Тверь"),
        "{out}"
    );
    let (_, out, _) = exec(&f, &["export", "101"], None).await;
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = json["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fact_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            kazan.id.to_string(),
            tver.id.to_string(),
            dog.id.to_string()
        ]
    );
    let (code, _, err) = exec(&f, &["facts", "999"], None).await;
    assert_eq!(code, ExitCode::NotFound);
    assert!(err.contains("no profile stored for user 999"), "{err}");
}

#[tokio::test]
async fn facts_forget_deletes_one_fact_and_reset_deletes_them_all() {
    let f = fixture().await;
    let (_, tver, dog) = seed_facts(&f).await;
    let id = dog.id.to_string();
    let (code, out, _) = exec(&f, &["facts", "forget", "101", &id], None).await;
    assert_eq!(code, ExitCode::Ok, "{out}");
    assert!(out.contains("forgot fact"), "{out}");
    let current = f.facts.current(UserId::new(101), 10).await.unwrap();
    assert_eq!(current, std::slice::from_ref(&tver));
    let (code, _, err) = exec(&f, &["facts", "forget", "101", &id], None).await;
    assert_eq!(code, ExitCode::NotFound, "a second forget finds nothing");
    assert!(err.contains("has no fact"), "{err}");
    let (code, _, err) = exec(&f, &["facts", "forget", "102", &tver.id.to_string()], None).await;
    assert_eq!(
        code,
        ExitCode::NotFound,
        "another user's fact is not theirs to forget: {err}"
    );
    let bad = AdminCli::try_parse_from(["profile_admin", "facts", "forget", "101", "not-a-uuid"]);
    assert!(bad.is_err(), "a malformed id is a usage error");
    let (code, out, _) = exec(&f, &["reset", "101", "--yes"], None).await;
    assert_eq!(code, ExitCode::Ok);
    assert!(out.contains("2 events and 2 facts deleted"), "{out}");
    assert!(f.facts.all(UserId::new(101)).await.unwrap().is_empty());
}

#[tokio::test]
async fn reset_waits_for_the_reply_in_flight_and_gives_up_with_exit_6_if_it_never_ends() {
    let f = fixture().await;
    let user = UserId::new(101);
    let reply = f
        .leases
        .acquire(
            user.get(),
            LeaseScope::Replies,
            f.clock.now(),
            time::Duration::minutes(5),
        )
        .await
        .unwrap()
        .unwrap();
    let (code, _, err) = exec(&f, &["reset", "101", "--yes"], None).await;
    assert_eq!(code, ExitCode::Busy, "{err}");
    assert!(err.contains("being written"), "{err}");
    assert!(err.contains("nothing was reset"), "{err}");
    assert_eq!(f.memory.all(user).len(), 2, "nothing touched");

    // Once the reply is done, a waiting reset goes through.
    let leases = f.leases.clone();
    let done = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        leases.release(&reply).await.unwrap();
    });
    let (code, out, err) = exec(&f, &["reset", "101", "--yes"], None).await;
    done.await.unwrap();
    assert_eq!(code, ExitCode::Ok, "{err}");
    assert!(out.contains("2 events"), "{out}");
    assert!(f.memory.all(user).is_empty());
}

#[tokio::test]
async fn a_group_conversations_memory_is_reached_by_its_negative_id() {
    let f = fixture().await;
    let (code, out, err) = exec(&f, &["group-id", "-1001234567890", "--topic", "7"], None).await;
    assert_eq!(code, ExitCode::Ok, "{err}");
    let topic: i64 = out.trim().parse().unwrap();
    assert_eq!(topic, UserId::group(-1_001_234_567_890, Some(7)).get());
    let (code, _, err) = exec(&f, &["group-id", "42"], None).await;
    assert_eq!(code, ExitCode::Usage);
    assert!(err.contains("negative"), "{err}");

    let group = UserId::group(-1_001_234_567_890, None);
    f.memory
        .append(&[UserMemoryEvent::user(
            group,
            "Анна: кто купит торт?",
            Source::Text,
            f.clock.now(),
        )])
        .await
        .unwrap();
    f.profiles.get_or_create(group).await.unwrap();
    let (code, out, err) = exec(&f, &["show", "-1001234567890"], None).await;
    assert_eq!(code, ExitCode::Ok, "{err}");
    assert!(out.contains("кто купит торт"), "{out}");
    assert!(out.contains("групповом чате"), "the group persona: {out}");
    let (code, out, _) = exec(&f, &["reset", "-1001234567890", "--yes"], None).await;
    assert_eq!(code, ExitCode::Ok);
    assert!(out.contains("1 events"), "{out}");
    assert!(f.memory.all(group).is_empty());
}

#[test]
fn a_reset_waits_thirty_seconds_for_a_reply_in_flight_as_the_docs_say() {
    // docs/architecture.md and docs/operations/admin.md: up to 30 s, then exit 6.
    assert_eq!(
        butler_presentation::admin::RESET_WAIT,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(ExitCode::Busy as i32, 6);
}
