//! Contract cases for `ConversationLeases`: exclusion per conversation and scope, expiry,
//! renewal, take-over, release, the inbox's claims as reply leases of the same store, and many
//! acquirers racing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use butler_domain::ports::{ConversationLeases, InboxUpdate, LeaseScope, UpdateInbox};
use time::Duration;

use super::{at, Storage};

const LEASE: Duration = Duration::seconds(10);

fn leases(s: &Storage) -> Arc<dyn ConversationLeases> {
    // The inbox's store is the leases' store: one mechanism for every writer.
    Arc::clone(&s.inbox) as Arc<dyn ConversationLeases>
}

/// While a lease is held, nobody else gets it; once released, or at its `until`, the next
/// caller does.
pub async fn a_conversation_lease_excludes_others_until_released_or_expired(s: Storage) {
    let leases = leases(&s);
    let first = leases
        .acquire(7, LeaseScope::Compression, at(0), LEASE)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(
        (first.conversation, first.scope, first.until),
        (7, LeaseScope::Compression, at(10_000))
    );
    for now in [0, 1, 9_999] {
        assert!(leases
            .acquire(7, LeaseScope::Compression, at(now), LEASE)
            .await
            .unwrap()
            .is_none());
    }
    leases.release(&first).await.unwrap();
    let second = leases
        .acquire(7, LeaseScope::Compression, at(5_000), LEASE)
        .await
        .unwrap()
        .expect("a released lease is free");
    assert_ne!(second.token, first.token);
    let third = leases
        .acquire(7, LeaseScope::Compression, at(15_000), LEASE)
        .await
        .unwrap()
        .expect("an expired lease is free at its until");
    assert!(
        leases
            .renew(&second, at(15_001), LEASE)
            .await
            .unwrap()
            .is_none(),
        "the expired holder cannot renew"
    );
    leases.release(&second).await.unwrap();
    assert!(
        leases
            .acquire(7, LeaseScope::Compression, at(15_002), LEASE)
            .await
            .unwrap()
            .is_none(),
        "the old holder's release does not free the new holder's lease"
    );
    assert!(leases
        .renew(&third, at(20_000), LEASE)
        .await
        .unwrap()
        .is_some());
}

/// Scopes and conversations are independent: a compression never blocks a reply, and one
/// conversation never blocks another.
pub async fn leases_of_other_scopes_or_conversations_never_exclude_each_other(s: Storage) {
    let leases = leases(&s);
    for (conversation, scope) in [
        (1, LeaseScope::Replies),
        (1, LeaseScope::Compression),
        (2, LeaseScope::Replies),
        (-1_001_234_567_890, LeaseScope::Replies),
    ] {
        assert!(
            leases
                .acquire(conversation, scope, at(0), LEASE)
                .await
                .unwrap()
                .is_some(),
            "{conversation} {scope}"
        );
    }
}

/// A take-over gets the lease at once; the previous holder can neither renew nor release it.
pub async fn a_taken_over_lease_is_lost_to_its_previous_holder(s: Storage) {
    let leases = leases(&s);
    let running = leases
        .acquire(3, LeaseScope::Compression, at(0), LEASE)
        .await
        .unwrap()
        .unwrap();
    let reset = leases
        .take_over(3, LeaseScope::Compression, at(1), LEASE)
        .await
        .unwrap();
    assert_eq!(reset.until, at(10_001));
    assert!(leases
        .renew(&running, at(2), LEASE)
        .await
        .unwrap()
        .is_none());
    leases.release(&running).await.unwrap();
    assert!(leases
        .acquire(3, LeaseScope::Compression, at(3), LEASE)
        .await
        .unwrap()
        .is_none());
    leases.release(&reset).await.unwrap();
    assert!(leases
        .acquire(3, LeaseScope::Compression, at(4), LEASE)
        .await
        .unwrap()
        .is_some());
    // Taking over a lease nobody holds simply takes it.
    let fresh = leases
        .take_over(4, LeaseScope::Replies, at(5), LEASE)
        .await
        .unwrap();
    assert!(leases.renew(&fresh, at(6), LEASE).await.unwrap().is_some());
}

/// Whoever holds a conversation's reply lease — a reset, the terminal chat — keeps the inbox
/// from claiming its updates; a compression lease does not.
pub async fn a_held_reply_lease_keeps_the_inbox_from_claiming_its_conversation(s: Storage) {
    let inbox: &dyn UpdateInbox = s.inbox.as_ref();
    for (update_id, conversation) in [(1, 5), (2, 6)] {
        inbox
            .store(&InboxUpdate {
                update_id,
                conversation,
                payload: "{}".to_owned(),
                received_at: at(0),
            })
            .await
            .unwrap();
    }
    let reset = inbox
        .acquire(5, LeaseScope::Replies, at(0), LEASE)
        .await
        .unwrap()
        .unwrap();
    inbox
        .acquire(6, LeaseScope::Compression, at(0), LEASE)
        .await
        .unwrap()
        .unwrap();
    let claimed = inbox.claim(at(1), LEASE).await.unwrap().unwrap();
    assert_eq!(
        claimed.update.update_id, 2,
        "a compression does not hold replies back"
    );
    assert_eq!(claimed.lease.scope, LeaseScope::Replies);
    assert!(inbox.claim(at(2), LEASE).await.unwrap().is_none());
    assert!(
        inbox
            .acquire(6, LeaseScope::Replies, at(3), LEASE)
            .await
            .unwrap()
            .is_none(),
        "a claim is a reply lease like any other"
    );
    inbox.release(&reset).await.unwrap();
    let claimed = inbox.claim(at(4), LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.update.update_id, 1);
}

/// Eight acquirers racing for one lease, round after round: exactly one wins each round.
pub async fn racing_acquirers_get_a_lease_exactly_once(s: Storage) {
    let leases = leases(&s);
    for round in 0..20_i64 {
        let winners = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let leases = Arc::clone(&leases);
            let winners = Arc::clone(&winners);
            tasks.push(tokio::spawn(async move {
                let now = at(round * 20_000);
                if leases
                    .acquire(round, LeaseScope::Compression, now, LEASE)
                    .await
                    .unwrap()
                    .is_some()
                {
                    winners.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(winners.load(Ordering::SeqCst), 1, "round {round}");
    }
}
