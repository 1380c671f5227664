//! [`UserProfileRepository`] on MongoDB: one document per user in `user_profiles`.
//!
//! Compare-and-set: a save of version `n > 0` is `replaceOne({user_id, version: n})`, so it
//! matches nothing once someone else wrote; a save of version 0 is an insert that the unique
//! `user_id` index turns into a duplicate-key error when a profile already exists. Both
//! outcomes are [`ProfileStoreError::VersionConflict`].

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};

use butler_domain::ports::{ProfilePage, ProfileStoreError, UserProfileRepository};
use butler_domain::{EventCursor, UserId, UserLimits, UserProfile};

use super::{
    bounded, date_bson, get_int, get_str, get_strings, get_time, get_uuid, int_bson,
    is_duplicate_key, limit_i64, uuid_bson, Fault, PROFILES_COLLECTION,
};

/// Profiles in the `user_profiles` collection.
#[derive(Debug, Clone)]
pub struct MongoProfileRepository {
    collection: Collection<Document>,
    timeout: Duration,
}

fn to_port(operation: &'static str, fault: Fault) -> ProfileStoreError {
    match fault {
        Fault::Corrupt(detail) => ProfileStoreError::Corrupt { detail },
        Fault::Driver(detail) => {
            tracing::warn!(
                operation,
                collection = PROFILES_COLLECTION,
                %detail,
                "profile storage failed"
            );
            ProfileStoreError::Unavailable { operation, detail }
        }
    }
}

/// Every field except `user_id` and `version` (the filter and `$inc` own those).
fn fields(p: &UserProfile) -> Document {
    let watermark = p.summary_watermark.map_or(Bson::Null, |w| {
        Bson::Document(doc! {
            "created_at": date_bson(w.created_at),
            "event_id": uuid_bson(w.event_id),
        })
    });
    doc! {
        "language": p.language.code(),
        "persona": p.persona.as_str(),
        "tone": p.tone.code(),
        "preferred_topics": p.preferred_topics.clone(),
        "memory_summary": p.memory_summary.as_deref().map_or(Bson::Null, Bson::from),
        "summary_watermark": watermark,
        "limits": doc! {
            "per_minute": optional_u32(p.limits.per_minute),
            "burst": optional_u32(p.limits.burst),
            "per_day": optional_u32(p.limits.per_day),
        },
        "time_zone": zone_bson(p.time_zone.as_ref()),
        "time_zone_offered": zone_bson(p.time_zone_offered.as_ref()),
        "reminder_offers": p.reminder_offers,
        "reminder_offers_made": p.reminder_offers_made.clone(),
        "created_at": date_bson(p.created_at),
        "updated_at": date_bson(p.updated_at),
    }
}

fn zone_bson(zone: Option<&butler_domain::reminder::UserTimeZone>) -> Bson {
    zone.map_or(Bson::Null, |z| Bson::from(z.name()))
}

/// An optional zone name; profiles written before zones existed have no such field.
fn decode_zone(
    doc: &Document,
    field: &str,
) -> Result<Option<butler_domain::reminder::UserTimeZone>, Fault> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(name)) => Ok(crate::stored_zone(Some(name.clone()))),
        Some(_) => Err(Fault::Corrupt(format!(
            "user_profiles.{field} is not a string"
        ))),
    }
}

fn optional_u32(value: Option<u32>) -> Bson {
    value.map_or(Bson::Null, |v| Bson::Int64(i64::from(v)))
}

/// Per-user limits; profiles written before limits existed have no `limits` field.
fn decode_limits(doc: &Document) -> Result<UserLimits, Fault> {
    let limits = match doc.get("limits") {
        None | Some(Bson::Null) => return Ok(UserLimits::default()),
        Some(Bson::Document(limits)) => limits,
        Some(_) => {
            return Err(Fault::Corrupt(
                "user_profiles.limits is not a document".into(),
            ))
        }
    };
    let field = |name: &str| -> Result<Option<u32>, Fault> {
        match limits.get(name) {
            None | Some(Bson::Null) => Ok(None),
            Some(_) => u32::try_from(get_int(limits, name)?)
                .map(Some)
                .map_err(|_| {
                    Fault::Corrupt(format!("user_profiles.limits.{name} is out of range"))
                }),
        }
    };
    Ok(UserLimits {
        per_minute: field("per_minute")?,
        burst: field("burst")?,
        per_day: field("per_day")?,
    })
}

fn document(p: &UserProfile, version: u64) -> Result<Document, Fault> {
    let mut doc = doc! { "user_id": p.user_id.get() };
    doc.extend(fields(p));
    doc.insert("version", int_bson(version, "user_profiles.version")?);
    Ok(doc)
}

fn decode(doc: &Document) -> Result<UserProfile, Fault> {
    let corrupt =
        |field: &str| Fault::Corrupt(format!("user_profiles.{field} is not a known code"));
    let summary_watermark = match doc.get("summary_watermark") {
        None | Some(Bson::Null) => None,
        Some(Bson::Document(w)) => Some(EventCursor {
            created_at: get_time(w, "created_at")?,
            event_id: get_uuid(w, "event_id")?,
        }),
        Some(_) => {
            return Err(Fault::Corrupt(
                "user_profiles.summary_watermark is not a document".into(),
            ))
        }
    };
    let memory_summary = match doc.get("memory_summary") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Fault::Corrupt(
                "user_profiles.memory_summary is not a string".into(),
            ))
        }
    };
    let version = get_int(doc, "version")?;
    Ok(UserProfile {
        user_id: UserId::new(get_int(doc, "user_id")?),
        language: get_str(doc, "language")?
            .parse()
            .map_err(|_| corrupt("language"))?,
        persona: get_str(doc, "persona")?,
        tone: get_str(doc, "tone")?.parse().map_err(|_| corrupt("tone"))?,
        preferred_topics: get_strings(doc, "preferred_topics")?,
        memory_summary,
        summary_watermark,
        limits: decode_limits(doc)?,
        time_zone: decode_zone(doc, "time_zone")?,
        time_zone_offered: decode_zone(doc, "time_zone_offered")?,
        // Profiles written before offers existed have neither field: off, nothing offered.
        reminder_offers: match doc.get("reminder_offers") {
            None | Some(Bson::Null) => false,
            Some(Bson::Boolean(on)) => *on,
            Some(_) => {
                return Err(Fault::Corrupt(
                    "user_profiles.reminder_offers is not a boolean".into(),
                ))
            }
        },
        reminder_offers_made: if doc.contains_key("reminder_offers_made") {
            get_strings(doc, "reminder_offers_made")?
        } else {
            Vec::new()
        },
        created_at: get_time(doc, "created_at")?,
        updated_at: get_time(doc, "updated_at")?,
        version: u64::try_from(version)
            .map_err(|_| Fault::Corrupt("user_profiles.version is negative".into()))?,
    })
}

impl MongoProfileRepository {
    pub(super) fn new(database: &Database, timeout: Duration) -> Self {
        Self {
            collection: database.collection(PROFILES_COLLECTION),
            timeout,
        }
    }

    async fn find(&self, user_id: UserId) -> Result<Option<UserProfile>, Fault> {
        let found = bounded(
            PROFILES_COLLECTION,
            self.timeout,
            self.collection.find_one(doc! { "user_id": user_id.get() }),
        )
        .await?;
        found.as_ref().map(decode).transpose()
    }

    /// Inserts `doc`; `Ok(false)` if the unique `user_id` index says a profile exists.
    async fn insert_if_absent(&self, doc: Document) -> Result<bool, Fault> {
        let insert = tokio::time::timeout(self.timeout, self.collection.insert_one(doc)).await;
        match insert {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if is_duplicate_key(&e) => Ok(false),
            Ok(Err(e)) => Err(Fault::from_driver(PROFILES_COLLECTION, &e)),
            Err(_) => Err(Fault::timed_out(PROFILES_COLLECTION, self.timeout)),
        }
    }

    async fn reset_once(&self, user_id: UserId) -> Result<Option<UserProfile>, Fault> {
        let fresh = UserProfile::default_for(user_id);
        // Per-user limits set by support staff survive a reset of the personalisation; the
        // time zone is personal and goes (`fields` sets it to null).
        let mut set = fields(&fresh);
        set.remove("limits");
        let update = doc! { "$set": set, "$inc": { "version": 1_i64 } };
        let call = self
            .collection
            .find_one_and_update(doc! { "user_id": user_id.get() }, update)
            .upsert(true)
            .return_document(ReturnDocument::After);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(Some(doc))) => decode(&doc).map(Some),
            Ok(Ok(None)) => Err(Fault::Corrupt(
                "user_profiles upsert returned no document".into(),
            )),
            // Two upserts of a new user raced; the loser retries as an update.
            Ok(Err(e)) if is_duplicate_key(&e) => Ok(None),
            Ok(Err(e)) => Err(Fault::from_driver(PROFILES_COLLECTION, &e)),
            Err(_) => Err(Fault::timed_out(PROFILES_COLLECTION, self.timeout)),
        }
    }
}

#[async_trait]
impl UserProfileRepository for MongoProfileRepository {
    async fn get(&self, user_id: UserId) -> Result<Option<UserProfile>, ProfileStoreError> {
        self.find(user_id).await.map_err(|f| to_port("get", f))
    }

    async fn get_or_create(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        let op = |f| to_port("get_or_create", f);
        if let Some(found) = self.find(user_id).await.map_err(op)? {
            return Ok(found);
        }
        let mut fresh = UserProfile::default_for(user_id);
        fresh.version = 1;
        let doc = document(&fresh, 1).map_err(op)?;
        if self.insert_if_absent(doc).await.map_err(op)? {
            return Ok(fresh);
        }
        // Someone else created it between our read and insert: theirs is the profile.
        self.find(user_id).await.map_err(op)?.ok_or_else(|| {
            op(Fault::Corrupt(
                "user_profiles: a profile reported as existing could not be read".into(),
            ))
        })
    }

    async fn save(&self, profile: &UserProfile) -> Result<UserProfile, ProfileStoreError> {
        profile.validate()?;
        let op = |f| to_port("save", f);
        let expected = profile.version;
        let next = expected.saturating_add(1);
        let doc = document(profile, next).map_err(op)?;
        let written = if expected == 0 {
            self.insert_if_absent(doc).await.map_err(op)?
        } else {
            let filter = doc! {
                "user_id": profile.user_id.get(),
                "version": int_bson(expected, "version").map_err(op)?,
            };
            let result = bounded(
                PROFILES_COLLECTION,
                self.timeout,
                self.collection.replace_one(filter, doc),
            )
            .await
            .map_err(op)?;
            result.matched_count == 1
        };
        if !written {
            return Err(ProfileStoreError::VersionConflict {
                user_id: profile.user_id,
                expected,
            });
        }
        let mut stored = profile.clone();
        stored.version = next;
        Ok(stored)
    }

    async fn reset(&self, user_id: UserId) -> Result<UserProfile, ProfileStoreError> {
        let op = |f| to_port("reset", f);
        if let Some(stored) = self.reset_once(user_id).await.map_err(op)? {
            return Ok(stored);
        }
        self.reset_once(user_id).await.map_err(op)?.ok_or_else(|| {
            op(Fault::Driver(format!(
                "mongodb {PROFILES_COLLECTION}: reset kept colliding with a concurrent insert"
            )))
        })
    }

    async fn list(&self, page: ProfilePage) -> Result<Vec<UserProfile>, ProfileStoreError> {
        let op = |f| to_port("list", f);
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let filter = page.after.map_or_else(
            Document::new,
            |after| doc! { "user_id": { "$gt": after.get() } },
        );
        let timeout = self.timeout;
        let docs: Vec<Document> = bounded(PROFILES_COLLECTION, timeout, async {
            self.collection
                .find(filter)
                .sort(doc! { "user_id": 1 })
                .limit(limit_i64(page.limit))
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(op)?;
        docs.iter()
            .map(decode)
            .collect::<Result<_, _>>()
            .map_err(op)
    }
}
