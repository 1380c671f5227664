//! Fault injection against a real MongoDB-wire server: `failCommand` makes inserts, reads,
//! updates and deletes fail (with an error code or a dropped connection). The repositories
//! must report typed, retryable `Unavailable` errors, and once the fault is lifted every
//! stored document is still there exactly once. A fact save interrupted between any two of
//! its steps is never seen half done, and a later save repairs it.
//!
//! The fail point is server-wide, so these tests take turns (`FAULTS`), and each scopes its
//! fail point to its own client's `appName`, so other tests on the same server never see it.

use std::time::Duration;

use butler_domain::ports::{
    ConversationLeases, FactRepository, InboxError, InboxUpdate, LeaseError, MemoryStoreError,
    ProfileStoreError, Stored, UpdateInbox, UserMemoryRepository, UserProfileRepository,
};
use butler_domain::{FactKind, MemoryFact, Source, UserId, UserMemoryEvent};
use butler_infrastructure::mongo::{MongoOptions, MongoStore};
use butler_testkit::services::mongo::{shared_mongo, unique_database_name, FailCommand, FailWith};
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

static FAULTS: Mutex<()> = Mutex::const_new(());

struct Faulty {
    store: MongoStore,
    admin: Client,
    app_name: String,
    _turn: MutexGuard<'static, ()>,
}

impl Faulty {
    async fn new() -> Self {
        let turn = FAULTS.lock().await;
        let server = shared_mongo().await.unwrap_or_else(|e| panic!("{e}"));
        let app_name = unique_database_name("faulty");
        let store = MongoStore::connect(
            server.uri(),
            MongoOptions {
                database: Some(app_name.clone()),
                app_name: app_name.clone(),
                server_selection_timeout: Duration::from_secs(3),
                operation_timeout: Duration::from_secs(10),
                ..MongoOptions::default()
            },
        )
        .await
        .expect("connect the store under test");
        let admin = Client::with_uri_str(server.uri())
            .await
            .expect("connect the admin client");
        Self {
            store,
            admin,
            app_name,
            _turn: turn,
        }
    }

    async fn fail(&self, commands: &[&str], with: FailWith) {
        FailCommand {
            commands: commands.iter().map(|c| (*c).to_owned()).collect(),
            with,
            app_name: self.app_name.clone(),
        }
        .enable(&self.admin)
        .await
        .expect("enable failCommand (needs --enable-test-commands)");
    }

    /// Lets the next `skip` of `commands` through, then fails every later one.
    async fn fail_after(&self, commands: &[&str], skip: u32, with: FailWith) {
        FailCommand {
            commands: commands.iter().map(|c| (*c).to_owned()).collect(),
            with,
            app_name: self.app_name.clone(),
        }
        .enable_after(&self.admin, skip)
        .await
        .expect("enable failCommand (needs --enable-test-commands)");
    }

    async fn heal(&self) {
        FailCommand::clear(&self.admin)
            .await
            .expect("clear failCommand");
    }
}

fn events(user: UserId, from: i64, n: i64) -> Vec<UserMemoryEvent> {
    let base = time::macros::datetime!(2026-11-25 12:00 UTC);
    (0..n)
        .map(|i| {
            UserMemoryEvent::user(
                user,
                format!("сообщение {i}"),
                Source::Text,
                base + time::Duration::milliseconds(from + i),
            )
        })
        .collect()
}

/// Retries `op` while it fails as retryable, as a caller would: after a "shutting down" error
/// the driver marks the server unknown until its next heartbeat, so recovery takes seconds.
async fn retry<T, E, F, Fut>(mut op: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = std::time::Instant::now();
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                eprintln!("retrying after {e:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("no recovery within 30 s: {e:?}"),
        }
    }
}

fn assert_memory_unavailable(result: Result<impl std::fmt::Debug, MemoryStoreError>, op: &str) {
    match result {
        Err(e @ MemoryStoreError::Unavailable { operation, .. }) => {
            assert_eq!(operation, op);
            assert!(e.is_retryable());
            assert!(e.to_string().contains("user_memory"), "{e}");
        }
        other => panic!("{op}: expected Unavailable, got {other:?}"),
    }
}

fn assert_profile_unavailable(result: Result<impl std::fmt::Debug, ProfileStoreError>, op: &str) {
    match result {
        Err(e @ ProfileStoreError::Unavailable { operation, .. }) => {
            assert_eq!(operation, op);
            assert!(e.is_retryable());
            assert!(e.to_string().contains("user_profiles"), "{e}");
        }
        other => panic!("{op}: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn failing_inserts_are_unavailable_and_a_retried_append_stores_each_event_once() {
    let f = Faulty::new().await;
    let (memory, profiles) = (f.store.memory(), f.store.profiles());
    let user = UserId::new(1);
    let all = events(user, 0, 12);
    memory.append(&all[..5]).await.unwrap();

    // 91 = ShutdownInProgress: a primary stepping down, the usual transient write failure.
    f.fail(&["insert"], FailWith::ErrorCode(91)).await;
    assert_memory_unavailable(memory.append(&all).await, "append");
    assert_profile_unavailable(profiles.get_or_create(user).await, "get_or_create");
    f.heal().await;

    retry(|| memory.append(&all)).await;
    assert_eq!(memory.count(user).await.unwrap(), 12);
    assert_eq!(memory.recent(user, 100, None).await.unwrap(), all);
    assert_eq!(profiles.get_or_create(user).await.unwrap().version, 1);
}

#[tokio::test]
async fn a_dropped_connection_on_insert_loses_and_duplicates_nothing() {
    let f = Faulty::new().await;
    let memory = f.store.memory();
    let user = UserId::new(2);
    let all = events(user, 0, 8);
    memory.append(&all[..3]).await.unwrap();

    f.fail(&["insert"], FailWith::CloseConnection).await;
    assert_memory_unavailable(memory.append(&all).await, "append");
    f.heal().await;

    memory.append(&all).await.unwrap();
    assert_eq!(memory.recent(user, 100, None).await.unwrap(), all);
}

#[tokio::test]
async fn failing_reads_are_unavailable_and_leave_the_data_intact() {
    let f = Faulty::new().await;
    let (memory, profiles) = (f.store.memory(), f.store.profiles());
    let user = UserId::new(3);
    let all = events(user, 0, 6);
    memory.append(&all).await.unwrap();
    let profile = profiles.get_or_create(user).await.unwrap();

    f.fail(&["find", "aggregate"], FailWith::CloseConnection)
        .await;
    assert_memory_unavailable(memory.recent(user, 10, None).await, "recent");
    assert_memory_unavailable(memory.users_over(1, 10).await, "users_over");
    assert_profile_unavailable(profiles.get(user).await, "get");
    f.heal().await;

    assert_eq!(memory.recent(user, 10, None).await.unwrap(), all);
    assert_eq!(profiles.get(user).await.unwrap(), Some(profile));
}

#[tokio::test]
async fn failing_updates_change_nothing_and_the_same_save_succeeds_afterwards() {
    let f = Faulty::new().await;
    let profiles = f.store.profiles();
    let user = UserId::new(4);
    let stored = profiles.get_or_create(user).await.unwrap();
    let mut changed = stored.clone();
    changed.memory_summary = Some("Любит чай с бергамотом.".to_owned());

    // 89 = NetworkTimeout: retryable, without marking the server unhealthy.
    f.fail(&["update", "findAndModify"], FailWith::ErrorCode(89))
        .await;
    assert_profile_unavailable(profiles.save(&changed).await, "save");
    assert_profile_unavailable(profiles.reset(user).await, "reset");
    f.heal().await;

    assert_eq!(profiles.get(user).await.unwrap(), Some(stored));
    let saved = profiles.save(&changed).await.unwrap();
    assert_eq!(saved.version, 2);
    assert_eq!(profiles.get(user).await.unwrap(), Some(saved));
}

#[tokio::test]
async fn failing_deletes_remove_nothing_until_the_fault_is_lifted() {
    let f = Faulty::new().await;
    let memory = f.store.memory();
    let user = UserId::new(5);
    let all = events(user, 0, 10);
    memory.append(&all).await.unwrap();

    f.fail(&["delete"], FailWith::ErrorCode(89)).await;
    assert_memory_unavailable(
        memory.delete_up_to(user, all[4].cursor()).await,
        "delete_up_to",
    );
    assert_memory_unavailable(memory.delete_all(user).await, "delete_all");
    f.heal().await;

    assert_eq!(memory.count(user).await.unwrap(), 10);
    assert_eq!(memory.delete_up_to(user, all[4].cursor()).await.unwrap(), 5);
    assert_eq!(memory.recent(user, 100, None).await.unwrap(), all[5..]);
}

fn assert_inbox_unavailable(result: Result<impl std::fmt::Debug, InboxError>, op: &str) {
    match result {
        Err(e @ InboxError::Unavailable { operation, .. }) => {
            assert_eq!(operation, op);
            assert!(e.is_retryable());
            // The inbox's own collection, or the leases its claims take.
            assert!(
                e.to_string().contains("inbox_") || e.to_string().contains("conversation_leases"),
                "{e}"
            );
        }
        other => panic!("{op}: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn inbox_faults_are_unavailable_and_nothing_is_lost_or_claimed_twice() {
    let f = Faulty::new().await;
    let inbox = f.store.inbox();
    let now = time::macros::datetime!(2026-11-25 12:00 UTC);
    let lease = time::Duration::seconds(30);
    let update = |id: i64| InboxUpdate {
        update_id: id,
        conversation: 42,
        payload: format!(r#"{{"update_id":{id}}}"#),
        received_at: now,
    };
    assert_eq!(inbox.store(&update(1)).await.unwrap(), Stored::New);

    f.fail(&["insert"], FailWith::ErrorCode(91)).await;
    assert_inbox_unavailable(inbox.store(&update(2)).await, "store");
    f.heal().await;
    f.fail(&["find", "aggregate"], FailWith::CloseConnection)
        .await;
    assert_inbox_unavailable(inbox.claim(now, lease).await, "claim");
    f.heal().await;

    let second = update(2);
    assert_eq!(retry(|| inbox.store(&second)).await, Stored::New);
    let claimed = retry(|| inbox.claim(now, lease))
        .await
        .expect("update 1 is pending");
    assert_eq!((claimed.update.update_id, claimed.attempts), (1, 1));

    f.fail(&["update", "delete"], FailWith::ErrorCode(89)).await;
    assert_inbox_unavailable(inbox.complete(1, &claimed.lease, now).await, "complete");
    match inbox.renew(&claimed.lease, now, lease).await {
        Err(e @ LeaseError::Unavailable { operation, .. }) => {
            assert_eq!(operation, "renew");
            assert!(e.is_retryable());
            assert!(e.to_string().contains("conversation_leases"), "{e}");
        }
        other => panic!("renew: expected Unavailable, got {other:?}"),
    }
    f.heal().await;

    assert_eq!(inbox.backlog().await.unwrap(), 2);
    assert!(
        inbox.claim(now, lease).await.unwrap().is_none(),
        "key 42 is held"
    );
    inbox.complete(1, &claimed.lease, now).await.unwrap();
    let next = inbox.claim(now, lease).await.unwrap().expect("update 2");
    assert_eq!((next.update.update_id, next.attempts), (2, 1));
}

fn fact(user: UserId, key: &str, text: &str, ms: i64) -> MemoryFact {
    let at = time::macros::datetime!(2026-11-25 12:00 UTC) + time::Duration::milliseconds(ms);
    MemoryFact::new(user, key, FactKind::Other, text, vec![], at).unwrap()
}

/// The one fact every reader shows as current for `user`'s key `dog`, after checking that
/// `current`, `search` and `all` agree on it and `all` names no fact it does not list.
async fn the_current_dog(facts: &impl FactRepository, user: UserId) -> Uuid {
    let current: Vec<Uuid> = facts
        .current(user, 10)
        .await
        .unwrap()
        .iter()
        .filter(|f| f.key.as_str() == "dog")
        .map(|f| f.id)
        .collect();
    assert_eq!(current.len(), 1, "one current fact of the key: {current:?}");
    let found: Vec<Uuid> = facts
        .search(user, "как зовут собаку?", 10)
        .await
        .unwrap()
        .iter()
        .filter(|m| m.fact.key.as_str() == "dog")
        .map(|m| m.fact.id)
        .collect();
    assert_eq!(
        found, current,
        "search finds the current fact of the key only"
    );
    let all = facts.all(user).await.unwrap();
    let listed_current: Vec<Uuid> = all
        .iter()
        .filter(|f| f.key.as_str() == "dog" && f.superseded_by.is_none())
        .map(|f| f.id)
        .collect();
    assert_eq!(listed_current, current, "all lists the same current fact");
    for f in &all {
        if let Some(by) = f.superseded_by {
            assert!(
                all.iter().any(|g| g.id == by),
                "{f:?} names a fact all does not list"
            );
        }
    }
    current[0]
}

/// Pending or handed-over documents of `user` left in storage.
async fn unsettled_documents(f: &Faulty, user: UserId) -> u64 {
    f.admin
        .database(&f.app_name)
        .collection::<Document>("user_facts")
        .count_documents(doc! {
            "user_id": user.get(),
            "$or": [ { "current": false, "superseded_by": Bson::Null }, { "handover": true } ],
        })
        .await
        .unwrap()
}

/// How the interrupted save is followed up.
#[derive(Debug, Clone, Copy)]
enum FollowUp {
    /// The caller retries the same save.
    Retry,
    /// A newer fact of the same key is saved.
    NewerFactOfTheKey,
    /// A fact of another key of the same user is saved.
    FactOfAnotherKey,
}

#[tokio::test]
async fn a_fact_save_interrupted_between_any_two_steps_is_never_seen_half_done_and_is_repaired() {
    let f = Faulty::new().await;
    let facts = f.store.facts();
    let mut next_user = 600;
    for follow_up in [
        FollowUp::Retry,
        FollowUp::NewerFactOfTheKey,
        FollowUp::FactOfAnotherKey,
    ] {
        let mut interrupted_at = Vec::new();
        for skip in 0..10 {
            next_user += 1;
            let user = UserId::new(next_user);
            let old = fact(user, "dog", "Собаку зовут Рекс", 0);
            facts.save(std::slice::from_ref(&old)).await.unwrap();
            let new = fact(user, "dog", "Собаку зовут Бобик", 10);

            // The save stops after its first `skip` updates (hand over, promote, release).
            f.fail_after(&["update"], skip, FailWith::ErrorCode(89))
                .await;
            let result = facts.save(std::slice::from_ref(&new)).await;
            f.heal().await;
            if result.is_ok() {
                break;
            }
            interrupted_at.push(skip);
            let shown = the_current_dog(&facts, user).await;
            assert!(
                shown == old.id || shown == new.id,
                "{follow_up:?} after {skip} updates: the old fact stands or the new one is current"
            );

            let expected = match follow_up {
                FollowUp::Retry => {
                    facts.save(std::slice::from_ref(&new)).await.unwrap();
                    new.id
                }
                FollowUp::NewerFactOfTheKey => {
                    let newer = fact(user, "dog", "Собаку зовут Шарик", 20);
                    facts.save(std::slice::from_ref(&newer)).await.unwrap();
                    newer.id
                }
                FollowUp::FactOfAnotherKey => {
                    let cat = fact(user, "cat", "Кошку зовут Мурка", 30);
                    facts.save(std::slice::from_ref(&cat)).await.unwrap();
                    new.id
                }
            };
            assert_eq!(
                the_current_dog(&facts, user).await,
                expected,
                "{follow_up:?} after {skip} updates"
            );
            assert_eq!(
                unsettled_documents(&f, user).await,
                0,
                "{follow_up:?} after {skip} updates: nothing left pending or handed over"
            );
            let all = facts.all(user).await.unwrap();
            let old_now = all.iter().find(|g| g.id == old.id).unwrap();
            assert_eq!(old_now.superseded_by, Some(new.id), "history kept");
        }
        eprintln!("{follow_up:?}: interrupted after {interrupted_at:?} updates");
        assert!(
            interrupted_at.len() >= 2,
            "{follow_up:?}: the save was interrupted after its hand-over and after its promotion: {interrupted_at:?}"
        );
    }
}

#[tokio::test]
async fn every_operation_gives_up_at_the_operation_timeout_when_the_server_stalls() {
    let _turn = FAULTS.lock().await;
    let server = shared_mongo().await.unwrap_or_else(|e| panic!("{e}"));
    let app_name = unique_database_name("stalled");
    let limit = Duration::from_millis(300);
    let store = MongoStore::connect(
        server.uri(),
        MongoOptions {
            database: Some(app_name.clone()),
            app_name: app_name.clone(),
            operation_timeout: limit,
            ..MongoOptions::default()
        },
    )
    .await
    .expect("connect the store under test");
    let admin = Client::with_uri_str(server.uri())
        .await
        .expect("connect the admin client");
    // The server holds every read and insert far longer than the limit.
    let stall = Duration::from_secs(5);
    FailCommand {
        commands: vec!["find".to_owned(), "insert".to_owned()],
        with: FailWith::Block(stall),
        app_name,
    }
    .enable(&admin)
    .await
    .expect("enable failCommand with blockConnection");

    let user = UserId::new(31);
    let started = std::time::Instant::now();
    let read = store.memory().recent(user, 10, None).await;
    assert_memory_unavailable(read, "recent");
    let stored = store
        .inbox()
        .store(&InboxUpdate {
            update_id: 1,
            conversation: 31,
            payload: "{}".to_owned(),
            received_at: time::OffsetDateTime::now_utc(),
        })
        .await;
    assert_inbox_unavailable(stored, "store");
    assert!(
        started.elapsed() < stall,
        "each call gave up at its own deadline ({limit:?}), not the server's: {:?}",
        started.elapsed()
    );
    FailCommand::clear(&admin).await.expect("clear failCommand");
}
