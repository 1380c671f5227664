//! The compression invariants (DESIGN §4) against the real storage backends: SQLite (a fresh
//! file per test) and the MongoDB-wire test server (a fresh database per test). Races run
//! many rounds, as against the fakes in `compression_in_memory.rs`.

use butler_factory::settings::Settings;
use butler_factory::wiring;
use butler_testkit::storage::TestStorage;
use butler_tests::compression::{self, Backend};

/// A backend plus the store behind it (a SQLite temp dir lives as long as it).
type Opened = (Backend, TestStorage);

/// The store's repositories, opened as the binaries open them.
async fn opened(store: TestStorage) -> Opened {
    let settings = Settings::from_sources(None, |name| store.var(name))
        .unwrap_or_else(|e| panic!("storage settings: {e}"));
    let storage = wiring::open_storage(&settings)
        .await
        .unwrap_or_else(|e| panic!("open the store: {e}"));
    let backend = Backend {
        profiles: storage.profiles,
        memory: storage.memory,
        facts: storage.facts,
        leases: storage.leases,
    };
    (backend, store)
}

async fn sqlite() -> Opened {
    opened(TestStorage::sqlite().unwrap_or_else(|e| panic!("{e}"))).await
}

async fn mongo() -> Opened {
    opened(
        TestStorage::mongo("compression")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await
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
            async fn two_compressions_of_one_conversation_never_run_at_once() {
                let (b, _guard) = backend().await;
                compression::two_compressions_of_one_conversation_never_run_at_once(b, 5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_overlapping_compressions_write_one_summary_and_lose_no_event_or_fact() {
                let (b, _guard) = backend().await;
                compression::two_overlapping_compressions_write_one_summary_and_lose_no_event_or_fact(b, 6)
                    .await;
            }

            #[tokio::test]
            async fn a_reset_waits_for_the_reply_in_flight() {
                let (b, _guard) = backend().await;
                compression::a_reset_waits_for_the_reply_in_flight(b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn events_appended_during_a_compression_survive_it() {
                let (b, _guard) = backend().await;
                compression::events_appended_during_a_compression_survive_it(b, 10).await;
            }

            #[tokio::test]
            async fn facts_are_stored_by_a_compression_and_a_racing_reset_leaves_none() {
                let (b, _guard) = backend().await;
                compression::facts_are_stored_by_a_compression_and_a_racing_reset_leaves_none(b)
                    .await;
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_reset_stops_a_compression_in_flight_before_its_next_write() {
                let (b, _guard) = backend().await;
                compression::a_reset_stops_a_compression_in_flight_before_its_next_write(b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_compression_that_lost_to_a_reset_takes_its_facts_back() {
                let (b, _guard) = backend().await;
                compression::a_compression_that_lost_to_a_reset_takes_its_facts_back(b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_compression_that_outlived_its_lease_stops_without_writing() {
                let (b, _guard) = backend().await;
                compression::a_compression_that_outlived_its_lease_stops_without_writing(b).await;
            }

            #[tokio::test]
            async fn a_compression_whose_lease_is_taken_after_its_fact_save_writes_no_summary() {
                let (b, _guard) = backend().await;
                compression::a_compression_whose_lease_is_taken_after_its_fact_save_writes_no_summary(b)
                    .await;
            }
        }
    };
}

compression_invariants!(sqlite);
compression_invariants!(mongo);
