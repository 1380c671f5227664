//! Contract cases for `UpdateInbox`: idempotent stores, claim order across keys and within a
//! key, leases (complete, release, expiry and take-over, renewal), the backlog, retention, and
//! many claimers racing over many keys.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use butler_domain::ports::{Claimed, InboxUpdate, Stored, UpdateInbox};
use time::Duration;

use super::{at, Storage};

/// How long every case's leases last unless it says otherwise.
const LEASE: Duration = Duration::seconds(30);

/// Update `update_id` from `key`, received `update_id` ms after the epoch.
fn update(update_id: i64, key: i64) -> InboxUpdate {
    InboxUpdate {
        update_id,
        conversation: key,
        payload: format!(r#"{{"update_id":{update_id},"message":{{"from":{{"id":{key}}}}}}}"#),
        received_at: at(update_id),
    }
}

async fn store_all(inbox: &dyn UpdateInbox, updates: &[InboxUpdate]) {
    for u in updates {
        assert_eq!(
            inbox.store(u).await.unwrap(),
            Stored::New,
            "{}",
            u.update_id
        );
    }
}

/// Claims at `now_ms` with the default lease; panics when there is nothing to claim.
async fn claim(inbox: &dyn UpdateInbox, now_ms: i64) -> Claimed {
    inbox
        .claim(at(now_ms), LEASE)
        .await
        .unwrap()
        .expect("an update to claim")
}

async fn nothing_to_claim(inbox: &dyn UpdateInbox, now_ms: i64) {
    let claimed = inbox.claim(at(now_ms), LEASE).await.unwrap();
    assert!(claimed.is_none(), "claimed {claimed:?}");
}

/// A redelivered update id is dropped, whether the first copy is pending or done.
pub async fn storing_an_update_again_is_a_duplicate_whether_pending_or_done(s: Storage) {
    let inbox = s.inbox.as_ref();
    let first = update(10, 1);
    assert_eq!(inbox.store(&first).await.unwrap(), Stored::New);
    let changed = InboxUpdate {
        payload: "{}".to_owned(),
        ..first.clone()
    };
    assert_eq!(inbox.store(&changed).await.unwrap(), Stored::Duplicate);
    assert_eq!(inbox.backlog().await.unwrap(), 1);

    let claimed = claim(inbox, 0).await;
    assert_eq!(claimed.update, first, "the first copy is kept");
    inbox.complete(10, &claimed.lease, at(1)).await.unwrap();
    assert_eq!(inbox.store(&first).await.unwrap(), Stored::Duplicate);
    assert_eq!(inbox.backlog().await.unwrap(), 0);
    nothing_to_claim(inbox, 2).await;
}

/// Claims hand out the oldest pending update by update id, whatever order they were stored in.
pub async fn claims_take_the_oldest_pending_update_across_keys(s: Storage) {
    let inbox = s.inbox.as_ref();
    nothing_to_claim(inbox, 0).await;
    store_all(inbox, &[update(30, 3), update(10, 1), update(20, 2)]).await;
    let order: Vec<(i64, i64, u32)> = [
        claim(inbox, 0).await,
        claim(inbox, 0).await,
        claim(inbox, 0).await,
    ]
    .iter()
    .map(|c| (c.update.update_id, c.lease.conversation, c.attempts))
    .collect();
    assert_eq!(order, [(10, 1, 1), (20, 2, 1), (30, 3, 1)]);
    nothing_to_claim(inbox, 0).await;
}

/// While a key is leased its later updates wait, even when they are the oldest pending ones;
/// other keys are still claimed.
pub async fn a_key_is_answered_one_update_at_a_time_in_update_id_order(s: Storage) {
    let inbox = s.inbox.as_ref();
    store_all(
        inbox,
        &[update(1, 7), update(2, 7), update(3, 8), update(4, 7)],
    )
    .await;
    let first = claim(inbox, 0).await;
    assert_eq!(first.update.update_id, 1);
    let other = claim(inbox, 0).await;
    assert_eq!(other.update.update_id, 3, "update 2 waits for update 1");
    nothing_to_claim(inbox, 0).await;
    assert_ne!(first.lease.token, other.lease.token);

    inbox.complete(1, &first.lease, at(1)).await.unwrap();
    let second = claim(inbox, 2).await;
    assert_eq!(second.update, update(2, 7));
    assert_eq!(second.attempts, 1);
    assert_ne!(second.lease.token, first.lease.token, "a token per claim");
    nothing_to_claim(inbox, 2).await;
}

/// Completing marks the update done and gives its key back at once.
pub async fn completing_gives_the_key_back_and_its_next_update_becomes_claimable(s: Storage) {
    let inbox = s.inbox.as_ref();
    store_all(inbox, &[update(1, 5), update(2, 5)]).await;
    let first = claim(inbox, 0).await;
    nothing_to_claim(inbox, 0).await;
    inbox.complete(1, &first.lease, at(5)).await.unwrap();
    assert_eq!(inbox.backlog().await.unwrap(), 1);
    let next = claim(inbox, 6).await;
    assert_eq!(next.update.update_id, 2);
    inbox.complete(2, &next.lease, at(7)).await.unwrap();
    assert_eq!(inbox.backlog().await.unwrap(), 0);
    nothing_to_claim(inbox, 8).await;
}

/// Releasing (graceful shutdown) leaves the update pending; it comes back as attempt 2,
/// still before the key's later updates.
pub async fn a_released_update_stays_pending_and_comes_back_with_one_more_attempt(s: Storage) {
    let inbox = s.inbox.as_ref();
    store_all(inbox, &[update(1, 5), update(2, 5)]).await;
    let first = claim(inbox, 0).await;
    assert_eq!(first.attempts, 1);
    inbox.release(&first.lease).await.unwrap();
    assert_eq!(inbox.backlog().await.unwrap(), 2);
    let again = claim(inbox, 1).await;
    assert_eq!(again.update, update(1, 5));
    assert_eq!(again.attempts, 2);
    assert_ne!(again.lease.token, first.lease.token);
    // A second release of the old lease must not free the key held by the new claim.
    inbox.release(&first.lease).await.unwrap();
    nothing_to_claim(inbox, 2).await;
}

/// After `until` another claimer takes the key and the update (one more attempt); the old
/// holder can neither renew, release nor complete away the new holder's lease, though its
/// completion still marks the update done.
pub async fn an_expired_lease_is_taken_over_and_the_old_holder_can_no_longer_touch_the_key(
    s: Storage,
) {
    let inbox = s.inbox.as_ref();
    store_all(inbox, &[update(1, 9)]).await;
    let old = claim(inbox, 0).await;
    assert_eq!(old.lease.until, at(30_000));
    nothing_to_claim(inbox, 29_999).await;

    let new = claim(inbox, 30_000).await;
    assert_eq!(new.update, update(1, 9));
    assert_eq!(new.attempts, 2);
    assert_eq!(new.lease.conversation, 9);
    assert_ne!(new.lease.token, old.lease.token);
    assert_eq!(new.lease.until, at(60_000));

    let renewed = inbox.renew(&old.lease, at(30_001), LEASE).await.unwrap();
    assert_eq!(renewed, None, "the old lease was taken over");
    inbox.release(&old.lease).await.unwrap();
    nothing_to_claim(inbox, 30_002).await;

    inbox.complete(1, &old.lease, at(30_003)).await.unwrap();
    assert_eq!(
        inbox.backlog().await.unwrap(),
        0,
        "the late answer still counts"
    );
    store_all(inbox, &[update(2, 9)]).await;
    nothing_to_claim(inbox, 30_004).await;
    assert!(inbox
        .renew(&new.lease, at(30_005), LEASE)
        .await
        .unwrap()
        .is_some());

    inbox.complete(1, &new.lease, at(30_006)).await.unwrap();
    let next = claim(inbox, 30_007).await;
    assert_eq!((next.update.update_id, next.attempts), (2, 1));
}

/// Renewing moves `until` to `now + lease_for`, keeping key and token.
pub async fn renewing_a_lease_extends_it(s: Storage) {
    let inbox = s.inbox.as_ref();
    store_all(inbox, &[update(1, 4)]).await;
    let claimed = claim(inbox, 0).await;
    let renewed = inbox
        .renew(&claimed.lease, at(20_000), LEASE)
        .await
        .unwrap()
        .expect("the lease is still held");
    assert_eq!(renewed.conversation, claimed.lease.conversation);
    assert_eq!(renewed.token, claimed.lease.token);
    assert_eq!(renewed.until, at(50_000));
    nothing_to_claim(inbox, 45_000).await;
    nothing_to_claim(inbox, 49_999).await;
    let taken = claim(inbox, 50_000).await;
    assert_eq!(taken.attempts, 2);
    assert_eq!(
        inbox.renew(&renewed, at(50_001), LEASE).await.unwrap(),
        None
    );
}

/// The backlog counts stored, not yet done updates; duplicates and done ones do not count.
pub async fn backlog_counts_only_pending_updates(s: Storage) {
    let inbox = s.inbox.as_ref();
    assert_eq!(inbox.backlog().await.unwrap(), 0);
    store_all(inbox, &[update(1, 1), update(2, 2), update(3, 3)]).await;
    inbox.store(&update(2, 2)).await.unwrap();
    assert_eq!(inbox.backlog().await.unwrap(), 3);
    let claimed = claim(inbox, 0).await;
    assert_eq!(
        inbox.backlog().await.unwrap(),
        3,
        "a claimed update is pending"
    );
    inbox.complete(1, &claimed.lease, at(1)).await.unwrap();
    assert_eq!(inbox.backlog().await.unwrap(), 2);
}

/// Retention removes done updates older than the cutoff, never pending or newer ones; an id
/// removed that way is stored as new if Telegram ever sends it again.
pub async fn delete_done_before_removes_only_old_done_updates_and_a_removed_id_is_new_again(
    s: Storage,
) {
    let inbox = s.inbox.as_ref();
    store_all(inbox, &[update(1, 1), update(2, 2), update(3, 3)]).await;
    let first = claim(inbox, 0).await;
    inbox.complete(1, &first.lease, at(1_000)).await.unwrap();
    let second = claim(inbox, 0).await;
    inbox.complete(2, &second.lease, at(3_000)).await.unwrap();

    assert_eq!(inbox.delete_done_before(at(1_000)).await.unwrap(), 0);
    assert_eq!(inbox.delete_done_before(at(2_000)).await.unwrap(), 1);
    assert_eq!(inbox.delete_done_before(at(2_000)).await.unwrap(), 0);
    assert_eq!(inbox.backlog().await.unwrap(), 1);
    assert_eq!(
        inbox.store(&update(2, 2)).await.unwrap(),
        Stored::Duplicate,
        "update 2 is kept"
    );
    assert_eq!(inbox.store(&update(1, 1)).await.unwrap(), Stored::New);
    assert_eq!(inbox.backlog().await.unwrap(), 2);

    assert_eq!(inbox.delete_done_before(at(10_000_000)).await.unwrap(), 1);
    assert_eq!(inbox.backlog().await.unwrap(), 2, "pending updates stay");
    let claimed: Vec<i64> = [claim(inbox, 0).await, claim(inbox, 0).await]
        .iter()
        .map(|c| c.update.update_id)
        .collect();
    assert_eq!(claimed, [1, 3]);
}

/// Payloads (Unicode, kilobytes) and receive times (odd milliseconds) come back exactly.
pub async fn payload_and_received_at_round_trip_exactly(s: Storage) {
    let inbox = s.inbox.as_ref();
    let text = "Добрый вечер, сэр! 🎩 \"quoted\" \\ back\u{0}slash\n".repeat(200);
    let stored = InboxUpdate {
        update_id: 9_007_199_254_740_993,
        conversation: -1_001_234_567_890,
        payload: serde_json::json!({ "update_id": 1, "message": { "text": text } }).to_string(),
        received_at: at(123_457),
    };
    store_all(inbox, std::slice::from_ref(&stored)).await;
    let claimed = claim(inbox, 0).await;
    assert_eq!(claimed.update, stored);
    assert_eq!(claimed.lease.conversation, stored.conversation);
    assert_eq!(claimed.lease.until, at(30_000));
}

/// What the racing claimers saw, checked under one lock.
#[derive(Default)]
struct Tracker {
    holding: HashSet<i64>,
    claimed: HashSet<i64>,
    last_of_key: HashMap<i64, i64>,
}

/// Eight claimers over 10 keys × 5 updates: every update is claimed exactly once, each key's
/// updates in update-id order, and never by two claimers at a time. (Sized for the Python
/// MongoDB-wire test server, where every claim is several round trips: eight claimers on ten
/// keys already keep most keys contended.)
pub async fn concurrent_claimers_answer_every_update_once_and_each_key_in_order(s: Storage) {
    const KEYS: i64 = 10;
    const PER_KEY: i64 = 5;
    let total = usize::try_from(KEYS * PER_KEY).unwrap();
    let updates: Vec<InboxUpdate> = (0..KEYS * PER_KEY)
        .map(|i| update(i + 1, 100 + i % KEYS))
        .collect();
    store_all(s.inbox.as_ref(), &updates).await;

    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let inbox = Arc::clone(&s.inbox);
            let tracker = Arc::clone(&tracker);
            tokio::spawn(async move {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                loop {
                    let Some(c) = inbox.claim(at(0), LEASE).await.unwrap() else {
                        if tracker.lock().unwrap().claimed.len() == total {
                            return;
                        }
                        assert!(std::time::Instant::now() < deadline, "claimers stalled");
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        continue;
                    };
                    let (id, key) = (c.update.update_id, c.lease.conversation);
                    {
                        let mut t = tracker.lock().unwrap();
                        assert!(t.holding.insert(key), "key {key} held twice");
                        assert!(t.claimed.insert(id), "update {id} claimed twice");
                        let before = t.last_of_key.insert(key, id);
                        assert!(before < Some(id), "key {key}: {id} after {before:?}");
                        assert_eq!(c.attempts, 1);
                    }
                    tokio::task::yield_now().await;
                    tracker.lock().unwrap().holding.remove(&key);
                    inbox.complete(id, &c.lease, at(1)).await.unwrap();
                }
            })
        })
        .collect();
    for claimer in claimers {
        claimer.await.unwrap();
    }
    {
        let t = tracker.lock().unwrap();
        assert_eq!(t.claimed.len(), total);
        assert_eq!(
            t.last_of_key.len(),
            usize::try_from(KEYS).unwrap(),
            "{:?}",
            t.last_of_key
        );
    }
    // Every claimer finished its completion before returning.
    assert_eq!(s.inbox.backlog().await.unwrap(), 0);
    nothing_to_claim(s.inbox.as_ref(), 2).await;
}
