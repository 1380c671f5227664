//! The compression invariants against the in-memory fakes.

use butler_tests::compression::{self, Backend};

#[tokio::test]
async fn compression_keeps_the_newest_twenty_events_in_whole_turns() {
    compression::compression_keeps_the_newest_twenty_events_in_whole_turns(Backend::in_memory())
        .await;
}

#[tokio::test]
async fn compression_does_nothing_at_or_under_the_threshold() {
    compression::compression_does_nothing_at_or_under_the_threshold(Backend::in_memory()).await;
}

#[tokio::test]
async fn the_previous_summary_is_folded_into_the_next() {
    compression::the_previous_summary_is_folded_into_the_next(Backend::in_memory()).await;
}

#[tokio::test]
async fn a_failing_summariser_deletes_nothing() {
    compression::a_failing_summariser_deletes_nothing(Backend::in_memory()).await;
}

#[tokio::test]
async fn a_crash_between_summary_and_delete_is_repaired_by_the_next_run() {
    compression::a_crash_between_summary_and_delete_is_repaired_by_the_next_run(
        Backend::in_memory(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compressions_of_one_conversation_never_run_at_once() {
    compression::two_compressions_of_one_conversation_never_run_at_once(Backend::in_memory(), 20)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_overlapping_compressions_write_one_summary_and_lose_no_event_or_fact() {
    compression::two_overlapping_compressions_write_one_summary_and_lose_no_event_or_fact(
        Backend::in_memory(),
        20,
    )
    .await;
}

#[tokio::test]
async fn a_reset_waits_for_the_reply_in_flight() {
    compression::a_reset_waits_for_the_reply_in_flight(Backend::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_during_a_compression_survive_it() {
    compression::events_appended_during_a_compression_survive_it(Backend::in_memory(), 20).await;
}

#[tokio::test]
async fn facts_are_stored_by_a_compression_and_a_racing_reset_leaves_none() {
    compression::facts_are_stored_by_a_compression_and_a_racing_reset_leaves_none(
        Backend::in_memory(),
    )
    .await;
}

#[tokio::test]
async fn a_reset_racing_a_compression_leaves_no_summary() {
    compression::a_reset_racing_a_compression_leaves_no_summary(Backend::in_memory()).await;
}

#[tokio::test]
async fn a_large_backlog_is_folded_in_bounded_passes() {
    compression::a_large_backlog_is_folded_in_bounded_passes(Backend::in_memory(), 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_stops_a_compression_in_flight_before_its_next_write() {
    compression::a_reset_stops_a_compression_in_flight_before_its_next_write(Backend::in_memory())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_that_lost_to_a_reset_takes_its_facts_back() {
    compression::a_compression_that_lost_to_a_reset_takes_its_facts_back(Backend::in_memory())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_that_outlived_its_lease_stops_without_writing() {
    compression::a_compression_that_outlived_its_lease_stops_without_writing(Backend::in_memory())
        .await;
}

#[tokio::test]
async fn a_compression_whose_lease_is_taken_after_its_fact_save_writes_no_summary() {
    compression::a_compression_whose_lease_is_taken_after_its_fact_save_writes_no_summary(
        Backend::in_memory(),
    )
    .await;
}
