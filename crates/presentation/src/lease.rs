//! Holding a conversation lease while work runs: renewed every third of its length, so it
//! never lapses under a live holder, and given up only when renewal says it is lost (or keeps
//! failing until it has expired).

use std::time::Duration;

use butler_domain::ports::{ConversationLeases, Lease};

/// Renews `lease` for `lease_for` every third of `lease_for`; returns only when the lease is
/// lost (taken by someone else, or expired while renewal failed). Run it beside the work the
/// lease guards and stop the work when it returns.
pub(crate) async fn keep(leases: &dyn ConversationLeases, mut lease: Lease, lease_for: Duration) {
    let every = lease_for / 3;
    let lease_for = time::Duration::try_from(lease_for).unwrap_or(time::Duration::seconds(30));
    loop {
        tokio::time::sleep(every).await;
        let now = time::OffsetDateTime::now_utc();
        match leases.renew(&lease, now, lease_for).await {
            Ok(Some(renewed)) => lease = renewed,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, conversation = lease.conversation, scope = %lease.scope, "lease renewal failed; retrying");
                if now >= lease.until {
                    return;
                }
            }
        }
    }
}
