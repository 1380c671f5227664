//! [`UserProfileRepository`] on SQLite: one row per user in `user_profiles`, compare-and-set
//! on the `version` column.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{named_params, Connection, OptionalExtension, Row};

use butler_domain::ports::{ProfilePage, ProfileStoreError, UserProfileRepository};
use butler_domain::{EventCursor, UserId, UserLimits, UserProfile};

use super::{
    from_json, millis, sql_limit, time_from, to_json, uuid_bytes, uuid_from, Access, Fault, Pool,
};

const TABLE: &str = "user_profiles";

const COLUMNS: &str = "user_id, language, persona, tone, preferred_topics, memory_summary, \
     watermark_at, watermark_event_id, created_at, updated_at, version, limit_per_minute, \
     limit_burst, limit_per_day, time_zone, time_zone_offered, reminder_offers, \
     reminder_offers_made";

/// Profiles in the `user_profiles` table.
#[derive(Debug, Clone)]
pub struct SqliteProfileRepository {
    pool: Arc<Pool>,
}

impl SqliteProfileRepository {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    async fn run<T, F>(
        &self,
        operation: &'static str,
        access: Access,
        f: F,
    ) -> Result<T, ProfileStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        self.pool.run_for(TABLE, operation, access, f).await
    }
}

/// A profile flattened into SQL values.
struct ProfileRow {
    user_id: i64,
    language: &'static str,
    persona: String,
    tone: &'static str,
    topics: String,
    summary: Option<String>,
    watermark_at: Option<i64>,
    watermark_event_id: Option<[u8; 16]>,
    created_at: i64,
    updated_at: i64,
    version: i64,
    limits: [Option<u32>; 3],
    time_zone: Option<String>,
    time_zone_offered: Option<String>,
    reminder_offers: bool,
    offers_made: String,
}

impl ProfileRow {
    fn from_profile(p: &UserProfile, version: u64) -> Result<Self, Fault> {
        Ok(Self {
            user_id: p.user_id.get(),
            language: p.language.code(),
            persona: p.persona.clone(),
            tone: p.tone.code(),
            topics: to_json(&p.preferred_topics),
            summary: p.memory_summary.clone(),
            watermark_at: p.summary_watermark.map(|w| millis(w.created_at)),
            watermark_event_id: p.summary_watermark.map(|w| uuid_bytes(w.event_id)),
            created_at: millis(p.created_at),
            updated_at: millis(p.updated_at),
            version: i64::try_from(version)
                .map_err(|_| Fault::Corrupt("version exceeds the SQLite integer range".into()))?,
            limits: [p.limits.per_minute, p.limits.burst, p.limits.per_day],
            time_zone: p.time_zone.as_ref().map(|z| z.name().to_owned()),
            time_zone_offered: p.time_zone_offered.as_ref().map(|z| z.name().to_owned()),
            reminder_offers: p.reminder_offers,
            offers_made: to_json(&p.reminder_offers_made),
        })
    }

    /// Inserts the row; on an existing user either does nothing (`replace = false`) or
    /// overwrites it (a reset: `replace = true`), bumping the stored version and keeping only
    /// the per-user limits support staff set (the time zone is personal: a reset forgets it).
    fn upsert_sql(replace: bool) -> String {
        let conflict = if replace {
            "DO UPDATE SET language = excluded.language, persona = excluded.persona, \
             tone = excluded.tone, preferred_topics = excluded.preferred_topics, \
             memory_summary = excluded.memory_summary, watermark_at = excluded.watermark_at, \
             watermark_event_id = excluded.watermark_event_id, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, time_zone = excluded.time_zone, \
             time_zone_offered = excluded.time_zone_offered, \
             reminder_offers = excluded.reminder_offers, \
             reminder_offers_made = excluded.reminder_offers_made, \
             version = user_profiles.version + 1"
        } else {
            "DO NOTHING"
        };
        format!(
            "INSERT INTO user_profiles ({COLUMNS}) VALUES (:user_id, :language, :persona, :tone, \
             :topics, :summary, :watermark_at, :watermark_event_id, :created_at, :updated_at, \
             :version, :limit_per_minute, :limit_burst, :limit_per_day, :time_zone, \
             :time_zone_offered, :reminder_offers, :reminder_offers_made) \
             ON CONFLICT (user_id) {conflict}"
        )
    }

    fn insert(&self, conn: &Connection, replace: bool) -> rusqlite::Result<usize> {
        self.execute(conn, &Self::upsert_sql(replace))
    }

    /// Overwrites the stored profile only if its version is the one before this row's.
    fn update_if_previous_version(&self, conn: &Connection) -> rusqlite::Result<usize> {
        self.execute(
            conn,
            "UPDATE user_profiles SET language = :language, persona = :persona, tone = :tone, \
             preferred_topics = :topics, memory_summary = :summary, \
             watermark_at = :watermark_at, watermark_event_id = :watermark_event_id, \
             created_at = :created_at, updated_at = :updated_at, version = :version, \
             limit_per_minute = :limit_per_minute, limit_burst = :limit_burst, \
             limit_per_day = :limit_per_day, time_zone = :time_zone, \
             time_zone_offered = :time_zone_offered, reminder_offers = :reminder_offers, \
             reminder_offers_made = :reminder_offers_made \
             WHERE user_id = :user_id AND version = :version - 1",
        )
    }

    /// Runs `sql` with every column of the row bound by name.
    fn execute(&self, conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
        conn.prepare_cached(sql)?.execute(named_params! {
            ":user_id": self.user_id,
            ":language": self.language,
            ":persona": self.persona,
            ":tone": self.tone,
            ":topics": self.topics,
            ":summary": self.summary,
            ":watermark_at": self.watermark_at,
            ":watermark_event_id": self.watermark_event_id,
            ":created_at": self.created_at,
            ":updated_at": self.updated_at,
            ":version": self.version,
            ":limit_per_minute": self.limits[0],
            ":limit_burst": self.limits[1],
            ":limit_per_day": self.limits[2],
            ":time_zone": self.time_zone,
            ":time_zone_offered": self.time_zone_offered,
            ":reminder_offers": self.reminder_offers,
            ":reminder_offers_made": self.offers_made,
        })
    }
}

fn select_one(conn: &Connection, user_id: i64) -> Result<Option<UserProfile>, Fault> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM user_profiles WHERE user_id = ?1"
    ))?;
    stmt.query_row([user_id], |row| Ok(decode(row)))
        .optional()?
        .transpose()
}

fn decode(row: &Row<'_>) -> Result<UserProfile, Fault> {
    let language: String = row.get("language")?;
    let tone: String = row.get("tone")?;
    let watermark_at: Option<i64> = row.get("watermark_at")?;
    let watermark_id: Option<Vec<u8>> = row.get("watermark_event_id")?;
    let summary_watermark = match (watermark_at, watermark_id) {
        (Some(at), Some(id)) => Some(EventCursor {
            created_at: time_from("user_profiles.watermark_at", at)?,
            event_id: uuid_from("user_profiles.watermark_event_id", &id)?,
        }),
        _ => None,
    };
    let version: i64 = row.get("version")?;
    Ok(UserProfile {
        user_id: UserId::new(row.get("user_id")?),
        language: language
            .parse()
            .map_err(|_| Fault::Corrupt("user_profiles.language is not a known code".into()))?,
        persona: row.get("persona")?,
        tone: tone
            .parse()
            .map_err(|_| Fault::Corrupt("user_profiles.tone is not a known code".into()))?,
        preferred_topics: from_json(
            "user_profiles.preferred_topics",
            &row.get::<_, String>("preferred_topics")?,
        )?,
        memory_summary: row.get("memory_summary")?,
        summary_watermark,
        limits: UserLimits {
            per_minute: row.get("limit_per_minute")?,
            burst: row.get("limit_burst")?,
            per_day: row.get("limit_per_day")?,
        },
        time_zone: crate::stored_zone(row.get("time_zone")?),
        time_zone_offered: crate::stored_zone(row.get("time_zone_offered")?),
        reminder_offers: row.get("reminder_offers")?,
        reminder_offers_made: from_json(
            "user_profiles.reminder_offers_made",
            &row.get::<_, String>("reminder_offers_made")?,
        )?,
        created_at: time_from("user_profiles.created_at", row.get("created_at")?)?,
        updated_at: time_from("user_profiles.updated_at", row.get("updated_at")?)?,
        version: u64::try_from(version)
            .map_err(|_| Fault::Corrupt("user_profiles.version is negative".into()))?,
    })
}

fn missing(user_id: i64) -> Fault {
    Fault::Corrupt(format!(
        "user_profiles row for user {user_id} vanished inside its own transaction"
    ))
}

#[async_trait]
impl UserProfileRepository for SqliteProfileRepository {
    async fn get(&self, user_id: UserId) -> Result<Option<UserProfile>, ProfileStoreError> {
        self.run("get", Access::Read, move |conn| {
            select_one(conn, user_id.get())
        })
        .await
    }

    async fn get_or_create(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        // Every message reads its sender's profile: a plain read serves the known user
        // without queueing behind the writes (appends) of other users.
        if let Some(stored) = self.get(user_id).await? {
            return Ok(stored);
        }
        let fresh = ProfileRow::from_profile(&UserProfile::default_for(user_id), 1);
        self.run("get_or_create", Access::Write, move |conn| {
            let fresh = fresh?;
            let tx = conn.savepoint()?;
            // Keeps a profile created meanwhile (by another process or a concurrent first
            // message) rather than overwriting it.
            fresh.insert(&tx, false)?;
            let stored = select_one(&tx, fresh.user_id)?.ok_or_else(|| missing(fresh.user_id))?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn save(&self, profile: &UserProfile) -> Result<UserProfile, ProfileStoreError> {
        profile.validate()?;
        let expected = profile.version;
        let user_id = profile.user_id;
        let row = ProfileRow::from_profile(profile, expected.saturating_add(1));
        let written = self
            .run("save", Access::Write, move |conn| {
                let row = row?;
                let changed = if expected == 0 {
                    row.insert(conn, false)?
                } else {
                    row.update_if_previous_version(conn)?
                };
                Ok(changed == 1)
            })
            .await?;
        if !written {
            return Err(ProfileStoreError::VersionConflict { user_id, expected });
        }
        let mut stored = profile.clone();
        stored.version = expected + 1;
        Ok(stored)
    }

    async fn reset(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        let fresh = ProfileRow::from_profile(&UserProfile::default_for(user_id), 1);
        self.run("reset", Access::Write, move |conn| {
            let fresh = fresh?;
            let tx = conn.savepoint()?;
            fresh.insert(&tx, true)?;
            let stored = select_one(&tx, fresh.user_id)?.ok_or_else(|| missing(fresh.user_id))?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn list(&self, page: ProfilePage) -> Result<Vec<UserProfile>, ProfileStoreError> {
        self.run("list", Access::Read, move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM user_profiles WHERE ?1 IS NULL OR user_id > ?1 \
                 ORDER BY user_id LIMIT ?2"
            ))?;
            let rows = stmt.query(rusqlite::params![
                page.after.map(UserId::get),
                sql_limit(page.limit)
            ])?;
            collect(rows)
        })
        .await
    }
}

fn collect(mut rows: rusqlite::Rows<'_>) -> Result<Vec<UserProfile>, Fault> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}
