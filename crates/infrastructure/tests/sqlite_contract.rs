//! The storage contract suite against SQLite (a fresh database file per test), plus what only
//! SQLite has: migrations, pragmas and the indexes that mirror MongoDB's.

use std::sync::Arc;

use butler_infrastructure::sqlite::{
    SqliteOpenError, SqliteOptions, SqliteStore, Synchronous, SCHEMA_VERSION,
};
use butler_testkit::contract::Storage;

async fn sqlite() -> Storage {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(SqliteOptions::at(dir.path().join("butler.db")))
        .await
        .expect("open a fresh SQLite database");
    Storage::new(
        Arc::new(store.profiles()),
        Arc::new(store.memory()),
        Arc::new(store.facts()),
        Arc::new(store.inbox()),
    )
    .keeping(dir)
}

butler_testkit::storage_contract_suite!(sqlite());

/// Backend-specific checks (`cfg(test)` marks the helpers here as test code too).
#[cfg(test)]
mod schema {
    use super::*;
    use rusqlite::Connection;

    fn indexes(conn: &Connection, table: &str) -> Vec<(String, bool)> {
        let mut stmt = conn
            .prepare(&format!("PRAGMA index_list({table})"))
            .unwrap();
        let mut list: Vec<(String, bool)> = stmt
            .query_map([], |row| Ok((row.get("name")?, row.get("unique")?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        list.sort();
        list
    }

    fn columns_of(conn: &Connection, index: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("PRAGMA index_info({index})"))
            .unwrap();
        stmt.query_map([], |row| row.get("name"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn opening_creates_the_indexes_that_mirror_mongodb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        assert_eq!(
            indexes(&conn, "user_profiles"),
            vec![("user_profiles_user_id".to_owned(), true)]
        );
        assert_eq!(
            indexes(&conn, "user_memory"),
            vec![
                ("user_memory_event_id".to_owned(), true),
                ("user_memory_user_created".to_owned(), false),
            ]
        );
        assert_eq!(
            indexes(&conn, "user_facts"),
            vec![
                ("user_facts_created".to_owned(), false),
                ("user_facts_fact_id".to_owned(), true),
                ("user_facts_user_created".to_owned(), false),
                ("user_facts_user_key".to_owned(), true),
            ]
        );
        assert_eq!(columns_of(&conn, "user_facts_fact_id"), ["fact_id"]);
        assert_eq!(columns_of(&conn, "user_facts_user_key"), ["user_id", "key"]);
        assert_eq!(
            columns_of(&conn, "user_facts_user_created"),
            ["user_id", "created_at", "fact_id"]
        );
        assert_eq!(columns_of(&conn, "user_facts_created"), ["created_at"]);
        assert_eq!(columns_of(&conn, "user_profiles_user_id"), ["user_id"]);
        assert_eq!(columns_of(&conn, "user_memory_event_id"), ["event_id"]);
        assert_eq!(
            columns_of(&conn, "user_memory_user_created"),
            ["user_id", "created_at", "event_id"]
        );
    }

    #[test]
    fn the_bundled_sqlite_has_fts5_with_the_unicode61_and_trigram_tokenizers() {
        let conn = Connection::open_in_memory().unwrap();
        let fts5: bool = conn
            .query_row("SELECT sqlite_compileoption_used('ENABLE_FTS5')", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(fts5);
        conn.execute_batch(
            "CREATE VIRTUAL TABLE a USING fts5(body, tokenize = 'unicode61 remove_diacritics 0');
             CREATE VIRTUAL TABLE b USING fts5(body, tokenize = 'trigram');",
        )
        .unwrap();
    }

    #[tokio::test]
    async fn the_full_text_index_follows_inserts_supersedes_and_deletes() {
        use butler_domain::ports::FactRepository;
        use butler_domain::{FactKind, MemoryFact, UserId};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let user = UserId::new(1);
        let at = time::OffsetDateTime::now_utc();
        let fact = |text: &str, ms| {
            MemoryFact::new(
                user,
                "home_city",
                FactKind::Place,
                text,
                vec![],
                at + time::Duration::milliseconds(ms),
            )
            .unwrap()
        };
        let (kazan, tver) = (fact("Живём в Казани", 0), fact("Живём в Твери", 1));
        store.facts().save(&[kazan, tver.clone()]).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let indexed = |conn: &Connection| -> i64 {
            conn.query_row("SELECT COUNT(*) FROM user_facts_fts", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            indexed(&conn),
            2,
            "superseded facts stay indexed, for history"
        );
        // FTS5's own consistency check against the content table.
        conn.execute(
            "INSERT INTO user_facts_fts (user_facts_fts) VALUES ('integrity-check')",
            [],
        )
        .unwrap();
        store.facts().delete(user, tver.id).await.unwrap();
        store.facts().delete_all(user).await.unwrap();
        conn.execute(
            "INSERT INTO user_facts_fts (user_facts_fts) VALUES ('integrity-check')",
            [],
        )
        .unwrap();
        let matches: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM user_facts_fts WHERE user_facts_fts MATCH 'твер'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(matches, 0);
    }

    #[tokio::test]
    async fn a_stored_time_zone_the_tz_database_no_longer_knows_reads_as_the_default() {
        use butler_domain::ports::UserProfileRepository;
        use butler_domain::UserId;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let user = UserId::new(5);
        let created = store.profiles().get_or_create(user).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE user_profiles SET time_zone = 'Mars/Olympus', \
             time_zone_offered = 'Asia/Yekaterinburg' WHERE user_id = 5",
            [],
        )
        .unwrap();
        let read = store.profiles().get(user).await.unwrap().unwrap();
        assert_eq!(read.time_zone, None, "the operator's default applies");
        assert_eq!(
            read.time_zone_offered
                .map(|z| z.name().to_owned())
                .as_deref(),
            Some("Asia/Yekaterinburg")
        );
        assert_eq!(
            read.persona, created.persona,
            "the rest of the profile is intact"
        );
    }

    /// One search strategy: how facts and queries become FTS5 text and queries.
    struct Strategy {
        name: &'static str,
        tokenizer: &'static str,
        document: fn(&butler_domain::MemoryFact) -> String,
        query: fn(&str) -> Vec<String>,
    }

    /// The raw words of a query, lower case, at least `min` characters (trigram cannot match
    /// fewer than three).
    fn words(query: &str, min: usize) -> Vec<String> {
        query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= min)
            .map(str::to_lowercase)
            .collect()
    }

    /// (pairs found, distractor queries that found something) for one strategy.
    fn measure(
        conn: &Connection,
        strategy: &Strategy,
        facts: &[butler_domain::MemoryFact],
    ) -> (usize, usize) {
        use butler_testkit::contract::{DISTRACTOR_QUERIES, INFLECTION_PAIRS};
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS m; CREATE VIRTUAL TABLE m USING fts5(body, tokenize = '{}');",
            strategy.tokenizer
        ))
        .unwrap();
        for (rowid, fact) in (1_i64..).zip(facts) {
            conn.execute(
                "INSERT INTO m (rowid, body) VALUES (?1, ?2)",
                rusqlite::params![rowid, (strategy.document)(fact)],
            )
            .unwrap();
        }
        let found = |query: &str| -> Vec<i64> {
            let terms = (strategy.query)(query);
            if terms.is_empty() {
                return Vec::new();
            }
            let expression = terms
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(" OR ");
            let mut stmt = conn
                .prepare("SELECT rowid FROM m WHERE m MATCH ?1 ORDER BY bm25(m)")
                .unwrap();
            stmt.query_map([expression], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let pairs = (1_i64..)
            .zip(INFLECTION_PAIRS)
            .filter(|(rowid, (_, _, _, query))| found(query).contains(rowid))
            .count();
        let distracted = DISTRACTOR_QUERIES
            .iter()
            .filter(|query| !found(query).is_empty())
            .count();
        (pairs, distracted)
    }

    /// The measurement quoted in `butler_domain::fact::terms`: the sixteen fact/question pairs
    /// of the contract suite, under three ways of using FTS5. A pair counts when its question
    /// finds its fact among the sixteen; a distractor question counts when it finds anything.
    #[test]
    fn fts5_search_strategies_on_russian_inflections() {
        use butler_domain::fact::terms::query_terms;
        use butler_testkit::contract::{DISTRACTOR_QUERIES, INFLECTION_PAIRS};
        let facts: Vec<_> = INFLECTION_PAIRS
            .iter()
            .map(|(key, kind, text, _)| {
                butler_domain::MemoryFact::new(
                    butler_domain::UserId::new(1),
                    key,
                    *kind,
                    text,
                    vec![],
                    time::OffsetDateTime::now_utc(),
                )
                .unwrap()
            })
            .collect();
        let strategies = [
            Strategy {
                name: "unicode61 on the raw text",
                tokenizer: "unicode61",
                document: |f| f.text.clone(),
                query: |q| words(q, 1),
            },
            Strategy {
                name: "trigram on the raw text",
                tokenizer: "trigram",
                document: |f| f.text.clone(),
                query: |q| words(q, 3),
            },
            Strategy {
                name: "unicode61 on the domain's terms",
                tokenizer: "unicode61 remove_diacritics 0",
                document: |f| f.search_terms().join(" "),
                query: query_terms,
            },
        ];
        let conn = Connection::open_in_memory().unwrap();
        let measured: Vec<(usize, usize)> = strategies
            .iter()
            .map(|s| measure(&conn, s, &facts))
            .collect();
        for (s, (pairs, distracted)) in strategies.iter().zip(&measured) {
            println!(
                "{:<32} pairs {pairs:>2} / {}, distractors {distracted} / {}",
                s.name,
                INFLECTION_PAIRS.len(),
                DISTRACTOR_QUERIES.len()
            );
        }
        assert_eq!(
            measured,
            [(8, 0), (9, 0), (16, 0)],
            "the figures changed: update the table in butler_domain::fact::terms and docs/memory.md"
        );
    }

    #[tokio::test]
    async fn the_database_is_in_wal_mode_at_the_current_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_commit_is_as_durable_as_configured_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        for (name, synchronous) in [
            ("full.db", Synchronous::Full),
            ("normal.db", Synchronous::Normal),
        ] {
            let store = SqliteStore::open(SqliteOptions {
                synchronous,
                ..SqliteOptions::at(dir.path().join(name))
            })
            .await
            .unwrap();
            // Several at once, so the pool opens more connections than the first.
            let reads: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { store.synchronous().await })
                })
                .collect();
            for read in reads {
                assert_eq!(read.await.unwrap().unwrap(), synchronous, "{name}");
            }
        }
        assert_eq!(
            SqliteOptions::default().synchronous,
            Synchronous::Full,
            "an acknowledged commit survives a power loss unless configured otherwise"
        );
    }

    #[tokio::test]
    async fn reopening_applies_no_migration_twice_and_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        let first = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let profiles = first.profiles();
        use butler_domain::ports::UserProfileRepository;
        let created = profiles
            .get_or_create(butler_domain::UserId::new(1))
            .await
            .unwrap();
        let opens: Vec<_> = (0..4)
            .map(|_| tokio::spawn(SqliteStore::open(SqliteOptions::at(path.clone()))))
            .collect();
        for open in opens {
            open.await.unwrap().unwrap();
        }
        let again = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        assert_eq!(
            again
                .profiles()
                .get(butler_domain::UserId::new(1))
                .await
                .unwrap(),
            Some(created)
        );
    }

    #[tokio::test]
    async fn a_database_from_a_newer_release_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = SqliteStore::open(SqliteOptions::at(&path))
            .await
            .unwrap_err();
        assert!(matches!(err, SqliteOpenError::TooNew { .. }), "{err:?}");
        assert!(err.to_string().contains("newer than this binary"), "{err}");
    }

    /// 1,500 events of 3,000 characters: over 1,000 WAL pages, SQLite's own checkpoint point.
    async fn write_a_lot(store: &SqliteStore) {
        use butler_domain::ports::UserMemoryRepository;
        let at = time::OffsetDateTime::now_utc();
        let events: Vec<_> = (0..1_500)
            .map(|i| {
                butler_domain::UserMemoryEvent::user(
                    butler_domain::UserId::new(7),
                    "x".repeat(3_000),
                    butler_domain::Source::Text,
                    at + time::Duration::milliseconds(i),
                )
            })
            .collect();
        store.memory().append(&events).await.unwrap();
    }

    fn size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background_not_by_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let options = |name: &str, every: std::time::Duration| SqliteOptions {
            checkpoint_interval: every,
            ..SqliteOptions::at(dir.path().join(name))
        };

        // Background checkpoints effectively off: the commit leaves everything in the WAL.
        let idle = SqliteStore::open(options("idle.db", std::time::Duration::from_secs(3600)))
            .await
            .unwrap();
        let empty = size(idle.path());
        write_a_lot(&idle).await;
        assert_eq!(size(idle.path()), empty, "a writer checkpointed inline");
        let wal = idle.path().with_extension("db-wal");
        assert!(size(&wal) > 4_000_000, "the events are in the WAL");

        // Every 50 ms: the data reaches the database file without any further write.
        let busy = SqliteStore::open(options("busy.db", std::time::Duration::from_millis(50)))
            .await
            .unwrap();
        write_a_lot(&busy).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size(busy.path()) < 4_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "no background checkpoint within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn missing_parent_directories_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("nested").join("butler.db");
        let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        assert!(path.exists());
        assert_eq!(store.path(), path);
    }

    #[test]
    fn the_default_database_lives_under_data() {
        assert_eq!(
            SqliteOptions::default().path,
            std::path::PathBuf::from("./data/butler.db")
        );
    }

    #[tokio::test]
    async fn an_unopenable_path_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let err = SqliteStore::open(SqliteOptions::at(blocker.join("butler.db")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows: Vec<String> = stmt
            .query_map([], |row| row.get("detail"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.join("\n")
    }

    #[tokio::test]
    async fn the_inbox_reads_pending_updates_through_partial_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        assert_eq!(
            indexes(&conn, "inbox_updates"),
            vec![
                ("inbox_updates_done".to_owned(), false),
                ("inbox_updates_pending".to_owned(), false),
            ]
        );
        assert_eq!(columns_of(&conn, "inbox_updates_pending"), ["update_id"]);
        // The claim's query, as in sqlite/inbox.rs: done rows kept for retention are never
        // scanned.
        let claim = plan(
            &conn,
            "SELECT u.update_id FROM inbox_updates u WHERE u.done_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM conversation_leases l WHERE l.conversation = u.key \
                             AND l.scope = 'reply' AND l.until > 0) \
             ORDER BY u.update_id LIMIT 1",
        );
        let lines: Vec<&str> = claim.lines().collect();
        assert!(
            lines.contains(&"SCAN u USING INDEX inbox_updates_pending"),
            "{claim}"
        );
        assert!(
            lines.contains(&"SEARCH l USING PRIMARY KEY (conversation=? AND scope=?)"),
            "{claim}"
        );
    }

    #[tokio::test]
    async fn a_second_bot_on_the_same_file_is_refused_with_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        let first = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        assert_eq!(first.take_ownership().await.unwrap(), 0);
        let second = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let refused = second.take_ownership().await.unwrap_err();
        let message = refused.to_string();
        assert!(
            matches!(refused, SqliteOpenError::Owned { .. }),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        // Opening the file for other work (memory-worker, profile_admin) is still fine.
        butler_domain::ports::UserProfileRepository::get(
            &second.profiles(),
            butler_domain::UserId::new(1),
        )
        .await
        .unwrap();
        drop(first);
        assert_eq!(
            second.take_ownership().await.unwrap(),
            0,
            "an owner that is gone does not block"
        );
    }

    #[tokio::test]
    async fn a_restarted_bot_voids_its_predecessors_leases_and_no_one_elses() {
        use butler_domain::ports::{
            ConversationLeases, InboxUpdate, LeaseScope, Stored, UpdateInbox,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        let now = time::macros::datetime!(2026-11-25 12:00 UTC);
        let lease = time::Duration::seconds(30);
        let update = InboxUpdate {
            update_id: 1,
            conversation: 42,
            payload: "{}".to_owned(),
            received_at: now,
        };
        // A memory-worker on the same file, compressing conversation 42.
        let worker = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let compression = worker
            .leases()
            .acquire(42, LeaseScope::Compression, now, lease)
            .await
            .unwrap()
            .expect("the worker's lease");
        {
            let crashed = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
            crashed.take_ownership().await.unwrap();
            let inbox = crashed.inbox();
            assert_eq!(inbox.store(&update).await.unwrap(), Stored::New);
            inbox.claim(now, lease).await.unwrap().expect("claimed");
        }
        let restarted = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let inbox = restarted.inbox();
        assert!(
            inbox.claim(now, lease).await.unwrap().is_none(),
            "the lease is still in the file"
        );
        assert_eq!(restarted.take_ownership().await.unwrap(), 1);
        let again = inbox
            .claim(now, lease)
            .await
            .unwrap()
            .expect("claimed again");
        assert_eq!(again.update, update);
        assert_eq!(again.attempts, 2);
        assert!(
            inbox
                .acquire(42, LeaseScope::Compression, now, lease)
                .await
                .unwrap()
                .is_none(),
            "the worker's compression lease was left alone"
        );
        assert!(worker
            .leases()
            .renew(&compression, now, lease)
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn an_answered_update_keeps_its_id_but_not_the_message_text() {
        use butler_domain::ports::{InboxUpdate, Stored, UpdateInbox};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        let now = time::macros::datetime!(2026-11-25 12:00 UTC);
        let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let inbox = store.inbox();
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
        drop(store);
        let raw = rusqlite::Connection::open(&path).unwrap();
        let (payload, done): (String, Option<i64>) = raw
            .query_row(
                "SELECT payload, done_at FROM inbox_updates WHERE update_id = 7",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(payload, "", "the text is gone once answered");
        assert!(done.is_some());
        // The id still recognises Telegram's redelivery.
        let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        assert_eq!(
            store.inbox().store(&update).await.unwrap(),
            Stored::Duplicate
        );
    }

    #[tokio::test]
    async fn facts_indexed_under_older_term_rules_are_reindexed_when_the_database_opens() {
        use butler_domain::ports::FactRepository as _;
        use butler_domain::{FactKind, MemoryFact, UserId};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        let user = UserId::new(77);
        let fact = MemoryFact::new(
            user,
            "home_city",
            FactKind::Place,
            "Живёт в Перми",
            vec![],
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        {
            let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
            store
                .facts()
                .save(std::slice::from_ref(&fact))
                .await
                .unwrap();
        }
        // As a version-1 row: Snowball stems, under which «живу» (жив) misses «живёт» (живет).
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE user_facts SET terms = 'живет перм home citi', terms_version = 1",
            [],
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let found = store.facts().search(user, "Где я живу?", 5).await.unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].fact.id, fact.id);
    }
}

/// Audit additions: what the SQLite adapters promise beyond the shared contract.
mod promises {
    use std::time::Duration;

    use butler_domain::ports::{MemoryStoreError, UserMemoryRepository};
    use butler_domain::{Source, UserId, UserMemoryEvent};

    use super::*;

    #[tokio::test]
    async fn a_corrupt_row_is_reported_by_its_column_never_by_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let secret = "секретный текст пользователя";
        let raw = rusqlite::Connection::open(&path).unwrap();
        for (user, role, tags) in [(5_i64, "wizard", "[]"), (6, "user", "[\"секрет")] {
            raw.execute(
                "INSERT INTO user_memory (event_id, user_id, role, content, source, created_at, tags)
                 VALUES (?1, ?2, ?3, ?4, 'text', 1764072000000, ?5)",
                rusqlite::params![uuid::Uuid::new_v4().as_bytes().to_vec(), user, role, secret, tags],
            )
            .unwrap();
        }
        for (user, column) in [(5, "user_memory.role"), (6, "user_memory.tags")] {
            let error = store
                .memory()
                .recent(UserId::new(user), 10, None)
                .await
                .expect_err("a corrupt row cannot be read");
            assert!(
                matches!(error, MemoryStoreError::Corrupt { .. }),
                "{error:?}"
            );
            let shown = format!("{error} {error:?}");
            assert!(shown.contains(column), "{shown}");
            assert!(!shown.contains("секрет"), "{shown}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_of_two_stores_on_one_file_queue_for_the_lock_rather_than_fail() {
        assert_eq!(
            SqliteOptions::default().busy_timeout,
            Duration::from_secs(5),
            "what docs/storage.md states"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butler.db");
        // As the bot and memory-worker (or profile_admin) would: separate stores, separate
        // writer locks, one file. Only SQLite's busy timeout makes one wait for the other.
        let first = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let second = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
        let writers: Vec<_> = [first.memory(), second.memory()]
            .into_iter()
            .enumerate()
            .flat_map(|(n, memory)| {
                (0..20).map(move |i| {
                    let memory = memory.clone();
                    tokio::spawn(async move {
                        let user = UserId::new(100 + i64::try_from(n).unwrap());
                        let batch: Vec<_> = (0..50)
                            .map(|k| {
                                UserMemoryEvent::user(
                                    user,
                                    format!("{i}-{k}"),
                                    Source::Text,
                                    time::OffsetDateTime::now_utc(),
                                )
                            })
                            .collect();
                        memory.append(&batch).await
                    })
                })
            })
            .collect();
        for writer in writers {
            writer
                .await
                .unwrap()
                .expect("a write waits for the lock, it does not fail");
        }
        for user in [100, 101] {
            assert_eq!(
                first.memory().count(UserId::new(user)).await.unwrap(),
                1_000
            );
        }
    }
}
