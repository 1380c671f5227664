//! # butler-tests
//!
//! Invariants written once and run against every storage backend: the in-memory fakes here,
//! SQLite and the MongoDB-wire server in the backend test files. Each check is an async
//! function taking a [`compression::Backend`]; `tests/*.rs` instantiate them.

pub mod compression;
