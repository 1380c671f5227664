//! The compression invariants (DESIGN §4) against the real storage backends: SQLite (a fresh
//! file per test) and the MongoDB-wire test server (a fresh database per test). Races run
//! many rounds, as against the fakes in `compression_in_memory.rs`.

use std::sync::Arc;

use butler_infrastructure::mongo::{MongoOptions, MongoStore};
use butler_infrastructure::sqlite::{SqliteOptions, SqliteStore};
use butler_testkit::services::mongo::{shared_mongo, unique_database_name};
use butler_tests::compression::{self, Backend};

/// A backend plus whatever must outlive the test (the SQLite temp dir).
type Opened = (Backend, Option<tempfile::TempDir>);

async fn sqlite() -> Opened {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(SqliteOptions::at(dir.path().join("butler.db")))
        .await
        .expect("open a fresh SQLite database");
    let backend = Backend {
        profiles: Arc::new(store.profiles()),
        memory: Arc::new(store.memory()),
    };
    (backend, Some(dir))
}

async fn mongo() -> Opened {
    let server = shared_mongo().await.unwrap_or_else(|e| panic!("{e}"));
    let options = MongoOptions {
        database: Some(unique_database_name("compression")),
        ..MongoOptions::default()
    };
    let store = MongoStore::connect(server.uri(), options)
        .await
        .expect("connect to the test MongoDB");
    let backend = Backend {
        profiles: Arc::new(store.profiles()),
        memory: Arc::new(store.memory()),
    };
    (backend, None)
}

/// One `#[tokio::test]` per invariant for a backend module.
macro_rules! compression_invariants {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            async fn backend() -> Opened {
                super::$backend().await
            }

            #[tokio::test]
            async fn compression_keeps_the_newest_twenty_events_in_whole_turns() {
                let (b, _guard) = backend().await;
                compression::compression_keeps_the_newest_twenty_events_in_whole_turns(b).await;
            }

            #[tokio::test]
            async fn compression_does_nothing_at_or_under_the_threshold() {
                let (b, _guard) = backend().await;
                compression::compression_does_nothing_at_or_under_the_threshold(b).await;
            }

            #[tokio::test]
            async fn the_previous_summary_is_folded_into_the_next() {
                let (b, _guard) = backend().await;
                compression::the_previous_summary_is_folded_into_the_next(b).await;
            }

            #[tokio::test]
            async fn a_failing_summariser_deletes_nothing() {
                let (b, _guard) = backend().await;
                compression::a_failing_summariser_deletes_nothing(b).await;
            }

            #[tokio::test]
            async fn a_crash_between_summary_and_delete_is_repaired_by_the_next_run() {
                let (b, _guard) = backend().await;
                compression::a_crash_between_summary_and_delete_is_repaired_by_the_next_run(b)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_concurrent_compressions_write_one_summary_and_lose_nothing() {
                let (b, _guard) = backend().await;
                compression::two_concurrent_compressions_write_one_summary_and_lose_nothing(b, 20)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn events_appended_during_a_compression_survive_it() {
                let (b, _guard) = backend().await;
                compression::events_appended_during_a_compression_survive_it(b, 10).await;
            }

            #[tokio::test]
            async fn a_reset_racing_a_compression_leaves_no_summary() {
                let (b, _guard) = backend().await;
                compression::a_reset_racing_a_compression_leaves_no_summary(b).await;
            }

            #[tokio::test]
            async fn a_large_backlog_is_folded_in_bounded_passes() {
                let (b, _guard) = backend().await;
                compression::a_large_backlog_is_folded_in_bounded_passes(b, 2_000).await;
            }
        }
    };
}

compression_invariants!(sqlite);
compression_invariants!(mongo);
