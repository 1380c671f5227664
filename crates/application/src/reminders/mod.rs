//! Reminders: asking for, listing, moving and cancelling them in a private chat
//! ([`ManageRemindersUseCase`]), and firing the due ones ([`FireRemindersUseCase`]).
//!
//! The model only transcribes a request ([`request`]); resolving it to an instant, limits and
//! the confirmation in words are code. Firing claims due reminders with a lease
//! ([`ReminderRepository`](butler_domain::ports::ReminderRepository)), so any number of bot
//! processes deliver each once; the text is a template in the butler's voice, so a reminder
//! never depends on the model being up. The user's zone is learned from the conversation only
//! with their consent ([`ZoneOfferUseCase`]).

mod fire;
mod manage;
mod offer;
pub mod request;
mod texts;
mod zone_offer;

pub use fire::{FireConfig, FireOutcome, FireRemindersUseCase, ReminderChannel, SendError};
pub use manage::{ManageRemindersUseCase, ReminderMessage, RemindersConfig, ASK_BACK_WINDOW};
pub use offer::{ReminderOffer, ReminderOfferUseCase};
pub use texts::delivery_text;
pub use zone_offer::{ZoneOffer, ZoneOfferUseCase};

use butler_domain::ports::{Clock, ProfileStoreError, UserProfileRepository};
use butler_domain::{UserId, UserProfile};

/// Profile writes retried after a concurrent change (a compression saving its summary).
const SAVE_ATTEMPTS: usize = 5;

/// Applies `edit` to the user's stored profile (created if missing) with compare-and-set,
/// reading it again after a concurrent change, up to [`SAVE_ATTEMPTS`] times.
async fn edit_profile(
    profiles: &dyn UserProfileRepository,
    clock: &dyn Clock,
    user: UserId,
    edit: impl Fn(&mut UserProfile),
) -> Result<UserProfile, ProfileStoreError> {
    let mut attempt = 0;
    loop {
        let mut profile = profiles.get_or_create(user).await?;
        edit(&mut profile);
        profile.updated_at = butler_domain::timestamp::truncate_to_millis(clock.now());
        match profiles.save(&profile).await {
            Err(ProfileStoreError::VersionConflict { .. }) if attempt + 1 < SAVE_ATTEMPTS => {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Told what happens to reminders (the factory counts it in metrics). Every method has an
/// empty default; they must be cheap and never block.
pub trait ReminderObserver: Send + Sync {
    /// A reminder was set.
    fn scheduled(&self) {}
    /// A reminder was cancelled by its user.
    fn cancelled(&self) {}
    /// A reminder was delivered, `lag_seconds` after it was due; `late` when past the
    /// late-note threshold.
    fn fired(&self, _lag_seconds: f64, _late: bool) {}
    /// A delivery failed (it is retried when the send surely did not happen).
    fn failed(&self) {}
    /// A reminder was offered from memory.
    fn offered(&self) {}
    /// An offer was answered: `accepted` for "yes".
    fn offer_answered(&self, _accepted: bool) {}
}
