//! The storage contract suite: every promise of `UserProfileRepository`,
//! `UserMemoryRepository`, `FactRepository`, `UpdateInbox` and `ConversationLeases` (the
//! inbox's store), written once as generic async
//! functions over the ports and run against every backend (SQLite, MongoDB, the in-memory
//! fakes) by
//! [`storage_contract_suite!`](crate::storage_contract_suite).
//!
//! Each case receives a fresh, empty [`Storage`] and panics on a broken promise; races run
//! many rounds so an unlucky interleaving shows up.

// These functions are test bodies: a panic on an unexpected error *is* the failure report.
#![allow(clippy::unwrap_used)]

mod facts;
mod inbox;
mod leases;
mod memory;
mod profiles;
mod races;
mod reminders;

use std::any::Any;
use std::sync::Arc;

use butler_domain::ports::{
    FactRepository, UpdateInbox, UserMemoryRepository, UserProfileRepository,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub use facts::*;
pub use inbox::*;
pub use leases::*;
pub use memory::*;
pub use profiles::*;
pub use races::*;
pub use reminders::*;

/// The repositories of one backend, over an empty database that lives as long as this.
pub struct Storage {
    /// The profile store under test.
    pub profiles: Arc<dyn UserProfileRepository>,
    /// The memory store under test.
    pub memory: Arc<dyn UserMemoryRepository>,
    /// The fact store under test.
    pub facts: Arc<dyn FactRepository>,
    /// The update inbox under test.
    pub inbox: Arc<dyn UpdateInbox>,
    keep_alive: Vec<Box<dyn Any + Send + Sync>>,
}

impl Storage {
    /// Wraps a backend's repositories.
    pub fn new(
        profiles: Arc<dyn UserProfileRepository>,
        memory: Arc<dyn UserMemoryRepository>,
        facts: Arc<dyn FactRepository>,
        inbox: Arc<dyn UpdateInbox>,
    ) -> Self {
        Self {
            profiles,
            memory,
            facts,
            inbox,
            keep_alive: Vec::new(),
        }
    }

    /// Keeps `guard` (a temporary directory, a database handle) alive as long as the storage.
    #[must_use]
    pub fn keeping(mut self, guard: impl Any + Send + Sync) -> Self {
        self.keep_alive.push(Box::new(guard));
        self
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("guards", &self.keep_alive.len())
            .finish_non_exhaustive()
    }
}

/// The instant every case measures from: odd milliseconds, to catch precision loss.
const EPOCH: OffsetDateTime = datetime!(2026-11-25 12:00:00.517 UTC);

/// `EPOCH` plus `ms` milliseconds.
fn at(ms: i64) -> OffsetDateTime {
    EPOCH + Duration::milliseconds(ms)
}

/// Instantiates every contract case as a `#[tokio::test]` for one backend.
///
/// `$factory` is an expression evaluating to a future of a fresh [`Storage`]; it is evaluated
/// once per test, so each test gets its own database and tests run in parallel. The calling
/// crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
///
/// ```no_run
/// use std::sync::Arc;
///
/// use butler_testkit::contract::Storage;
/// use butler_testkit::fakes::{InMemoryFacts, InMemoryInbox, InMemoryMemory, InMemoryProfiles};
///
/// async fn fakes() -> Storage {
///     Storage::new(
///         Arc::new(InMemoryProfiles::default()),
///         Arc::new(InMemoryMemory::default()),
///         Arc::new(InMemoryFacts::default()),
///         Arc::new(InMemoryInbox::default()),
///     )
/// }
///
/// butler_testkit::storage_contract_suite!(fakes());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! storage_contract_suite {
    ($factory:expr) => {
        $crate::storage_contract_suite!(@cases $factory;
            get_returns_nothing_for_an_unknown_user_and_creates_nothing,
            get_or_create_stores_the_default_profile_once,
            concurrent_get_or_create_of_a_new_user_creates_exactly_one_profile,
            save_with_the_stored_version_bumps_it_and_a_stale_save_conflicts,
            saving_version_zero_inserts_only_when_no_profile_exists,
            saving_a_version_that_was_never_stored_conflicts,
            an_invalid_profile_is_rejected_and_nothing_is_written,
            reset_restores_the_default_clears_the_summary_and_bumps_the_version,
            reset_creates_a_missing_profile_at_version_one,
            profiles_are_listed_in_ascending_user_id_page_by_page,
            appended_events_read_back_oldest_first_with_every_field_intact,
            appending_the_same_events_again_stores_each_once,
            appending_nothing_is_a_no_op_and_a_zero_limit_returns_nothing,
            recent_returns_the_newest_events_oldest_first,
            recent_returns_only_events_after_the_watermark,
            events_in_one_millisecond_are_ordered_by_event_id,
            count_counts_only_the_users_own_events,
            events_up_to_returns_the_oldest_events_at_or_before_the_cursor,
            delete_up_to_removes_events_at_or_before_the_watermark_and_never_newer_ones,
            delete_all_removes_every_event_of_one_user_only,
            users_over_lists_users_above_the_threshold_busiest_first,
            unicode_emoji_and_multi_kilobyte_content_round_trips_exactly,
            ten_thousand_events_for_one_user_are_stored_counted_and_paged,
            a_thousand_users_are_created_listed_and_counted,
            concurrent_saves_of_one_version_let_exactly_one_win,
            deletes_racing_appends_of_newer_events_never_lose_the_newer_events,
            racing_compressions_of_one_user_keep_every_event_or_its_summary,
            saved_facts_read_back_with_every_field_intact,
            saving_nothing_and_zero_limits_return_nothing,
            a_newer_fact_supersedes_the_current_fact_of_its_key_and_the_old_one_is_kept,
            a_fact_older_than_the_current_one_is_stored_already_superseded,
            a_fact_saved_as_history_supersedes_nothing,
            saving_the_same_facts_again_changes_nothing,
            an_invalid_fact_fails_the_batch_and_nothing_is_written,
            search_finds_facts_by_inflected_russian_words,
            search_matches_english_inflections_and_ignores_question_words,
            search_ranks_the_best_match_first_and_never_returns_superseded_facts,
            search_finds_facts_asked_as_people_ask_and_not_by_shared_stems,
            superseded_facts_do_not_change_the_ranking_of_current_ones,
            an_update_is_found_by_the_same_questions_whichever_way_it_is_worded,
            delete_removes_one_fact_of_its_user_and_brings_back_nothing,
            delete_all_removes_every_fact_of_one_user_only,
            facts_older_than_the_cutoff_expire_for_every_user,
            concurrent_saves_of_one_key_leave_exactly_one_current_fact,
            storing_an_update_again_is_a_duplicate_whether_pending_or_done,
            claims_take_the_oldest_pending_update_across_keys,
            a_key_is_answered_one_update_at_a_time_in_update_id_order,
            completing_gives_the_key_back_and_its_next_update_becomes_claimable,
            a_released_update_stays_pending_and_comes_back_with_one_more_attempt,
            an_expired_lease_is_taken_over_and_the_old_holder_can_no_longer_touch_the_key,
            renewing_a_lease_extends_it,
            backlog_counts_only_pending_updates,
            delete_done_before_removes_only_old_done_updates_and_a_removed_id_is_new_again,
            payload_and_received_at_round_trip_exactly,
            concurrent_claimers_answer_every_update_once_and_each_key_in_order,
            a_conversation_lease_excludes_others_until_released_or_expired,
            leases_of_other_scopes_or_conversations_never_exclude_each_other,
            a_taken_over_lease_is_lost_to_its_previous_holder,
            a_held_reply_lease_keeps_the_inbox_from_claiming_its_conversation,
            racing_acquirers_get_a_lease_exactly_once,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let storage: $crate::contract::Storage = $factory.await;
                $crate::contract::$case(storage).await;
            }
        )+
    };
}
