//! Front ends: Telegram bot, terminal chat, admin CLI and worker loop.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod telegram;
