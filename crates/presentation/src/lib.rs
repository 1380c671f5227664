//! # butler-presentation
//!
//! The front ends of Personalised Butler: the Telegram bot, the terminal chat, the
//! `profile_admin` CLI and the memory worker loop. They drive the use cases of
//! `butler-application`; adapters are injected by `butler-factory`.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod chat;
mod lease;
pub mod telegram;
pub mod worker;
