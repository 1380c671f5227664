//! # butler-domain
//!
//! The vocabulary of Personalised Butler, a self-hosted Telegram assistant with the persona of
//! an Alfred-style butler: user profiles, memory events, remembered facts, prompts, and the
//! ports (async traits) through which the application reaches storage, language models,
//! speech-to-text, token counters and the clock.
//!
//! This crate does no I/O and depends on no runtime: adapters live in `butler-infrastructure`,
//! use cases in `butler-application`. It is meant to be reused; every public item is documented.
//!
//! ```
//! use butler_domain::memory::{MemorySlice, Source, UserMemoryEvent};
//! use butler_domain::profile::{Language, ProfileUpdate, Tone, UserProfile};
//! use butler_domain::user::UserId;
//! use time::macros::datetime;
//!
//! let now = datetime!(2026-11-25 19:00 UTC);
//! let user = UserId::new(42);
//!
//! // Every new user meets Alfred, in Russian.
//! let profile = UserProfile::default_at(user, now);
//! assert_eq!(profile.language, Language::Ru);
//!
//! // Administrative changes are validated; bad values are typed errors, never panics.
//! let update = ProfileUpdate { tone: Some("formal".parse()?), ..ProfileUpdate::default() };
//! let profile = profile.apply(&update, now)?;
//! assert_eq!(profile.tone, Tone::Formal);
//! assert!("sarcastic".parse::<Tone>().is_err());
//!
//! // Memory is a list of events; a slice of it renders into prompt context.
//! let slice = MemorySlice {
//!     events: vec![
//!         UserMemoryEvent::user(user, "Меня зовут Пётр.", Source::Text, now),
//!         UserMemoryEvent::assistant(user, "Рад знакомству, сэр.", Source::Text, now),
//!     ],
//!     summary: Some("Пётр играет на виолончели.".into()),
//!     total_events: 2,
//!     ..MemorySlice::default()
//! };
//! assert!(slice.to_prompt_context().contains("User: Меня зовут Пётр."));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

mod code;
pub mod fact;
pub mod memory;
pub mod ports;
pub mod profile;
pub mod prompt;
pub mod reminder;
pub mod timestamp;
pub mod user;

pub use fact::{FactError, FactKey, FactKind, FactMatch, MemoryFact};
pub use memory::{EventCursor, MemorySlice, Role, Source, UserMemoryEvent};
pub use profile::{Language, ProfileUpdate, ProfileValidationError, Tone, UserLimits, UserProfile};
pub use prompt::{ChatMessage, ChatRole, PersonalizedPrompt};
pub use user::UserId;
