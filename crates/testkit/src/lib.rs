//! # butler-testkit
//!
//! What tests need and production never links: in-memory fakes of every port ([`fakes`]) and
//! real services started on loopback ([`services`]), and a fake Telegram Bot API server
//! ([`telegram`]). A dev-dependency only.

pub mod fakes;
pub mod services;
pub mod telegram;
