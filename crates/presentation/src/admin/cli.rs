//! Command-line arguments of `profile_admin`. Values are validated by the domain's parsers,
//! so an unknown tone exits with status 2 and the list of allowed values.

use std::path::PathBuf;

use butler_domain::reminder::UserTimeZone;
use butler_domain::{Language, Tone, UserId};
use clap::{Parser, Subcommand};

/// Support tool for Personalised Butler profiles and memory.
#[derive(Debug, Parser)]
#[command(
    name = "profile_admin",
    version,
    about = "Inspect and change Personalised Butler profiles and memory",
    after_help = "Uses the bot's configuration and database; it has no key of its own, so who may \
                  run it is decided by who may read those (docs/operations/admin.md).\n\
                  Exit codes: 0 ok, 2 usage or invalid value, 3 not found, 4 storage unavailable."
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
        #[arg(long, value_name = "USER_ID", allow_negative_numbers = true)]
        after: Option<UserId>,
    },
    /// Show a profile, its summary and recent events.
    Show {
        /// The user, or a group conversation (a negative id: see `group-id`).
        #[arg(allow_negative_numbers = true)]
        user_id: UserId,
        /// Recent events shown.
        #[arg(long, default_value_t = 10)]
        events: usize,
    },
    /// Reset a profile to the default and delete all of its memory.
    Reset {
        /// The user, or a group conversation (a negative id: see `group-id`).
        #[arg(allow_negative_numbers = true)]
        user_id: UserId,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Change persona, tone, language, topics, time zone or reminder offers.
    Update {
        /// The user, or a group conversation (a negative id: see `group-id`).
        #[arg(allow_negative_numbers = true)]
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
        /// New time zone, an IANA name (Europe/Moscow, Asia/Yekaterinburg, UTC), or `default`
        /// for the operator's DEFAULT_TIME_ZONE.
        #[arg(long, value_name = "ZONE|default")]
        time_zone: Option<ZoneArg>,
        /// Reminders offered from memory (the user's consent; off by default): `on` or `off`.
        #[arg(long, value_name = "on|off")]
        reminder_offers: Option<OnOff>,
    },
    /// Show a user's limits, or set exceptions to the operator's defaults (RATE_LIMIT_PER_MINUTE,
    /// RATE_LIMIT_BURST, DAILY_MESSAGE_QUOTA). Each value is a number or `default`; 0 lifts
    /// the per-minute rate or the daily quota for this user.
    Limits {
        /// The user, or a group conversation (a negative id: see `group-id`).
        #[arg(allow_negative_numbers = true)]
        user_id: UserId,
        /// Messages per minute (0 = unlimited) or `default`.
        #[arg(long, value_name = "N|default")]
        per_minute: Option<LimitArg>,
        /// Messages at once before the rate applies (≥ 1) or `default`.
        #[arg(long, value_name = "N|default")]
        burst: Option<LimitArg>,
        /// Messages per UTC day (0 = unlimited) or `default`.
        #[arg(long, value_name = "N|default")]
        per_day: Option<LimitArg>,
    },
    /// List a user's remembered facts (`facts USER_ID`), or forget one
    /// (`facts forget USER_ID FACT_ID`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Facts {
        /// The user (or group conversation) whose facts to list.
        #[arg(required = true, allow_negative_numbers = true)]
        user_id: Option<UserId>,
        /// Also list facts replaced by newer ones.
        #[arg(long)]
        history: bool,
        /// `forget USER_ID FACT_ID`.
        #[command(subcommand)]
        action: Option<FactsAction>,
    },
    /// List a user's reminders (due times in the user's time zone), or cancel a pending one
    /// with `--cancel ID` (the id as listed, or all of it).
    Reminders {
        /// The user.
        #[arg(allow_negative_numbers = true)]
        user_id: UserId,
        /// Cancel this pending reminder.
        #[arg(long, value_name = "ID")]
        cancel: Option<String>,
    },
    /// Everything stored about a user, as JSON.
    Export {
        /// The user, or a group conversation (a negative id: see `group-id`).
        #[arg(allow_negative_numbers = true)]
        user_id: UserId,
    },
    /// The memory id of a group conversation, for the other commands: a group's chat id, or
    /// with `--topic` the id of one topic of a forum group.
    GroupId {
        /// The group's chat id (negative, as Telegram shows it, e.g. -1001234567890).
        #[arg(allow_negative_numbers = true)]
        chat_id: i64,
        /// A forum topic (its message thread id).
        #[arg(long)]
        topic: Option<i32>,
    },
    /// Create storage indexes / apply migrations (idempotent).
    Migrate,
}

/// `profile_admin facts` subcommands.
#[derive(Debug, Subcommand)]
pub enum FactsAction {
    /// Delete one fact (ids are in `profile_admin facts USER_ID`).
    Forget {
        /// The user, or a group conversation (a negative id: see `group-id`).
        #[arg(allow_negative_numbers = true)]
        user_id: UserId,
        /// The fact's id (a UUID).
        fact_id: uuid::Uuid,
    },
}

/// A per-user limit on the command line: a number, or `default` for the operator's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitArg(pub Option<u32>);

impl std::str::FromStr for LimitArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("default") {
            return Ok(Self(None));
        }
        s.parse::<u32>()
            .map(|n| Self(Some(n)))
            .map_err(|_| format!("expected a whole number or `default`, got {s:?}"))
    }
}

/// A time zone on the command line: an IANA name, or `default` for the operator's
/// `DEFAULT_TIME_ZONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneArg(pub Option<UserTimeZone>);

impl std::str::FromStr for ZoneArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("default") {
            return Ok(Self(None));
        }
        UserTimeZone::new(s)
            .map(|zone| Self(Some(zone)))
            .map_err(|e| format!("{e}, or `default`"))
    }
}

/// A switch on the command line: `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnOff(pub bool);

impl std::str::FromStr for OnOff {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" => Ok(Self(true)),
            "off" => Ok(Self(false)),
            _ => Err(format!("expected `on` or `off`, got {s:?}")),
        }
    }
}
