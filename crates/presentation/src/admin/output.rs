//! Output of `profile_admin`: serialisable views of profiles and events (the JSON form) and
//! plain-text tables (the default form). Event content is truncated in tables, never in exports.

use butler_application::admin::{ProfileOverview, UserRecord};
use butler_domain::reminder::{Reminder, ReminderStatus, UserTimeZone};
use butler_domain::{MemoryFact, UserLimits, UserMemoryEvent, UserProfile};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

/// A profile as shown to support staff.
#[derive(Debug, Serialize)]
pub struct ProfileView {
    /// User id.
    pub user_id: i64,
    /// Persona.
    pub persona: String,
    /// Tone code.
    pub tone: &'static str,
    /// Language code.
    pub language: &'static str,
    /// Preferred topics.
    pub preferred_topics: Vec<String>,
    /// Memory summary.
    pub memory_summary: Option<String>,
    /// Whether a summary exists.
    pub has_summary: bool,
    /// Exceptions to the operator's abuse limits (`null` = the default).
    pub limits: LimitsView,
    /// IANA time zone (`null` = the operator's `DEFAULT_TIME_ZONE`).
    pub time_zone: Option<String>,
    /// Whether the user agreed to reminders offered from memory.
    pub reminder_offers: bool,
    /// The events already offered (`fact-key@YYYY-MM-DD`), oldest first.
    pub reminder_offers_made: Vec<String>,
    /// Events stored; absent after an update, which does not count them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_count: Option<u64>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Concurrency version.
    pub version: u64,
}

/// Per-user limits as shown to support staff: `null` = the operator's default.
#[derive(Debug, Serialize)]
pub struct LimitsView {
    /// Messages per minute (0 = unlimited).
    pub per_minute: Option<u32>,
    /// Messages at once before the rate applies.
    pub burst: Option<u32>,
    /// Messages per UTC day (0 = unlimited).
    pub per_day: Option<u32>,
}

/// The view of a user's limits.
#[must_use]
pub fn limits_view(limits: &UserLimits) -> LimitsView {
    LimitsView {
        per_minute: limits.per_minute,
        burst: limits.burst,
        per_day: limits.per_day,
    }
}

/// `per-minute=… burst=… per-day=…`, with `default` for the operator's defaults.
#[must_use]
pub fn limits_text(limits: &UserLimits) -> String {
    let shown = |v: Option<u32>| match v {
        None => "default".to_owned(),
        Some(0) => "unlimited".to_owned(),
        Some(n) => n.to_string(),
    };
    format!(
        "per-minute={} burst={} per-day={}",
        shown(limits.per_minute),
        limits
            .burst
            .map_or_else(|| "default".to_owned(), |b| b.to_string()),
        shown(limits.per_day)
    )
}

/// The profile's time zone, or `default` (the operator's `DEFAULT_TIME_ZONE`).
#[must_use]
pub fn zone_text(profile: &UserProfile) -> String {
    profile
        .time_zone
        .as_ref()
        .map_or_else(|| "default".to_owned(), |z| z.name().to_owned())
}

/// An event as shown to support staff.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// Event id.
    pub event_id: String,
    /// `user` or `assistant`.
    pub role: &'static str,
    /// `text` or `voice`.
    pub source: &'static str,
    /// Time (RFC 3339).
    pub created_at: String,
    /// Content.
    pub content: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// A remembered fact as shown to support staff.
#[derive(Debug, Serialize)]
pub struct FactView {
    /// Fact id (what `profile_admin facts forget` takes).
    pub fact_id: String,
    /// Subject key.
    pub key: String,
    /// `person`, `date`, `place`, `preference`, `promise` or `other`.
    pub kind: &'static str,
    /// The statement.
    pub text: String,
    /// When it was learnt (RFC 3339).
    pub created_at: String,
    /// The events it came from.
    pub source_events: Vec<String>,
    /// The fact that replaced it; `null` while current.
    pub superseded_by: Option<String>,
}

/// A user's full record.
#[derive(Debug, Serialize)]
pub struct RecordView {
    /// Profile.
    pub profile: ProfileView,
    /// Events, oldest first.
    pub events: Vec<EventView>,
    /// Remembered facts, current and superseded, oldest first.
    pub facts: Vec<FactView>,
    /// Reminders in every state, earliest due first.
    pub reminders: Vec<ReminderView>,
}

/// A reminder as shown to support staff.
#[derive(Debug, Serialize)]
pub struct ReminderView {
    /// Reminder id (what `profile_admin reminders --cancel` takes; its first 8 digits do).
    pub reminder_id: String,
    /// When it is due (RFC 3339, UTC).
    pub due_at: String,
    /// The same moment on the user's clock (RFC 3339 with the offset of their zone).
    pub due_local: String,
    /// The zone it was resolved in when it was set.
    pub time_zone: String,
    /// What to remind of.
    pub text: String,
    /// `pending`, `delivered` or `cancelled`.
    pub state: &'static str,
    /// When it was delivered or cancelled (RFC 3339); `null` while pending.
    pub finished_at: Option<String>,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// The chat it is delivered to.
    pub chat_id: i64,
    /// Deliveries attempted.
    pub attempts: u32,
}

fn state(status: ReminderStatus) -> &'static str {
    match status {
        ReminderStatus::Pending => "pending",
        ReminderStatus::Delivered(_) => "delivered",
        ReminderStatus::Cancelled(_) => "cancelled",
    }
}

/// The view of a reminder, its due time also on `zone`'s clock.
#[must_use]
pub fn reminder_view(r: &Reminder, zone: &UserTimeZone) -> ReminderView {
    ReminderView {
        reminder_id: r.id.to_string(),
        due_at: rfc3339(r.due_at),
        due_local: zone.rfc3339(r.due_at),
        time_zone: r.time_zone.clone(),
        text: r.text.clone(),
        state: state(r.status),
        finished_at: r.status.finished_at().map(rfc3339),
        created_at: rfc3339(r.created_at),
        chat_id: r.chat_id,
        attempts: r.attempts,
    }
}

/// The `reminders` table: short id, due time on the user's clock, state, text.
#[must_use]
pub fn reminders_table(reminders: &[Reminder], zone: &UserTimeZone) -> String {
    let rows: Vec<Vec<String>> = reminders
        .iter()
        .map(|r| {
            vec![
                r.id.short(),
                zone.wall_clock(r.due_at),
                state(r.status).to_owned(),
                truncate(&r.text, 60),
            ]
        })
        .collect();
    let due = format!("DUE ({})", zone.name());
    table(&["ID", &due, "STATE", "TEXT"], &rows)
}

/// `N pending; next 2026-12-08 09:00 — text`, or `none pending`.
fn reminders_text(reminders: &[Reminder], zone: &UserTimeZone) -> String {
    let mut pending = reminders
        .iter()
        .filter(|r| r.status == ReminderStatus::Pending);
    match pending.next() {
        None => "none pending".to_owned(),
        Some(next) => format!(
            "{} pending; next {} — {}",
            1 + pending.count(),
            zone.wall_clock(next.due_at),
            truncate(&next.text, 60)
        ),
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// The view of a profile with its event count.
#[must_use]
pub fn profile_view(profile: &UserProfile, event_count: u64) -> ProfileView {
    view(profile, Some(event_count))
}

/// The view of a profile just updated (the update does not read the event count).
#[must_use]
pub fn updated_view(profile: &UserProfile) -> ProfileView {
    view(profile, None)
}

fn view(profile: &UserProfile, event_count: Option<u64>) -> ProfileView {
    ProfileView {
        user_id: profile.user_id.get(),
        persona: profile.persona.clone(),
        tone: profile.tone.code(),
        language: profile.language.code(),
        preferred_topics: profile.preferred_topics.clone(),
        memory_summary: profile.memory_summary.clone(),
        has_summary: profile.has_summary(),
        limits: limits_view(&profile.limits),
        time_zone: profile.time_zone.as_ref().map(|z| z.name().to_owned()),
        reminder_offers: profile.reminder_offers,
        reminder_offers_made: profile.reminder_offers_made.clone(),
        event_count,
        created_at: rfc3339(profile.created_at),
        updated_at: rfc3339(profile.updated_at),
        version: profile.version,
    }
}

/// The view of an event.
#[must_use]
pub fn event_view(e: &UserMemoryEvent) -> EventView {
    EventView {
        event_id: e.event_id.to_string(),
        role: e.role.code(),
        source: e.source.code(),
        created_at: rfc3339(e.created_at),
        content: e.content.clone(),
        tags: e.tags.clone(),
    }
}

/// The view of a fact.
#[must_use]
pub fn fact_view(f: &MemoryFact) -> FactView {
    FactView {
        fact_id: f.id.to_string(),
        key: f.key.as_str().to_owned(),
        kind: f.kind.code(),
        text: f.text.clone(),
        created_at: rfc3339(f.created_at),
        source_events: f.source_events.iter().map(ToString::to_string).collect(),
        superseded_by: f.superseded_by.map(|id| id.to_string()),
    }
}

/// The `facts` table: id, learnt, kind, key, text (and `superseded` for history).
#[must_use]
pub fn facts_table(facts: &[MemoryFact]) -> String {
    let rows: Vec<Vec<String>> = facts
        .iter()
        .map(|f| {
            let v = fact_view(f);
            vec![
                v.fact_id,
                v.created_at,
                v.kind.to_owned(),
                v.key,
                if f.is_current() { "" } else { "superseded " }.to_owned() + &truncate(&v.text, 80),
            ]
        })
        .collect();
    table(&["FACT_ID", "LEARNT_AT", "KIND", "KEY", "TEXT"], &rows)
}

/// The view of a full record.
#[must_use]
pub fn record_view(record: &UserRecord) -> RecordView {
    RecordView {
        profile: profile_view(&record.overview.profile, record.overview.event_count),
        events: record.events.iter().map(event_view).collect(),
        facts: record.facts.iter().map(fact_view).collect(),
        reminders: record
            .reminders
            .iter()
            .map(|r| reminder_view(r, &record.zone))
            .collect(),
    }
}

/// Cuts `text` to `max` characters with an ellipsis, on one line.
#[must_use]
pub fn truncate(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Renders rows as an aligned plain-text table.
#[must_use]
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// The `list` table.
#[must_use]
pub fn list_table(rows: &[ProfileOverview]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|o| {
            let v = profile_view(&o.profile, o.event_count);
            vec![
                v.user_id.to_string(),
                truncate(&v.persona, 30),
                v.tone.to_owned(),
                v.language.to_owned(),
                o.event_count.to_string(),
                if v.has_summary { "yes" } else { "no" }.to_owned(),
                v.updated_at,
            ]
        })
        .collect();
    table(
        &[
            "USER_ID",
            "PERSONA",
            "TONE",
            "LANG",
            "EVENTS",
            "SUMMARY",
            "UPDATED_AT",
        ],
        &rows,
    )
}

/// `on`/`off`, with how many events were offered.
fn offers_text(profile: &UserProfile) -> String {
    format!(
        "{} ({} offered)",
        if profile.reminder_offers { "on" } else { "off" },
        profile.reminder_offers_made.len()
    )
}

/// The `show` text.
#[must_use]
pub fn show_text(record: &UserRecord) -> String {
    let v = record_view(record);
    let p = &v.profile;
    let mut out = format!(
        "user_id:   {}\npersona:   {}\ntone:      {}\nlanguage:  {}\ntopics:    {}\nlimits:    {}\ntime zone: {}\nreminders: {}\noffers:    {}\nevents:    {}\nversion:   {}\ncreated:   {}\nupdated:   {}\nsummary:   {}\n",
        p.user_id,
        p.persona,
        p.tone,
        p.language,
        if p.preferred_topics.is_empty() { "-".to_owned() } else { p.preferred_topics.join(", ") },
        limits_text(&record.overview.profile.limits),
        if record.overview.profile.time_zone.is_some() {
            record.zone.name().to_owned()
        } else {
            format!("default ({})", record.zone.name())
        },
        reminders_text(&record.reminders, &record.zone),
        offers_text(&record.overview.profile),
        record.overview.event_count,
        p.version,
        p.created_at,
        p.updated_at,
        p.memory_summary.as_deref().map_or_else(|| "-".to_owned(), |s| truncate(s, 200)),
    );
    if !v.events.is_empty() {
        out.push_str(&format!("\nrecent events ({}):\n", v.events.len()));
        let rows: Vec<Vec<String>> = v
            .events
            .iter()
            .map(|e| {
                vec![
                    e.created_at.clone(),
                    e.role.to_owned(),
                    e.source.to_owned(),
                    truncate(&e.content, 60),
                ]
            })
            .collect();
        out.push_str(&table(&["CREATED_AT", "ROLE", "SOURCE", "CONTENT"], &rows));
    }
    let current: Vec<MemoryFact> = record
        .facts
        .iter()
        .filter(|f| f.is_current())
        .cloned()
        .collect();
    if !current.is_empty() {
        out.push_str(&format!("\nfacts ({}):\n", current.len()));
        out.push_str(&facts_table(&current));
    }
    out
}
