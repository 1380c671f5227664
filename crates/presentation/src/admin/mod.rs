//! `profile_admin`: the support-staff CLI. Parsing ([`cli`]) and command execution with table
//! or JSON output ([`run`]). The binary only loads settings, builds the use cases through the
//! factory and calls [`run::run`].
//!
//! It has no key or login of its own: it opens the database with the bot's configuration, so
//! whoever can run it that way could read or change the database directly too. Access is
//! restricted where it really is decided — who may read the configuration and the SQLite
//! file, and which MongoDB user it connects as (`docs/operations/admin.md`).

pub mod cli;
pub mod output;
pub mod run;

pub use cli::{AdminCli, AdminCommand};
pub use run::{run, AdminDeps, ExitCode, RESET_WAIT};
