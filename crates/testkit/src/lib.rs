//! # butler-testkit
//!
//! What tests need and production never links: in-memory fakes of every port ([`fakes`]), a
//! scripted OpenAI-compatible LLM server ([`llm_server`]), an oracle model that plays the butler's
//! memory perfectly for memory benchmarks ([`oracle`]), a fake Telegram Bot API server
//! ([`telegram`]) and real services started on loopback ([`services`]) and fresh stores of either backend
//! ([`storage`]). A dev-dependency only.

pub mod contract;
pub mod fakes;
pub mod http;
pub mod llm_server;
pub mod oracle;
pub mod services;
pub mod storage;
pub mod telegram;
