//! The reminder store's contract ([`ReminderRepository`]), written once and run against every
//! backend by [`reminder_contract_suite!`](crate::reminder_contract_suite): due-time order,
//! per-user listing, claims under a lease (once under racing claimers), lease expiry and
//! take-over, cancel/reschedule racing claims, retention.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use butler_domain::ports::{ChangeOutcome, ReminderRepository};
use butler_domain::reminder::{Reminder, ReminderId, ReminderStatus, UserTimeZone};
use butler_domain::UserId;
use time::Duration;
use uuid::Uuid;

use super::at;

/// One backend's reminder store over an empty database that lives as long as this.
pub struct ReminderStorage {
    /// The store under test.
    pub reminders: Arc<dyn ReminderRepository>,
    keep_alive: Vec<Box<dyn Any + Send + Sync>>,
}

impl ReminderStorage {
    /// Wraps a backend's store.
    pub fn new(reminders: Arc<dyn ReminderRepository>) -> Self {
        Self {
            reminders,
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

impl std::fmt::Debug for ReminderStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReminderStorage")
            .field("guards", &self.keep_alive.len())
            .finish_non_exhaustive()
    }
}

const LEASE: Duration = Duration::seconds(30);

/// A pending reminder of `user` due `due_ms` after the epoch.
fn reminder(user: i64, text: &str, due_ms: i64) -> Reminder {
    let zone = UserTimeZone::new("Europe/Moscow").unwrap();
    Reminder::new(UserId::new(user), user, text, at(due_ms), &zone, at(-1_000)).unwrap()
}

/// Reminders read back with every field intact; adding one again changes nothing.
pub async fn added_reminders_read_back_intact_and_adding_again_changes_nothing(s: ReminderStorage) {
    let store = s.reminders.as_ref();
    let r = reminder(7, "позвонить маме 📞 — «срочно»", 5_000);
    store.add(&r).await.unwrap();
    store.add(&r).await.unwrap();
    assert_eq!(store.get(r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(
        store.list_pending(UserId::new(7)).await.unwrap(),
        vec![r.clone()]
    );
    assert_eq!(store.count_pending(UserId::new(7)).await.unwrap(), 1);
    assert_eq!(store.get(reminder(7, "x", 1).id).await.unwrap(), None);
}

/// A user's listing holds only their pending reminders, earliest due first.
pub async fn listing_is_per_user_and_earliest_due_first(s: ReminderStorage) {
    let store = s.reminders.as_ref();
    let later = reminder(1, "later", 9_000);
    let sooner = reminder(1, "sooner", 3_000);
    let other = reminder(2, "someone else's", 1_000);
    for r in [&later, &sooner, &other] {
        store.add(r).await.unwrap();
    }
    let list = store.list_pending(UserId::new(1)).await.unwrap();
    assert_eq!(
        list.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["sooner", "later"]
    );
    assert_eq!(store.next_due().await.unwrap(), Some(at(1_000)));
    store
        .cancel(UserId::new(1), sooner.id, at(0))
        .await
        .unwrap();
    assert_eq!(store.count_pending(UserId::new(1)).await.unwrap(), 1);
}

/// Claims take only due reminders, earliest first, up to the limit, and not twice while leased.
pub async fn claims_take_due_reminders_in_due_order_once_while_leased(s: ReminderStorage) {
    let store = s.reminders.as_ref();
    for (i, due) in [3_000, 1_000, 2_000, 60_000].into_iter().enumerate() {
        store
            .add(&reminder(i as i64 + 1, &format!("r{due}"), due))
            .await
            .unwrap();
    }
    assert!(store
        .claim_due(at(500), LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    let first = store.claim_due(at(5_000), LEASE, 2).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|c| c.reminder.text.as_str())
            .collect::<Vec<_>>(),
        ["r1000", "r2000"]
    );
    assert!(first
        .iter()
        .all(|c| c.reminder.attempts == 1 && c.until == at(5_000) + LEASE));
    let second = store.claim_due(at(5_000), LEASE, 10).await.unwrap();
    assert_eq!(
        second
            .iter()
            .map(|c| c.reminder.text.as_str())
            .collect::<Vec<_>>(),
        ["r3000"]
    );
    assert!(store
        .claim_due(at(6_000), LEASE, 10)
        .await
        .unwrap()
        .is_empty());
}

/// Marking delivered needs the claim's token; a delivered reminder is never claimed again.
pub async fn delivery_is_marked_once_with_the_claims_token(s: ReminderStorage) {
    let store = s.reminders.as_ref();
    let r = reminder(1, "tea", 1_000);
    store.add(&r).await.unwrap();
    let claim = store
        .claim_due(at(1_000), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert!(!store
        .mark_delivered(r.id, Uuid::new_v4(), at(1_100))
        .await
        .unwrap());
    assert!(store
        .mark_delivered(r.id, claim.token, at(1_200))
        .await
        .unwrap());
    assert!(!store
        .mark_delivered(r.id, claim.token, at(1_300))
        .await
        .unwrap());
    let stored = store.get(r.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ReminderStatus::Delivered(at(1_200)));
    assert!(store
        .claim_due(at(100_000), LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_pending(UserId::new(1)).await.unwrap().is_empty());
    assert_eq!(store.next_due().await.unwrap(), None);
}

/// Marking several at once marks exactly those whose claim's token still holds them.
pub async fn marking_several_delivered_at_once_needs_each_claims_token(s: ReminderStorage) {
    let store = s.reminders.as_ref();
    let reminders: Vec<Reminder> = (0..4).map(|i| reminder(1, "tea", 1_000 + i)).collect();
    for r in &reminders {
        store.add(r).await.unwrap();
    }
    let claims = store.claim_due(at(2_000), LEASE, 10).await.unwrap();
    assert_eq!(claims.len(), 4);
    assert_eq!(store.mark_delivered_many(&[], at(2_050)).await.unwrap(), 0);
    // The first with a stranger's token, the last released (its token void): two hold.
    assert!(store
        .release(claims[3].reminder.id, claims[3].token)
        .await
        .unwrap());
    let mut batch: Vec<(ReminderId, Uuid)> =
        claims.iter().map(|c| (c.reminder.id, c.token)).collect();
    batch[0].1 = Uuid::new_v4();
    assert_eq!(
        store.mark_delivered_many(&batch, at(2_100)).await.unwrap(),
        2
    );
    let status = |i: usize| {
        let id = claims[i].reminder.id;
        async move { store.get(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(0).await, ReminderStatus::Pending);
    assert_eq!(status(1).await, ReminderStatus::Delivered(at(2_100)));
    assert_eq!(status(2).await, ReminderStatus::Delivered(at(2_100)));
    assert_eq!(status(3).await, ReminderStatus::Pending);
    // Marked once: again, nothing changes.
    assert_eq!(
        store.mark_delivered_many(&batch, at(2_200)).await.unwrap(),
        0
    );
    assert_eq!(status(1).await, ReminderStatus::Delivered(at(2_100)));
}

/// An expired lease is taken over with one more attempt; the old claimer's token is void.
pub async fn an_expired_lease_is_taken_over_and_the_old_token_is_void(s: ReminderStorage) {
    let store = s.reminders.as_ref();
    let r = reminder(1, "tea", 1_000);
    store.add(&r).await.unwrap();
    let old = store
        .claim_due(at(1_000), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let expiry = 1_000 + LEASE.whole_milliseconds() as i64;
    assert!(store
        .claim_due(at(expiry - 1), LEASE, 1)
        .await
        .unwrap()
        .is_empty());
    let new = store
        .claim_due(at(expiry), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(new.reminder.attempts, 2);
    assert_ne!(new.token, old.token);
    assert!(!store
        .mark_delivered(r.id, old.token, at(expiry + 1))
        .await
        .unwrap());
    assert!(!store.release(r.id, old.token).await.unwrap());
    assert!(store
        .mark_delivered(r.id, new.token, at(expiry + 2))
        .await
        .unwrap());
}

/// A released claim is claimable again at once.
pub async fn a_released_claim_is_claimable_again_at_once(s: ReminderStorage) {
    let store = s.reminders.as_ref();
    let r = reminder(1, "tea", 1_000);
    store.add(&r).await.unwrap();
    let claim = store
        .claim_due(at(1_000), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert!(store.release(r.id, claim.token).await.unwrap());
    let again = store.claim_due(at(1_001), LEASE, 1).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].reminder.attempts, 2);
}

/// Cancel and reschedule act on the user's own pending reminders, not while being delivered.
pub async fn cancel_and_reschedule_touch_only_own_pending_reminders_not_being_delivered(
    s: ReminderStorage,
) {
    let store = s.reminders.as_ref();
    let (me, stranger) = (UserId::new(1), UserId::new(2));
    let r = reminder(1, "tea", 1_000);
    store.add(&r).await.unwrap();
    assert_eq!(
        store.cancel(stranger, r.id, at(0)).await.unwrap(),
        ChangeOutcome::NotFound
    );
    assert_eq!(
        store.reschedule(me, r.id, at(5_000), at(0)).await.unwrap(),
        ChangeOutcome::Changed
    );
    assert_eq!(store.get(r.id).await.unwrap().unwrap().due_at, at(5_000));
    assert!(store
        .claim_due(at(1_000), LEASE, 1)
        .await
        .unwrap()
        .is_empty());
    let claim = store
        .claim_due(at(5_000), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store.cancel(me, r.id, at(5_001)).await.unwrap(),
        ChangeOutcome::Delivering
    );
    assert_eq!(
        store
            .reschedule(me, r.id, at(90_000), at(5_001))
            .await
            .unwrap(),
        ChangeOutcome::Delivering
    );
    assert!(store.release(r.id, claim.token).await.unwrap());
    assert_eq!(
        store.cancel(me, r.id, at(5_002)).await.unwrap(),
        ChangeOutcome::Changed
    );
    assert_eq!(
        store.get(r.id).await.unwrap().unwrap().status,
        ReminderStatus::Cancelled(at(5_002))
    );
    assert_eq!(
        store.cancel(me, r.id, at(5_003)).await.unwrap(),
        ChangeOutcome::NotFound
    );
    assert!(store
        .claim_due(at(100_000), LEASE, 1)
        .await
        .unwrap()
        .is_empty());
}

/// Eight claimers racing over many due reminders: each is claimed exactly once.
pub async fn eight_racing_claimers_claim_each_due_reminder_exactly_once(s: ReminderStorage) {
    let mut ids = HashSet::new();
    for i in 0..200 {
        let r = reminder(i % 7 + 1, &format!("r{i}"), i);
        ids.insert(r.id);
        s.reminders.add(&r).await.unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&s.reminders);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_due(at(1_000), LEASE, 7).await.unwrap();
                    if batch.is_empty() {
                        break mine;
                    }
                    for c in batch {
                        assert!(store
                            .mark_delivered(c.reminder.id, c.token, at(1_001))
                            .await
                            .unwrap());
                        mine.push(c.reminder.id);
                    }
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    assert_eq!(seen.len(), 200, "every reminder claimed once");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);
}

/// Cancels racing claims: every reminder ends either delivered or cancelled, never both.
pub async fn cancels_racing_claims_leave_each_reminder_delivered_or_cancelled(s: ReminderStorage) {
    let user = UserId::new(1);
    let mut all = Vec::new();
    for i in 0..60 {
        let r = reminder(1, &format!("r{i}"), i);
        s.reminders.add(&r).await.unwrap();
        all.push(r.id);
    }
    let claimer = {
        let store = Arc::clone(&s.reminders);
        tokio::spawn(async move {
            let mut delivered = HashSet::new();
            loop {
                let batch = store.claim_due(at(1_000), LEASE, 3).await.unwrap();
                if batch.is_empty() {
                    break delivered;
                }
                for c in batch {
                    if store
                        .mark_delivered(c.reminder.id, c.token, at(1_001))
                        .await
                        .unwrap()
                    {
                        delivered.insert(c.reminder.id);
                    }
                }
            }
        })
    };
    let canceller = {
        let store = Arc::clone(&s.reminders);
        let ids = all.clone();
        tokio::spawn(async move {
            let mut cancelled = HashSet::new();
            for id in ids.into_iter().rev() {
                if store.cancel(user, id, at(1_000)).await.unwrap() == ChangeOutcome::Changed {
                    cancelled.insert(id);
                }
            }
            cancelled
        })
    };
    let delivered = claimer.await.unwrap();
    let cancelled = canceller.await.unwrap();
    assert!(delivered.is_disjoint(&cancelled));
    for id in all {
        let status = s.reminders.get(id).await.unwrap().unwrap().status;
        match status {
            ReminderStatus::Delivered(_) => assert!(delivered.contains(&id)),
            ReminderStatus::Cancelled(_) => assert!(cancelled.contains(&id)),
            ReminderStatus::Pending => {
                // Claimed but not yet cancelled when the claimer stopped: impossible, the
                // claimer marks every claim before it claims again.
                panic!("{id} left pending");
            }
        }
    }
}

/// Retention removes only finished reminders older than the cut-off; a reset removes a user's.
pub async fn retention_removes_only_old_finished_reminders_and_reset_removes_a_users(
    s: ReminderStorage,
) {
    let store = s.reminders.as_ref();
    let old = reminder(1, "old", 1_000);
    let recent = reminder(1, "recent", 2_000);
    let pending = reminder(1, "pending", 900_000);
    let other = reminder(2, "other", 900_000);
    for r in [&old, &recent, &pending, &other] {
        store.add(r).await.unwrap();
    }
    for c in store.claim_due(at(2_000), LEASE, 10).await.unwrap() {
        let done = if c.reminder.id == old.id {
            1_000
        } else {
            5_000
        };
        assert!(store
            .mark_delivered(c.reminder.id, c.token, at(done))
            .await
            .unwrap());
    }
    assert_eq!(store.delete_finished_before(at(3_000)).await.unwrap(), 1);
    assert_eq!(store.get(old.id).await.unwrap(), None);
    assert!(store.get(recent.id).await.unwrap().is_some());
    assert!(store.get(pending.id).await.unwrap().is_some());
    assert_eq!(store.delete_user(UserId::new(1)).await.unwrap(), 2);
    assert_eq!(store.count_pending(UserId::new(2)).await.unwrap(), 1);
}

/// A user's full listing holds their pending, delivered and cancelled reminders (nobody
/// else's), earliest due first.
pub async fn a_users_reminders_in_every_state_are_listed_earliest_due_first(s: ReminderStorage) {
    let store = s.reminders.as_ref();
    let cancelled = reminder(1, "cancelled", 1_000);
    let delivered = reminder(1, "delivered", 2_000);
    let pending = reminder(1, "pending", 90_000);
    let other = reminder(2, "someone else's", 1_500);
    for r in [&pending, &delivered, &cancelled, &other] {
        store.add(r).await.unwrap();
    }
    store
        .cancel(UserId::new(1), cancelled.id, at(500))
        .await
        .unwrap();
    let claimed = store.claim_due(at(2_500), LEASE, 10).await.unwrap();
    let mine = claimed
        .iter()
        .find(|c| c.reminder.id == delivered.id)
        .unwrap();
    assert!(store
        .mark_delivered(delivered.id, mine.token, at(2_600))
        .await
        .unwrap());
    let all = store.list_all(UserId::new(1)).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.text.as_str(), r.status))
            .collect::<Vec<_>>(),
        [
            ("cancelled", ReminderStatus::Cancelled(at(500))),
            ("delivered", ReminderStatus::Delivered(at(2_600))),
            ("pending", ReminderStatus::Pending),
        ]
    );
    assert!(store.list_all(UserId::new(3)).await.unwrap().is_empty());
}

/// Instantiates every reminder contract case as a `#[tokio::test]` for one backend;
/// `$factory` is a future of a fresh [`ReminderStorage`], evaluated once per test.
#[macro_export]
macro_rules! reminder_contract_suite {
    ($factory:expr) => {
        $crate::reminder_contract_suite!(@cases $factory;
            added_reminders_read_back_intact_and_adding_again_changes_nothing,
            listing_is_per_user_and_earliest_due_first,
            claims_take_due_reminders_in_due_order_once_while_leased,
            delivery_is_marked_once_with_the_claims_token,
            marking_several_delivered_at_once_needs_each_claims_token,
            an_expired_lease_is_taken_over_and_the_old_token_is_void,
            a_released_claim_is_claimable_again_at_once,
            cancel_and_reschedule_touch_only_own_pending_reminders_not_being_delivered,
            eight_racing_claimers_claim_each_due_reminder_exactly_once,
            cancels_racing_claims_leave_each_reminder_delivered_or_cancelled,
            retention_removes_only_old_finished_reminders_and_reset_removes_a_users,
            a_users_reminders_in_every_state_are_listed_earliest_due_first,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let storage: $crate::contract::ReminderStorage = $factory.await;
                $crate::contract::$case(storage).await;
            }
        )+
    };
}
