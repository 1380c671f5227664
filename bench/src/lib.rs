//! # butler-bench
//!
//! Measures everything around the language model, so regressions show: the reply path end to
//! end (fake Telegram Bot API over HTTP → real teloxide bot → reply use case → SQLite or the
//! MongoDB-wire server → scripted zero-latency LLM over HTTP → `sendMessage`), prompt
//! assembly, the bot's resident memory, and memory compression.
//!
//! `--memory` measures long-term memory instead: what the butler still knows after 150
//! messages and several compressions, summary-only against summary + facts ([`memory`]).
//!
//! `cargo run --release -p butler-bench` (or `just bench`) prints the table of
//! `docs/benchmarks.md`; `--quick` runs reduced sizes to catch breakage in CI. The criterion
//! benches (`cargo bench -p butler-bench`) cover prompt assembly in detail.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod backend;
pub mod compress;
pub mod concurrency;
pub mod cpu;
pub mod data;
pub mod delivery;
pub mod e2e;
pub mod llama_server;
pub mod memory;
pub mod prompt;
pub mod report;
pub mod rss;
pub mod signs;
pub mod stats;
pub mod streaming;
pub mod timing;
