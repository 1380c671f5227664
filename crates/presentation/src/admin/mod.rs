//! `profile_admin`: the support-staff CLI. Parsing ([`cli`]), the key guard ([`auth`]) and
//! command execution with table or JSON output ([`run`]). The binary only loads settings,
//! builds the use cases through the factory and calls [`run::run`].

pub mod auth;
pub mod cli;
pub mod output;
pub mod run;

pub use cli::{AdminCli, AdminCommand};
pub use run::{run, AdminDeps, ExitCode, RESET_WAIT};
