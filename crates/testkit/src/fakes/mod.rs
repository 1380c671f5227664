//! In-memory fakes of every port, with switches to make them fail, for fast unit tests of the
//! application. They follow the port contracts exactly (the storage contract suite runs against
//! them too), so a use case that passes here behaves the same on a real backend.

mod clock;
mod facts;
mod faulty;
mod inbox;
mod llm;
mod memory;
mod profiles;
mod reminders;
mod speech;
mod tokens;

pub use clock::ManualClock;
pub use facts::InMemoryFacts;
pub use faulty::FaultyMemory;
pub use inbox::InMemoryInbox;
pub use llm::{FakeLlm, LlmStep};
pub use memory::InMemoryMemory;
pub use profiles::InMemoryProfiles;
pub use reminders::InMemoryReminders;
pub use speech::FakeStt;
pub use tokens::CharCounter;

/// A switch shared by fakes: when on, every operation fails as "unavailable".
#[derive(Debug, Default)]
pub struct Outage(std::sync::atomic::AtomicBool);

impl Outage {
    /// Turns the outage on or off.
    pub fn set(&self, down: bool) {
        self.0.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the outage is on.
    #[must_use]
    pub fn is_down(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
