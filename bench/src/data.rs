//! Realistic conversation data: message and reply lengths like a chat with the butler, a
//! summary near its budget, and stored histories.

use std::sync::Arc;

use butler_domain::ports::{
    MemoryStoreError, ProfileStoreError, UserMemoryRepository, UserProfileRepository,
};
use butler_domain::{Source, UserId, UserMemoryEvent, UserProfile};
use time::OffsetDateTime;

/// What the scripted model answers: a reply of typical length (≈ 300 characters).
pub const REPLY: &str = "Certainly, sir. I have put the dentist on Thursday at half past four \
and moved the call with your sister to Friday morning, as you asked. The forecast promises \
rain in the afternoon, so I would suggest the umbrella and perhaps the earlier train. Shall I \
remind you an hour before?";

const TOPICS: [&str; 6] = [
    "could you remind me what we decided about the garden fence and the paint colour",
    "please move my Thursday appointment and tell me what else is on that day",
    "what was the name of the restaurant my sister recommended last month",
    "Напомни, пожалуйста, что я обещал купить к субботнему ужину",
    "I need a short birthday note for an old colleague, something warm",
    "what should I pack for two days in Edinburgh in late October",
];

/// The `k`-th message of `user` (≈ 80–100 characters, some in Russian).
#[must_use]
pub fn user_text(user: i64, k: usize) -> String {
    let i = usize::try_from(user.unsigned_abs() % 6).unwrap_or(0);
    format!("{} (message {k})", TOPICS[(i + k) % TOPICS.len()])
}

/// A rolling summary of ≈ 1,000 characters.
#[must_use]
pub fn summary() -> String {
    "The user is a retired engineer living in Leeds with a cat called Biscuit. He prefers \
     short, polite answers and likes to be addressed as sir. Family: a sister, Margaret, in \
     York (calls on Fridays), and a son abroad. Health: dentist every six months, a knee that \
     complains in cold weather. Projects: repainting the garden fence (chose sage green), \
     learning Italian with an app, a trip to Edinburgh planned for late October. Food: \
     vegetarian on weekdays, fond of the Indian restaurant on Kirkgate his sister \
     recommended. Recurring requests: reminders an hour before appointments, weather before \
     leaving the house, birthday notes for former colleagues. Open items: buy bread and \
     candles for Saturday dinner, return the library book by the 14th, ask the plumber about \
     the radiator. He writes in English and sometimes in Russian, and expects replies in the \
     language he used."
        .to_owned()
}

/// `n` alternating user/assistant events of `user`, one second apart, ending a day ago.
#[must_use]
pub fn history(user: UserId, n: usize) -> Vec<UserMemoryEvent> {
    let end = OffsetDateTime::now_utc() - time::Duration::days(1);
    (0..n)
        .map(|k| {
            let back = i64::try_from(n - k).unwrap_or(i64::MAX);
            let at = end - time::Duration::seconds(back);
            if k % 2 == 0 {
                UserMemoryEvent::user(user, user_text(user.get(), k), Source::Text, at)
            } else {
                UserMemoryEvent::assistant(user, REPLY, Source::Text, at)
            }
        })
        .collect()
}

/// A profile with the summary, its watermark just before the stored events.
#[must_use]
pub fn profile_with_summary(user: UserId) -> UserProfile {
    let mut profile = UserProfile::default_for(user);
    let before = history(user, 1)[0].cursor();
    profile.memory_summary = Some(summary());
    profile.summary_watermark = Some(butler_domain::EventCursor {
        created_at: before.created_at - time::Duration::days(1),
        event_id: before.event_id,
    });
    profile
}

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The profile store failed.
    #[error(transparent)]
    Profile(#[from] ProfileStoreError),
    /// The memory store failed.
    #[error(transparent)]
    Memory(#[from] MemoryStoreError),
}

/// Stores `events` events for `user` (in batches of 500) and, with `summary`, a profile
/// holding the summary.
///
/// # Errors
/// If storage fails.
pub async fn seed_user(
    profiles: &Arc<dyn UserProfileRepository>,
    memory: &Arc<dyn UserMemoryRepository>,
    user: UserId,
    events: usize,
    summary: bool,
) -> Result<(), SeedError> {
    let mut profile = profiles.get_or_create(user).await?;
    if summary {
        let wanted = profile_with_summary(user);
        profile.memory_summary = wanted.memory_summary;
        profile.summary_watermark = wanted.summary_watermark;
        profiles.save(&profile).await?;
    }
    for chunk in history(user, events).chunks(500) {
        memory.append(chunk).await?;
    }
    Ok(())
}
