//! # butler-application
//!
//! The use cases of Personalised Butler, written only against the ports of `butler-domain`:
//!
//! - [`reply::PersonalizedReplyUseCase`] — answer a message in the butler's persona, with memory;
//! - [`observe::ObserveMessageUseCase`] — keep a message nobody addressed to the butler (a
//!   group's chatter) as context, with no model call;
//! - [`reset::ResetPersonalizationUseCase`] — forget a user;
//! - [`memory::CompressMemoryUseCase`] — fold older events into the rolling summary;
//! - [`admin`] — list, show, update and export users for `profile_admin`;
//! - [`memory::MemoryWorkerUseCase`] — one run of the background compression worker;
//! - [`prompt::PersonalizationService`] — prompt assembly within the token budget.
//!
//! No database, HTTP client or Telegram type is named here (a test enforces it).
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod memory;
pub mod observe;
pub mod prompt;
pub mod reminders;
pub mod reply;
pub mod reset;
pub mod tokens;

pub use memory::{CompressConfig, CompressMemoryUseCase, CompressOutcome, CompressionScheduler};
pub use observe::{ObserveInput, ObserveMessageUseCase, Observed};
pub use prompt::{PersonalizationService, PromptBudget};
pub use reply::{
    PersonalizedReplyUseCase, ReplyConfig, ReplyInput, ReplyObserver, ReplyOutput, ReplySink,
    ReplyStatus,
};
pub use reset::{ResetOutput, ResetPersonalizationUseCase};
