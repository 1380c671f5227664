//! Executes a parsed `profile_admin` command against the use cases and maps every outcome to
//! an exit code: 0 ok, 2 usage or invalid value, 3 not found, 4 storage unavailable, 6 the user
//! stayed busy (a reset waited for a reply in flight, in vain). (5 meant "unauthorised" while
//! `profile_admin` pretended to check a key; it is not reused.)

use std::io::Write;
use std::sync::Arc;

use butler_application::admin::{
    AdminError, FactsUseCase, ListProfilesUseCase, RemindersAdminUseCase, ShowUserUseCase,
    UpdateProfileUseCase,
};
use butler_application::reset::ResetError;
use butler_application::ResetPersonalizationUseCase;
use butler_domain::ports::ProfilePage;
use butler_domain::{ProfileUpdate, UserId};
use futures::future::BoxFuture;

use super::cli::{AdminCli, AdminCommand, FactsAction};
use super::output;

/// Process exit codes of `profile_admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// Bad usage or an invalid value.
    Usage = 2,
    /// The user does not exist.
    NotFound = 3,
    /// The database could not be used.
    Storage = 4,
    /// The user's conversation stayed busy (a reply being written) for the whole wait.
    Busy = 6,
}

/// How long `reset` waits for a reply in flight before giving up with [`ExitCode::Busy`]
/// (the reply's own deadline is shorter).
pub const RESET_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Creates indexes / applies migrations; returns a human-readable report.
pub type Migrate = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// The use cases `profile_admin` drives.
#[derive(Clone)]
pub struct AdminDeps {
    /// `list`.
    pub list: ListProfilesUseCase,
    /// `show` and `export`.
    pub show: ShowUserUseCase,
    /// `update`.
    pub update: UpdateProfileUseCase,
    /// `reset`.
    pub reset: ResetPersonalizationUseCase,
    /// `facts`.
    pub facts: FactsUseCase,
    /// `reminders`.
    pub reminders: RemindersAdminUseCase,
    /// `migrate`.
    pub migrate: Migrate,
    /// How long `reset` waits for a reply in flight ([`RESET_WAIT`] in production).
    pub reset_wait: std::time::Duration,
}

fn fail(err: &mut dyn Write, e: &AdminError) -> ExitCode {
    let _ = writeln!(err, "profile_admin: {e}");
    match e {
        AdminError::NotFound { .. }
        | AdminError::FactNotFound { .. }
        | AdminError::ReminderNotFound { .. } => ExitCode::NotFound,
        AdminError::Invalid(_)
        | AdminError::AmbiguousReminder { .. }
        | AdminError::ReminderFinished { .. } => ExitCode::Usage,
        AdminError::ReminderDelivering { .. } => ExitCode::Busy,
        AdminError::Storage(_) => ExitCode::Storage,
    }
}

fn json(out: &mut dyn Write, value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            let _ = writeln!(out, "{text}");
        }
        Err(e) => {
            let _ = writeln!(out, "{{\"error\": \"cannot serialise output: {e}\"}}");
        }
    }
}

/// Runs one command. `confirm` asks the operator (only called for `reset` without `--yes`;
/// return `None` when there is no terminal to ask on).
pub async fn run(
    cli: AdminCli,
    deps: &AdminDeps,
    out: &mut dyn Write,
    err: &mut dyn Write,
    confirm: &mut dyn FnMut(&str) -> Option<bool>,
) -> ExitCode {
    match cli.command {
        AdminCommand::List { limit, after } => {
            match deps.list.execute(ProfilePage { after, limit }).await {
                Ok(rows) if cli.json => {
                    let views: Vec<_> = rows
                        .iter()
                        .map(|o| output::profile_view(&o.profile, o.event_count))
                        .collect();
                    json(out, &views);
                    ExitCode::Ok
                }
                Ok(rows) => {
                    let _ = write!(out, "{}", output::list_table(&rows));
                    ExitCode::Ok
                }
                Err(e) => fail(err, &e),
            }
        }
        AdminCommand::Show { user_id, events } => match deps.show.execute(user_id, events).await {
            Ok(record) if cli.json => {
                json(out, &output::record_view(&record));
                ExitCode::Ok
            }
            Ok(record) => {
                let _ = write!(out, "{}", output::show_text(&record));
                ExitCode::Ok
            }
            Err(e) => fail(err, &e),
        },
        AdminCommand::Facts {
            action: Some(FactsAction::Forget { user_id, fact_id }),
            ..
        } => match deps.facts.forget(user_id, fact_id).await {
            Ok(()) if cli.json => {
                json(
                    out,
                    &serde_json::json!({"user_id": user_id.get(), "forgotten": fact_id.to_string()}),
                );
                ExitCode::Ok
            }
            Ok(()) => {
                let _ = writeln!(out, "forgot fact {fact_id} of user {user_id}");
                ExitCode::Ok
            }
            Err(e) => fail(err, &e),
        },
        AdminCommand::Facts {
            user_id: Some(user_id),
            history,
            action: None,
        } => match deps.facts.list(user_id, history).await {
            Ok(facts) if cli.json => {
                let views: Vec<_> = facts.iter().map(output::fact_view).collect();
                json(out, &views);
                ExitCode::Ok
            }
            Ok(facts) => {
                let _ = write!(out, "{}", output::facts_table(&facts));
                ExitCode::Ok
            }
            Err(e) => fail(err, &e),
        },
        AdminCommand::Facts { user_id: None, .. } => {
            let _ = writeln!(
                err,
                "profile_admin: facts needs a USER_ID, or `forget USER_ID FACT_ID`"
            );
            ExitCode::Usage
        }
        AdminCommand::Reminders {
            user_id,
            cancel: Some(id),
        } => match deps.reminders.cancel(user_id, &id).await {
            Ok(r) if cli.json => {
                json(
                    out,
                    &serde_json::json!({"user_id": user_id.get(), "cancelled": r.id.to_string()}),
                );
                ExitCode::Ok
            }
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "cancelled reminder {} of user {user_id}: {}",
                    r.id,
                    output::truncate(&r.text, 60)
                );
                ExitCode::Ok
            }
            Err(e) => fail(err, &e),
        },
        AdminCommand::Reminders {
            user_id,
            cancel: None,
        } => match deps.reminders.list(user_id).await {
            Ok(listed) if cli.json => {
                let views: Vec<_> = listed
                    .reminders
                    .iter()
                    .map(|r| output::reminder_view(r, &listed.zone))
                    .collect();
                json(out, &views);
                ExitCode::Ok
            }
            Ok(listed) => {
                let _ = write!(
                    out,
                    "{}",
                    output::reminders_table(&listed.reminders, &listed.zone)
                );
                ExitCode::Ok
            }
            Err(e) => fail(err, &e),
        },
        AdminCommand::Export { user_id } => match deps.show.execute(user_id, usize::MAX).await {
            Ok(record) => {
                json(out, &output::record_view(&record));
                ExitCode::Ok
            }
            Err(e) => fail(err, &e),
        },
        AdminCommand::Update {
            user_id,
            persona,
            tone,
            language,
            topics,
            time_zone,
            reminder_offers,
        } => {
            let update = ProfileUpdate {
                persona,
                tone,
                language,
                time_zone: time_zone.map(|z| z.0),
                reminder_offers: reminder_offers.map(|o| o.0),
                preferred_topics: topics.map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                }),
                ..ProfileUpdate::default()
            };
            if update.is_empty() {
                let _ = writeln!(err, "profile_admin: nothing to update: give --persona, --tone, --language, --topics, --time-zone or --reminder-offers");
                return ExitCode::Usage;
            }
            match deps.update.execute(user_id, &update).await {
                Ok(profile) if cli.json => {
                    json(out, &output::updated_view(&profile));
                    ExitCode::Ok
                }
                Ok(profile) => {
                    let _ = writeln!(
                        out,
                        "updated user {}: persona={:?} tone={} language={} topics={:?} time-zone={} reminder-offers={}",
                        profile.user_id,
                        profile.persona,
                        profile.tone,
                        profile.language,
                        profile.preferred_topics,
                        output::zone_text(&profile),
                        if profile.reminder_offers { "on" } else { "off" }
                    );
                    ExitCode::Ok
                }
                Err(e) => fail(err, &e),
            }
        }
        AdminCommand::Limits {
            user_id,
            per_minute,
            burst,
            per_day,
        } => {
            let update = ProfileUpdate {
                per_minute: per_minute.map(|a| a.0),
                burst: burst.map(|a| a.0),
                per_day: per_day.map(|a| a.0),
                ..ProfileUpdate::default()
            };
            let profile = if update.is_empty() {
                deps.show
                    .execute(user_id, 0)
                    .await
                    .map(|record| record.overview.profile)
            } else {
                deps.update.execute(user_id, &update).await
            };
            match profile {
                Ok(profile) if cli.json => {
                    json(out, &output::limits_view(&profile.limits));
                    ExitCode::Ok
                }
                Ok(profile) => {
                    let _ = writeln!(
                        out,
                        "user {}: {}",
                        profile.user_id,
                        output::limits_text(&profile.limits)
                    );
                    ExitCode::Ok
                }
                Err(e) => fail(err, &e),
            }
        }
        AdminCommand::Reset { user_id, yes } => {
            // Resetting creates a default profile; an unknown id is a typo, not a request
            // to create one.
            if let Err(e) = deps.show.execute(user_id, 0).await {
                return fail(err, &e);
            }
            if !yes {
                match confirm(&format!("Reset user {user_id}: delete all memory and restore the default profile? [y/N] ")) {
                    Some(true) => {}
                    Some(false) => {
                        let _ = writeln!(err, "profile_admin: reset cancelled");
                        return ExitCode::Usage;
                    }
                    None => {
                        let _ = writeln!(err, "profile_admin: refusing to reset without --yes when not on a terminal");
                        return ExitCode::Usage;
                    }
                }
            }
            match reset_when_free(&deps.reset, user_id, deps.reset_wait, err).await {
                Ok(done) if cli.json => {
                    json(
                        out,
                        &serde_json::json!({"user_id": user_id.get(), "events_deleted": done.events_deleted, "facts_deleted": done.facts_deleted, "reminders_deleted": done.reminders_deleted}),
                    );
                    ExitCode::Ok
                }
                Ok(done) => {
                    let _ = writeln!(
                        out,
                        "reset user {user_id}: {} events and {} facts deleted, profile restored to default; {} reminders deleted",
                        done.events_deleted,
                        done.facts_deleted,
                        done.reminders_deleted
                    );
                    ExitCode::Ok
                }
                Err(ResetError::Busy) => {
                    let _ = writeln!(
                        err,
                        "profile_admin: user {user_id} was being answered for all of {} ms; nothing was reset, try again",
                        deps.reset_wait.as_millis()
                    );
                    ExitCode::Busy
                }
                Err(e) => {
                    let _ = writeln!(err, "profile_admin: storage unavailable: {e}");
                    ExitCode::Storage
                }
            }
        }
        AdminCommand::GroupId { chat_id, topic } => {
            if chat_id >= 0 {
                let _ = writeln!(
                    err,
                    "profile_admin: {chat_id} is not a group's chat id: Telegram's group ids are negative (e.g. -1001234567890)"
                );
                return ExitCode::Usage;
            }
            let id = UserId::group(chat_id, topic);
            if cli.json {
                json(out, &serde_json::json!({ "user_id": id.get() }));
            } else {
                let _ = writeln!(out, "{id}");
            }
            ExitCode::Ok
        }
        AdminCommand::Migrate => match (deps.migrate)().await {
            Ok(report) => {
                let _ = writeln!(out, "{report}");
                ExitCode::Ok
            }
            Err(e) => {
                let _ = writeln!(err, "profile_admin: migrate failed: {e}");
                ExitCode::Storage
            }
        },
    }
}

/// Resets the user as soon as no reply to them is being written, waiting up to `wait` (and
/// saying so once).
async fn reset_when_free(
    reset: &ResetPersonalizationUseCase,
    user_id: UserId,
    wait: std::time::Duration,
    err: &mut dyn Write,
) -> Result<butler_application::ResetOutput, ResetError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut told = false;
    loop {
        match reset.execute(user_id).await {
            Err(ResetError::Busy) if tokio::time::Instant::now() < deadline => {
                if !told {
                    let _ = writeln!(
                        err,
                        "profile_admin: a reply to user {user_id} is being written; waiting for it"
                    );
                    told = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}
