//! Ports: the capabilities the application needs from the outside world, as async traits.
//! Adapters in `butler-infrastructure` implement them; tests use in-memory fakes from
//! `butler-testkit`. Each port has its own error type, and each documents its contract
//! (ordering, what "not found" means, which errors are worth retrying).

mod clock;
mod conversation_leases;
mod fact_repository;
mod llm;
mod memory_repository;
mod profile_repository;
mod reminder_repository;
mod speech;
mod tokens;
mod update_inbox;

pub use clock::Clock;
pub use conversation_leases::{ConversationLeases, Lease, LeaseError, LeaseScope};
pub use fact_repository::{FactRepository, FactStoreError, SavedFacts};
pub use llm::{
    LlmClient, LlmError, LlmReply, LlmRequest, LlmStream, OutputFormat, Priority, RequestOptions,
    StreamEvent,
};
pub use memory_repository::{MemoryStoreError, UserEventCount, UserMemoryRepository};
pub use profile_repository::{ProfilePage, ProfileStoreError, UserProfileRepository};
pub use reminder_repository::{
    ChangeOutcome, ClaimedReminder, ReminderRepository, ReminderStoreError,
};
pub use speech::{AudioClip, SpeechToText, SttError, Transcript};
pub use tokens::TokenCounter;
pub use update_inbox::{Claimed, InboxError, InboxUpdate, Stored, UpdateInbox};
