//! The storage contract suite against a real MongoDB-wire server (SecantusDB started by the
//! testkit, or `BUTLER_TEST_MONGODB_URI`), one database per test, plus what only MongoDB has:
//! the index set with its TTL, the stored BSON types, and start-up errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use butler_infrastructure::mongo::{
    ensure_indexes, MongoConnectError, MongoOptions, MongoStore, DEFAULT_INBOX_RETENTION,
    FACTS_COLLECTION, FACTS_TTL_INDEX, INBOX_COLLECTION, INBOX_TTL_INDEX, LEASES_COLLECTION,
    MEMORY_COLLECTION, MEMORY_TTL_INDEX, PROFILES_COLLECTION,
};
use butler_testkit::contract::Storage;
use butler_testkit::services::mongo::{
    shared_mongo, unique_database_name, STAND_IN_OPERATION_TIMEOUT,
};

async fn connect(prefix: &str, options: MongoOptions) -> MongoStore {
    let server = shared_mongo().await.unwrap_or_else(|e| panic!("{e}"));
    let options = MongoOptions {
        database: Some(unique_database_name(prefix)),
        operation_timeout: STAND_IN_OPERATION_TIMEOUT,
        ..options
    };
    MongoStore::connect(server.uri(), options)
        .await
        .expect("connect to the test MongoDB")
}

async fn mongo() -> Storage {
    let store = connect("contract", MongoOptions::default()).await;
    Storage::new(
        Arc::new(store.profiles()),
        Arc::new(store.memory()),
        Arc::new(store.facts()),
        Arc::new(store.inbox()),
    )
    .keeping(store)
}

butler_testkit::storage_contract_suite!(mongo());

/// Backend-specific checks (`cfg(test)` marks the helpers here as test code too).
#[cfg(test)]
mod schema {
    use super::*;
    use butler_domain::ports::{UserMemoryRepository, UserProfileRepository};
    use butler_domain::{Source, UserId, UserMemoryEvent};
    use futures::TryStreamExt;
    use mongodb::bson::spec::BinarySubtype;
    use mongodb::bson::{doc, Bson, Document};
    use mongodb::IndexModel;

    async fn indexes(store: &MongoStore, collection: &str) -> Vec<IndexModel> {
        let mut list: Vec<IndexModel> = store
            .database()
            .collection::<Document>(collection)
            .list_indexes()
            .await
            .expect("list indexes")
            .try_collect()
            .await
            .expect("read the index list");
        list.sort_by_key(|m| m.options.as_ref().and_then(|o| o.name.clone()));
        list
    }

    fn find<'a>(list: &'a [IndexModel], name: &str) -> Option<&'a IndexModel> {
        list.iter().find(|m| {
            m.options
                .as_ref()
                .is_some_and(|o| o.name.as_deref() == Some(name))
        })
    }

    fn ttl_secs(list: &[IndexModel]) -> Option<u64> {
        ttl_of(list, MEMORY_TTL_INDEX)
    }

    fn ttl_of(list: &[IndexModel], name: &str) -> Option<u64> {
        find(list, name)
            .and_then(|m| m.options.as_ref())
            .and_then(|o| o.expire_after)
            .map(|d| d.as_secs())
    }

    #[tokio::test]
    async fn connecting_creates_the_unique_compound_and_ttl_indexes() {
        let store = connect("indexes", MongoOptions::default()).await;
        let profiles = indexes(&store, PROFILES_COLLECTION).await;
        let by_user = find(&profiles, "user_profiles_user_id").expect("user_id index");
        assert_eq!(by_user.keys, doc! { "user_id": 1 });
        assert_eq!(by_user.options.as_ref().unwrap().unique, Some(true));

        let memory = indexes(&store, MEMORY_COLLECTION).await;
        let compound = find(&memory, "user_memory_user_created").expect("compound index");
        assert_eq!(compound.keys, doc! { "user_id": 1, "created_at": -1 });
        let event_id = find(&memory, "user_memory_event_id").expect("event_id index");
        assert_eq!(event_id.keys, doc! { "event_id": 1 });
        assert_eq!(event_id.options.as_ref().unwrap().unique, Some(true));
        let ttl = find(&memory, MEMORY_TTL_INDEX).expect("ttl index");
        assert_eq!(ttl.keys, doc! { "created_at": 1 });
        assert_eq!(ttl_secs(&memory), Some(90 * 24 * 3600));
    }

    #[tokio::test]
    async fn connecting_creates_the_fact_indexes_with_one_current_fact_per_key_and_a_ttl() {
        let store = connect("fact_indexes", MongoOptions::default()).await;
        let facts = indexes(&store, FACTS_COLLECTION).await;
        let by_id = find(&facts, "user_facts_fact_id").expect("fact_id index");
        assert_eq!(by_id.keys, doc! { "fact_id": 1 });
        assert_eq!(by_id.options.as_ref().unwrap().unique, Some(true));
        let by_key = find(&facts, "user_facts_user_key").expect("user/key index");
        assert_eq!(by_key.keys, doc! { "user_id": 1, "key": 1 });
        let options = by_key.options.as_ref().unwrap();
        assert_eq!(options.unique, Some(true));
        assert_eq!(
            options.partial_filter_expression,
            Some(doc! { "current": true })
        );
        let recent = find(&facts, "user_facts_user_created").expect("user/created index");
        assert_eq!(recent.keys, doc! { "user_id": 1, "created_at": -1 });
        let terms = find(&facts, "user_facts_user_terms").expect("search index");
        assert_eq!(terms.keys, doc! { "user_id": 1, "terms": 1 });
        let ttl = find(&facts, FACTS_TTL_INDEX).expect("ttl index");
        assert_eq!(ttl.keys, doc! { "created_at": 1 });
        assert_eq!(ttl_of(&facts, FACTS_TTL_INDEX), Some(90 * 24 * 3600));

        ensure_indexes(
            store.database(),
            Some(Duration::from_secs(3600)),
            DEFAULT_INBOX_RETENTION,
        )
        .await
        .unwrap();
        let facts = indexes(&store, FACTS_COLLECTION).await;
        assert_eq!(ttl_of(&facts, FACTS_TTL_INDEX), Some(3600));
        ensure_indexes(store.database(), None, DEFAULT_INBOX_RETENTION)
            .await
            .unwrap();
        let facts = indexes(&store, FACTS_COLLECTION).await;
        assert!(find(&facts, FACTS_TTL_INDEX).is_none(), "{facts:?}");
        assert!(find(&facts, "user_facts_user_key").is_some());
    }

    #[tokio::test]
    async fn the_server_refuses_a_second_current_fact_of_one_key() {
        let store = connect("fact_unique", MongoOptions::default()).await;
        let collection = store.database().collection::<Document>(FACTS_COLLECTION);
        let current =
            |id: i32| doc! { "fact_id": id, "user_id": 1_i64, "key": "home_city", "current": true };
        collection.insert_one(current(1)).await.unwrap();
        let second = collection.insert_one(current(2)).await;
        assert!(second.is_err(), "a second current fact was accepted");
        let mut history = current(3);
        history.insert("current", false);
        collection.insert_one(history.clone()).await.unwrap();
        history.insert("fact_id", 4);
        collection.insert_one(history).await.unwrap();
    }

    #[tokio::test]
    async fn facts_store_uuids_as_binary_dates_as_bson_dates_and_their_search_terms() {
        use butler_domain::ports::FactRepository;
        use butler_domain::{FactKind, MemoryFact};
        let store = connect("fact_bson", MongoOptions::default()).await;
        let source = uuid::Uuid::new_v4();
        let fact = MemoryFact::new(
            UserId::new(77),
            "home_city",
            FactKind::Place,
            "Мы живём в Твери",
            vec![source],
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        store
            .facts()
            .save(std::slice::from_ref(&fact))
            .await
            .unwrap();
        let raw = store
            .database()
            .collection::<Document>(FACTS_COLLECTION)
            .find_one(doc! {})
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(raw.get("fact_id"), Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid)
        );
        assert!(matches!(raw.get("created_at"), Some(Bson::DateTime(_))));
        assert_eq!(raw.get_str("kind").unwrap(), "place");
        assert!(raw.get_bool("current").unwrap());
        assert!(matches!(raw.get("superseded_by"), Some(Bson::Null)));
        let terms: Vec<&str> = raw
            .get_array("terms")
            .unwrap()
            .iter()
            .filter_map(Bson::as_str)
            .collect();
        assert_eq!(terms, ["жить", "тверь", "home", "citi"]);
        assert_eq!(raw.get_i64("terms_version").unwrap(), 2);
        match raw.get_array("source_events").unwrap().as_slice() {
            [Bson::Binary(b)] => assert_eq!(b.bytes, source.as_bytes()),
            other => panic!("source_events stored as {other:?}"),
        }
    }

    #[tokio::test]
    async fn ensuring_indexes_again_is_a_no_op_and_the_ttl_follows_configuration() {
        let store = connect("ttl", MongoOptions::default()).await;
        let db = store.database();
        let before = indexes(&store, MEMORY_COLLECTION).await;
        ensure_indexes(
            db,
            MongoOptions::default().memory_ttl,
            DEFAULT_INBOX_RETENTION,
        )
        .await
        .unwrap();
        assert_eq!(indexes(&store, MEMORY_COLLECTION).await.len(), before.len());

        ensure_indexes(db, Some(Duration::from_secs(3600)), DEFAULT_INBOX_RETENTION)
            .await
            .unwrap();
        assert_eq!(
            ttl_secs(&indexes(&store, MEMORY_COLLECTION).await),
            Some(3600)
        );

        ensure_indexes(db, None, DEFAULT_INBOX_RETENTION)
            .await
            .unwrap();
        let without = indexes(&store, MEMORY_COLLECTION).await;
        assert!(find(&without, MEMORY_TTL_INDEX).is_none(), "{without:?}");
        assert!(find(&without, "user_memory_event_id").is_some());

        ensure_indexes(db, None, DEFAULT_INBOX_RETENTION)
            .await
            .unwrap();
        ensure_indexes(db, Some(Duration::from_secs(7200)), DEFAULT_INBOX_RETENTION)
            .await
            .unwrap();
        assert_eq!(
            ttl_secs(&indexes(&store, MEMORY_COLLECTION).await),
            Some(7200)
        );
    }

    #[tokio::test]
    async fn events_store_uuids_as_binary_subtype_4_and_times_as_bson_dates() {
        let store = connect("bson", MongoOptions::default()).await;
        let user = UserId::new(77);
        let event = UserMemoryEvent::user(
            user,
            "привет",
            Source::Voice,
            time::OffsetDateTime::now_utc(),
        );
        store
            .memory()
            .append(std::slice::from_ref(&event))
            .await
            .unwrap();
        store.profiles().get_or_create(user).await.unwrap();
        let raw = store
            .database()
            .collection::<Document>(MEMORY_COLLECTION)
            .find_one(doc! {})
            .await
            .unwrap()
            .unwrap();
        match raw.get("event_id") {
            Some(Bson::Binary(b)) => {
                assert_eq!(b.subtype, BinarySubtype::Uuid);
                assert_eq!(b.bytes, event.event_id.as_bytes());
            }
            other => panic!("event_id stored as {other:?}"),
        }
        assert!(matches!(raw.get("created_at"), Some(Bson::DateTime(_))));
        assert_eq!(raw.get_str("role").unwrap(), "user");
        assert_eq!(raw.get_str("source").unwrap(), "voice");
        let profile = store
            .database()
            .collection::<Document>(PROFILES_COLLECTION)
            .find_one(doc! {})
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(profile.get("updated_at"), Some(Bson::DateTime(_))));
    }

    #[tokio::test]
    async fn a_server_that_is_down_fails_fast_naming_the_masked_uri() {
        let port = butler_testkit::services::free_port();
        let uri = format!("mongodb://butler:hunter2@127.0.0.1:{port}/butler");
        let options = MongoOptions {
            server_selection_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            ..MongoOptions::default()
        };
        let start = Instant::now();
        let err = MongoStore::connect(&uri, options).await.unwrap_err();
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
        assert!(
            matches!(err, MongoConnectError::Unreachable { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("mongodb://butler:***@127.0.0.1:{port}/butler")),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{err:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn a_malformed_uri_is_reported_without_its_password() {
        let err = MongoStore::connect(
            "mongodb://butler:hunter2@host:notaport/",
            MongoOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, MongoConnectError::InvalidUri { .. }),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    }

    #[tokio::test]
    async fn connecting_creates_the_inbox_indexes_and_its_ttl_follows_the_retention() {
        let store = connect("inbox_indexes", MongoOptions::default()).await;
        let updates = indexes(&store, INBOX_COLLECTION).await;
        let pending = find(&updates, "inbox_updates_pending").expect("pending index");
        assert_eq!(pending.keys, doc! { "done_at": 1, "key": 1, "_id": 1 });
        let ttl = find(&updates, INBOX_TTL_INDEX).expect("ttl index");
        assert_eq!(ttl.keys, doc! { "done_at": 1 });
        assert_eq!(ttl_of(&updates, INBOX_TTL_INDEX), Some(2 * 24 * 3600));

        ensure_indexes(store.database(), None, Duration::from_secs(600))
            .await
            .unwrap();
        let updates = indexes(&store, INBOX_COLLECTION).await;
        assert_eq!(ttl_of(&updates, INBOX_TTL_INDEX), Some(600));
        assert!(find(&updates, "inbox_updates_pending").is_some());
    }

    #[tokio::test]
    async fn inbox_documents_are_keyed_by_update_id_with_bson_dates_and_done_at_only_once_done() {
        use butler_domain::ports::{InboxUpdate, UpdateInbox};
        let store = connect("inbox_bson", MongoOptions::default()).await;
        let inbox = store.inbox();
        let now = time::macros::datetime!(2026-11-25 12:00:00.517 UTC);
        let update = |id| InboxUpdate {
            update_id: id,
            conversation: 77,
            payload: "{}".to_owned(),
            received_at: now,
        };
        inbox.store(&update(1)).await.unwrap();
        inbox.store(&update(2)).await.unwrap();
        let claimed = inbox
            .claim(now, time::Duration::seconds(30))
            .await
            .unwrap()
            .unwrap();
        let leases = store.database().collection::<Document>(LEASES_COLLECTION);
        let lease = leases.find_one(doc! {}).await.unwrap().unwrap();
        assert_eq!(lease.get_str("_id").unwrap(), "reply:77");
        assert_eq!(lease.get_i64("conversation").unwrap(), 77);
        assert_eq!(lease.get_str("scope").unwrap(), "reply");
        assert!(
            matches!(lease.get("holder"), Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid)
        );
        assert!(
            matches!(lease.get("token"), Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid)
        );
        assert!(matches!(lease.get("until"), Some(Bson::DateTime(_))));
        inbox.complete(1, &claimed.lease, now).await.unwrap();
        assert_eq!(leases.count_documents(doc! {}).await.unwrap(), 0);

        let updates = store.database().collection::<Document>(INBOX_COLLECTION);
        let done = updates
            .find_one(doc! { "_id": 1_i64 })
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(done.get("_id"), Some(Bson::Int64(1))));
        assert!(matches!(done.get("received_at"), Some(Bson::DateTime(_))));
        assert!(matches!(done.get("done_at"), Some(Bson::DateTime(_))));
        let pending = updates
            .find_one(doc! { "_id": 2_i64 })
            .await
            .unwrap()
            .unwrap();
        assert!(pending.get("done_at").is_none(), "{pending:?}");
        assert!(matches!(pending.get("attempts"), Some(Bson::Int64(0))));
    }
}

/// The inbox as two bot processes see it: two clients with their own connection pools, each
/// call going to the next of them in turn.
mod two_clients {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use butler_domain::ports::{
        Claimed, ConversationLeases, InboxError, InboxUpdate, Lease, LeaseError, LeaseScope,
        Stored, UpdateInbox,
    };
    use butler_infrastructure::mongo::MongoInbox;
    use time::OffsetDateTime;

    use super::*;

    struct RoundRobin {
        next: AtomicUsize,
        inboxes: [MongoInbox; 2],
    }

    impl RoundRobin {
        fn pick(&self) -> &MongoInbox {
            &self.inboxes[self.next.fetch_add(1, Ordering::Relaxed) % 2]
        }
    }

    #[async_trait]
    impl ConversationLeases for RoundRobin {
        async fn acquire(
            &self,
            conversation: i64,
            scope: LeaseScope,
            now: OffsetDateTime,
            lease_for: time::Duration,
        ) -> Result<Option<Lease>, LeaseError> {
            self.pick()
                .acquire(conversation, scope, now, lease_for)
                .await
        }
        async fn take_over(
            &self,
            conversation: i64,
            scope: LeaseScope,
            now: OffsetDateTime,
            lease_for: time::Duration,
        ) -> Result<Lease, LeaseError> {
            self.pick()
                .take_over(conversation, scope, now, lease_for)
                .await
        }
        async fn renew(
            &self,
            lease: &Lease,
            now: OffsetDateTime,
            lease_for: time::Duration,
        ) -> Result<Option<Lease>, LeaseError> {
            self.pick().renew(lease, now, lease_for).await
        }
        async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
            self.pick().release(lease).await
        }
    }

    #[async_trait]
    impl UpdateInbox for RoundRobin {
        async fn store(&self, update: &InboxUpdate) -> Result<Stored, InboxError> {
            self.pick().store(update).await
        }
        async fn claim(
            &self,
            now: OffsetDateTime,
            lease_for: time::Duration,
        ) -> Result<Option<Claimed>, InboxError> {
            self.pick().claim(now, lease_for).await
        }
        async fn complete(
            &self,
            update_id: i64,
            lease: &Lease,
            now: OffsetDateTime,
        ) -> Result<(), InboxError> {
            self.pick().complete(update_id, lease, now).await
        }
        async fn backlog(&self) -> Result<u64, InboxError> {
            self.pick().backlog().await
        }
        async fn delete_done_before(&self, before: OffsetDateTime) -> Result<u64, InboxError> {
            self.pick().delete_done_before(before).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn claimers_on_two_clients_answer_every_update_once_and_each_key_in_order() {
        let first = connect("inbox_two_clients", MongoOptions::default()).await;
        let server = shared_mongo().await.unwrap();
        let second = MongoStore::connect(
            server.uri(),
            MongoOptions {
                database: Some(first.database().name().to_owned()),
                operation_timeout: STAND_IN_OPERATION_TIMEOUT,
                ..MongoOptions::default()
            },
        )
        .await
        .unwrap();
        let inbox = RoundRobin {
            next: AtomicUsize::new(0),
            inboxes: [first.inbox(), second.inbox()],
        };
        let storage = Storage::new(
            Arc::new(first.profiles()),
            Arc::new(first.memory()),
            Arc::new(first.facts()),
            Arc::new(inbox),
        )
        .keeping(first)
        .keeping(second);
        butler_testkit::contract::concurrent_claimers_answer_every_update_once_and_each_key_in_order(
            storage,
        )
        .await;
    }
}

/// Audit additions: what the MongoDB adapters promise beyond the shared contract.
mod promises {
    use butler_domain::ports::{InboxUpdate, UpdateInbox, UserMemoryRepository};
    use butler_domain::UserId;
    use futures::TryStreamExt;
    use mongodb::bson::spec::BinarySubtype;
    use mongodb::bson::{doc, Binary, Bson, Document};
    use mongodb::IndexModel;

    use super::*;

    async fn index_names(store: &MongoStore, collection: &str) -> Vec<(String, Document)> {
        let list: Vec<IndexModel> = store
            .database()
            .collection::<Document>(collection)
            .list_indexes()
            .await
            .expect("list indexes")
            .try_collect()
            .await
            .expect("read the index list");
        let mut names: Vec<(String, Document)> = list
            .into_iter()
            .map(|m| {
                let name = m.options.and_then(|o| o.name).unwrap_or_default();
                (name, m.keys)
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names
    }

    #[tokio::test]
    async fn connecting_creates_the_lease_index_a_claim_skips_held_conversations_by() {
        let store = connect("lease_indexes", MongoOptions::default()).await;
        let leases = index_names(&store, LEASES_COLLECTION).await;
        let scope_until = leases
            .iter()
            .find(|(name, _)| name == "conversation_leases_scope_until")
            .unwrap_or_else(|| panic!("no conversation_leases_scope_until in {leases:?}"));
        assert_eq!(scope_until.1, doc! { "scope": 1, "until": 1 });
    }

    #[tokio::test]
    async fn ensuring_indexes_from_two_processes_at_once_succeeds_for_both() {
        let store = connect("indexes_at_once", MongoOptions::default()).await;
        let server = shared_mongo().await.unwrap();
        let other = mongodb::Client::with_uri_str(server.uri())
            .await
            .expect("a second client");
        let other = other.database(store.database().name());
        // A fresh database, then a changed TTL: both runs drop and rebuild at once.
        for ttl in [
            Some(Duration::from_secs(3600)),
            None,
            Some(Duration::from_secs(60)),
        ] {
            let (a, b) = tokio::join!(
                ensure_indexes(store.database(), ttl, DEFAULT_INBOX_RETENTION),
                ensure_indexes(&other, ttl, DEFAULT_INBOX_RETENTION),
            );
            a.unwrap_or_else(|e| panic!("first run, ttl {ttl:?}: {e}"));
            b.unwrap_or_else(|e| panic!("second run, ttl {ttl:?}: {e}"));
        }
        let memory = index_names(&store, MEMORY_COLLECTION).await;
        assert!(
            memory.iter().any(|(name, _)| name == MEMORY_TTL_INDEX),
            "{memory:?}"
        );
        assert!(memory
            .iter()
            .any(|(name, _)| name == "user_memory_event_id"));
    }

    #[tokio::test]
    async fn an_answered_update_keeps_its_id_but_not_the_message_text() {
        let store = connect("inbox_payload", MongoOptions::default()).await;
        let inbox = store.inbox();
        let now = time::macros::datetime!(2026-11-25 12:00 UTC);
        let update = InboxUpdate {
            update_id: 7,
            conversation: 42,
            payload: r#"{"message":{"text":"мой пароль от почты"}}"#.to_owned(),
            received_at: now,
        };
        inbox.store(&update).await.unwrap();
        let claimed = inbox
            .claim(now, time::Duration::seconds(30))
            .await
            .unwrap()
            .expect("claimed");
        inbox.complete(7, &claimed.lease, now).await.unwrap();
        let done = store
            .database()
            .collection::<Document>(INBOX_COLLECTION)
            .find_one(doc! { "_id": 7_i64 })
            .await
            .unwrap()
            .expect("the done update is kept");
        assert!(
            !format!("{done:?}").contains("пароль"),
            "the text is gone once answered: {done:?}"
        );
        assert!(matches!(done.get("done_at"), Some(Bson::DateTime(_))));
        assert_eq!(
            inbox.store(&update).await.unwrap(),
            butler_domain::ports::Stored::Duplicate
        );
    }

    #[tokio::test]
    async fn a_corrupt_document_is_reported_by_its_field_never_by_its_text() {
        let store = connect("corrupt", MongoOptions::default()).await;
        let user = UserId::new(5);
        let secret = "секретный текст пользователя";
        store
            .database()
            .collection::<Document>(MEMORY_COLLECTION)
            .insert_one(doc! {
                "event_id": Binary { subtype: BinarySubtype::Uuid, bytes: uuid::Uuid::new_v4().as_bytes().to_vec() },
                "user_id": user.get(),
                "role": "wizard",
                "content": secret,
                "source": "text",
                "created_at": mongodb::bson::DateTime::now(),
                "tags": [],
            })
            .await
            .unwrap();
        let error = store
            .memory()
            .recent(user, 10, None)
            .await
            .expect_err("an unknown role cannot be read");
        assert!(
            matches!(
                error,
                butler_domain::ports::MemoryStoreError::Corrupt { .. }
            ),
            "{error:?}"
        );
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("user_memory.role"), "{shown}");
        assert!(!shown.contains("секрет"), "{shown}");
    }
}
