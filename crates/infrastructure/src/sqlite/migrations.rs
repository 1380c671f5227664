//! Embedded, versioned schema migrations, applied when the database is opened.
//!
//! The applied version is SQLite's `PRAGMA user_version`. Each migration runs in one
//! `IMMEDIATE` transaction together with the version bump, so a crash leaves the database at
//! a complete version, and two processes opening the same file at once apply each step once.
//! Migrations are append-only: never edit a released one, add the next.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::SqliteOpenError;

/// Every migration, in order; migration `i` (0-based) brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: profiles and memory events, with the indexes the MongoDB adapter also has.
    r"
    CREATE TABLE user_profiles (
        user_id            INTEGER NOT NULL,
        language           TEXT    NOT NULL,
        persona            TEXT    NOT NULL,
        tone               TEXT    NOT NULL,
        preferred_topics   TEXT    NOT NULL,   -- JSON array of strings
        memory_summary     TEXT,
        watermark_at       INTEGER,            -- Unix ms, with watermark_event_id
        watermark_event_id BLOB,               -- 16-byte UUID
        created_at         INTEGER NOT NULL,   -- Unix ms
        updated_at         INTEGER NOT NULL,   -- Unix ms
        version            INTEGER NOT NULL,
        CHECK ((watermark_at IS NULL) = (watermark_event_id IS NULL))
    ) STRICT;
    CREATE UNIQUE INDEX user_profiles_user_id ON user_profiles (user_id);

    CREATE TABLE user_memory (
        event_id   BLOB    NOT NULL,           -- 16-byte UUID
        user_id    INTEGER NOT NULL,
        role       TEXT    NOT NULL,
        content    TEXT    NOT NULL,
        source     TEXT    NOT NULL,
        created_at INTEGER NOT NULL,           -- Unix ms
        tags       TEXT    NOT NULL            -- JSON array of strings
    ) STRICT;
    CREATE UNIQUE INDEX user_memory_event_id ON user_memory (event_id);
    CREATE INDEX user_memory_user_created ON user_memory (user_id, created_at, event_id);
    ",
    // 2: per-user exceptions to the abuse limits (NULL = the operator's default).
    r"
    ALTER TABLE user_profiles ADD COLUMN limit_per_minute INTEGER;
    ALTER TABLE user_profiles ADD COLUMN limit_burst INTEGER;
    ALTER TABLE user_profiles ADD COLUMN limit_per_day INTEGER;
    ",
    // 3: long-term facts, with the indexes the MongoDB adapter also has, and a full-text index
    // over their search terms (external content: the terms are stored once, in user_facts).
    r"
    CREATE TABLE user_facts (
        id            INTEGER PRIMARY KEY,        -- rowid, the full-text index's key
        fact_id       BLOB    NOT NULL,           -- 16-byte UUID
        user_id       INTEGER NOT NULL,
        key           TEXT    NOT NULL,
        kind          TEXT    NOT NULL,
        text          TEXT    NOT NULL,
        terms         TEXT    NOT NULL,           -- search terms, space-separated
        created_at    INTEGER NOT NULL,           -- Unix ms
        source_events TEXT    NOT NULL,           -- JSON array of UUID strings
        superseded_by BLOB                        -- 16-byte UUID; NULL while current
    ) STRICT;
    CREATE UNIQUE INDEX user_facts_fact_id ON user_facts (fact_id);
    -- At most one current fact per user and key, whatever races.
    CREATE UNIQUE INDEX user_facts_user_key ON user_facts (user_id, key)
        WHERE superseded_by IS NULL;
    CREATE INDEX user_facts_user_created ON user_facts (user_id, created_at, fact_id);
    CREATE INDEX user_facts_created ON user_facts (created_at);

    CREATE VIRTUAL TABLE user_facts_fts USING fts5(
        terms, content = 'user_facts', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 0'
    );
    CREATE TRIGGER user_facts_fts_insert AFTER INSERT ON user_facts BEGIN
        INSERT INTO user_facts_fts (rowid, terms) VALUES (new.id, new.terms);
    END;
    CREATE TRIGGER user_facts_fts_delete AFTER DELETE ON user_facts BEGIN
        INSERT INTO user_facts_fts (user_facts_fts, rowid, terms)
            VALUES ('delete', old.id, old.terms);
    END;
    CREATE TRIGGER user_facts_fts_update AFTER UPDATE OF terms ON user_facts BEGIN
        INSERT INTO user_facts_fts (user_facts_fts, rowid, terms)
            VALUES ('delete', old.id, old.terms);
        INSERT INTO user_facts_fts (rowid, terms) VALUES (new.id, new.terms);
    END;
    ",
    // 4: the update inbox: received updates until answered (and, done, until retention ends),
    // and the per-key leases of their claimers.
    r"
    CREATE TABLE inbox_updates (
        update_id   INTEGER PRIMARY KEY,      -- Telegram's update_id
        key         INTEGER NOT NULL,         -- sender (or chat) id: answered in order
        payload     TEXT    NOT NULL,         -- the update's JSON
        received_at INTEGER NOT NULL,         -- Unix ms
        done_at     INTEGER,                  -- Unix ms; NULL while pending
        attempts    INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    -- Pending updates oldest first: a claim reads only pending rows, however many done ones
    -- retention keeps.
    CREATE INDEX inbox_updates_pending ON inbox_updates (update_id)
        WHERE done_at IS NULL;
    -- Retention: done updates by age.
    CREATE INDEX inbox_updates_done ON inbox_updates (done_at)
        WHERE done_at IS NOT NULL;

    CREATE TABLE inbox_leases (
        key   INTEGER PRIMARY KEY,
        token BLOB    NOT NULL,               -- 16-byte UUID, unique per claim
        until INTEGER NOT NULL                -- Unix ms
    ) STRICT;
    ",
    // 5: leases on conversations in every scope (the inbox's reply leases, compressions,
    // resets), replacing the inbox's per-key leases; and the file's owner, so a second bot
    // process on the same file is refused and a restarted one voids only its predecessor's
    // leases. Leases are ephemeral: the old table's rows belong to a process that has stopped.
    r"
    DROP TABLE inbox_leases;
    CREATE TABLE conversation_leases (
        conversation INTEGER NOT NULL,
        scope        TEXT    NOT NULL,        -- 'reply' or 'compress'
        token        BLOB    NOT NULL,        -- 16-byte UUID, unique per acquisition
        until        INTEGER NOT NULL,        -- Unix ms
        holder       BLOB    NOT NULL,        -- 16-byte UUID of the process that took it
        PRIMARY KEY (conversation, scope)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX conversation_leases_holder ON conversation_leases (holder);

    CREATE TABLE store_owner (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        instance BLOB    NOT NULL,            -- the owning process's holder id
        pid      INTEGER NOT NULL,
        since    INTEGER NOT NULL             -- Unix ms
    ) STRICT;
    ",
    // 6: reminders, claimed when due under a lease (token + until) like the inbox's updates;
    // `finished_at` is set when delivered or cancelled, for retention.
    r"
    CREATE TABLE reminders (
        reminder_id  BLOB    NOT NULL PRIMARY KEY, -- 16-byte UUID
        user_id      INTEGER NOT NULL,
        chat_id      INTEGER NOT NULL,
        text         TEXT    NOT NULL,
        due_at       INTEGER NOT NULL,            -- Unix ms
        time_zone    TEXT    NOT NULL,            -- IANA name
        created_at   INTEGER NOT NULL,            -- Unix ms
        status       TEXT    NOT NULL,            -- 'pending', 'delivered', 'cancelled'
        finished_at  INTEGER,                     -- Unix ms; NULL while pending
        attempts     INTEGER NOT NULL DEFAULT 0,
        lease_token  BLOB,                        -- 16-byte UUID of the current claim
        lease_until  INTEGER,                     -- Unix ms
        CHECK ((status = 'pending') = (finished_at IS NULL))
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX reminders_due ON reminders (due_at, reminder_id) WHERE status = 'pending';
    CREATE INDEX reminders_user_due ON reminders (user_id, due_at, reminder_id)
        WHERE status = 'pending';
    CREATE INDEX reminders_finished ON reminders (finished_at) WHERE finished_at IS NOT NULL;
    ",
    // 7: facts keep the cues they were extracted with and the version of the rules
    // their terms were computed by (re-indexed on open when older, see `reindex_fact_terms`);
    // only current facts are in the full-text index, so superseded ones no longer weigh on
    // the ranking (they stay in `user_facts` for the history).
    r"
    ALTER TABLE user_facts ADD COLUMN cues TEXT NOT NULL DEFAULT '[]';   -- JSON array of strings
    ALTER TABLE user_facts ADD COLUMN terms_version INTEGER NOT NULL DEFAULT 1;
    DROP TRIGGER user_facts_fts_insert;
    DROP TRIGGER user_facts_fts_delete;
    DROP TRIGGER user_facts_fts_update;
    INSERT INTO user_facts_fts (user_facts_fts, rowid, terms)
        SELECT 'delete', id, terms FROM user_facts WHERE superseded_by IS NOT NULL;
    CREATE TRIGGER user_facts_fts_insert AFTER INSERT ON user_facts
        WHEN new.superseded_by IS NULL BEGIN
        INSERT INTO user_facts_fts (rowid, terms) VALUES (new.id, new.terms);
    END;
    CREATE TRIGGER user_facts_fts_delete AFTER DELETE ON user_facts
        WHEN old.superseded_by IS NULL BEGIN
        INSERT INTO user_facts_fts (user_facts_fts, rowid, terms)
            VALUES ('delete', old.id, old.terms);
    END;
    CREATE TRIGGER user_facts_fts_update AFTER UPDATE OF terms, superseded_by ON user_facts BEGIN
        INSERT INTO user_facts_fts (user_facts_fts, rowid, terms)
            SELECT 'delete', old.id, old.terms WHERE old.superseded_by IS NULL;
        INSERT INTO user_facts_fts (rowid, terms)
            SELECT new.id, new.terms WHERE new.superseded_by IS NULL;
    END;
    ",
    // 8: the user's time zone (IANA name; NULL = DEFAULT_TIME_ZONE) and the zone last proposed
    // to them from the conversation (so each is proposed once); a user's reminders in every
    // state, for support staff's listing and exports (the MongoDB index on user_id serves it).
    r"
    ALTER TABLE user_profiles ADD COLUMN time_zone TEXT;
    ALTER TABLE user_profiles ADD COLUMN time_zone_offered TEXT;
    CREATE INDEX reminders_user ON reminders (user_id, due_at, reminder_id);
    ",
    // 9: the user's consent to reminders offered from memory (0 = off, the default) and the
    // events already offered (a JSON array of `fact-key@YYYY-MM-DD`), so each is offered once.
    r"
    ALTER TABLE user_profiles ADD COLUMN reminder_offers INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE user_profiles ADD COLUMN reminder_offers_made TEXT NOT NULL DEFAULT '[]';
    ",
];

/// The schema version this binary creates and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`SCHEMA_VERSION`]; a no-op when it is already there.
pub(super) fn apply(conn: &mut Connection, path: &Path) -> Result<(), SqliteOpenError> {
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let failed = |source| SqliteOpenError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let current: u32 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(failed)?;
        if current > SCHEMA_VERSION {
            return Err(SqliteOpenError::TooNew {
                path: path.to_path_buf(),
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        if current >= version {
            continue;
        }
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    super::fact_repo::reindex_fact_terms(conn).map_err(|source| SqliteOpenError::Migrate {
        path: path.to_path_buf(),
        version: SCHEMA_VERSION,
        source,
    })
}
