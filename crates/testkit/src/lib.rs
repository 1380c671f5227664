//! # butler-testkit
//!
//! What tests need and production never links: in-memory fakes of every port ([`fakes`]) and
//! real services started on loopback ([`services`]). A dev-dependency only.

pub mod fakes;
pub mod services;
