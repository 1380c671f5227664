//! The storage contract suite against SQLite (a fresh database file per test), plus what only
//! SQLite has: migrations, pragmas and the indexes that mirror MongoDB's.

use std::sync::Arc;

use butler_infrastructure::sqlite::{SqliteOpenError, SqliteOptions, SqliteStore, SCHEMA_VERSION};
use butler_testkit::contract::Storage;

async fn sqlite() -> Storage {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(SqliteOptions::at(dir.path().join("butler.db")))
        .await
        .expect("open a fresh SQLite database");
    Storage::new(Arc::new(store.profiles()), Arc::new(store.memory())).keeping(dir)
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
        assert_eq!(columns_of(&conn, "user_profiles_user_id"), ["user_id"]);
        assert_eq!(columns_of(&conn, "user_memory_event_id"), ["event_id"]);
        assert_eq!(
            columns_of(&conn, "user_memory_user_created"),
            ["user_id", "created_at", "event_id"]
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
}
