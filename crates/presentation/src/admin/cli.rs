//! Command-line arguments of `profile_admin`. Values are validated by the domain's parsers,
//! so an unknown tone exits with status 2 and the list of allowed values.

use std::path::PathBuf;

use butler_domain::{Language, Tone, UserId};
use clap::{Parser, Subcommand};

/// Support tool for Personalised Butler profiles and memory.
#[derive(Debug, Parser)]
#[command(
    name = "profile_admin",
    version,
    about = "Inspect and change Personalised Butler profiles and memory",
    after_help = "Requires PROFILE_ADMIN_API_KEY equal to the configured BUTLER_ADMIN_KEY.\n\
                  Exit codes: 0 ok, 2 usage or invalid value, 3 not found, 4 storage unavailable, 5 unauthorised."
)]
pub struct AdminCli {
    /// Configuration file (TOML; environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `profile_admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List profiles by ascending user id.
    List {
        /// Profiles per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Start after this user id (the last id of the previous page).
        #[arg(long, value_name = "USER_ID")]
        after: Option<UserId>,
    },
    /// Show a profile, its summary and recent events.
    Show {
        /// The user.
        user_id: UserId,
        /// Recent events shown.
        #[arg(long, default_value_t = 10)]
        events: usize,
    },
    /// Reset a profile to the default and delete all of its memory.
    Reset {
        /// The user.
        user_id: UserId,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Change persona, tone, language or topics.
    Update {
        /// The user.
        user_id: UserId,
        /// New persona text.
        #[arg(long)]
        persona: Option<String>,
        /// New tone: witty, formal or casual.
        #[arg(long)]
        tone: Option<Tone>,
        /// New language: ru or en.
        #[arg(long)]
        language: Option<Language>,
        /// New topics, comma-separated (empty string clears them).
        #[arg(long, value_name = "A,B")]
        topics: Option<String>,
    },
    /// Everything stored about a user, as JSON.
    Export {
        /// The user.
        user_id: UserId,
    },
    /// Create storage indexes / apply migrations (idempotent).
    Migrate,
}
