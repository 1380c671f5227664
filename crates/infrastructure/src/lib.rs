//! Adapters for the ports of `butler-domain`.

pub mod mongo;
pub mod sqlite;
