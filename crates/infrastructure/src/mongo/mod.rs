//! MongoDB storage through the official driver: collections `user_profiles`, `user_memory`,
//! `user_facts`, the update inbox's `inbox_updates` and the conversations' leases
//! `conversation_leases` in one database.
//!
//! Representation: user ids are `Int64`, event ids BSON binary subtype 4 (UUID), times BSON
//! dates (milliseconds, which is why the domain truncates every time to whole milliseconds).
//! Driver errors become the ports' typed errors carrying the operation and collection and the
//! server's error code — never document contents, never credentials (see [`mask_uri`]).
//! Every call is bounded: server selection by [`MongoOptions::server_selection_timeout`], each
//! operation by [`MongoOptions::operation_timeout`].

mod fact_repo;
mod inbox;
mod indexes;
mod leases;
mod memory_repo;
mod profile_repo;
mod reminder_repo;
mod uri;

use std::future::IntoFuture;
use std::time::Duration;

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, DateTime as BsonDateTime, Document};
use mongodb::error::{Error as DriverError, ErrorKind};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use thiserror::Error;
use time::OffsetDateTime;
use uuid::Uuid;

use butler_domain::timestamp::{from_unix_millis, to_unix_millis};

pub use fact_repo::{MongoFactRepository, MAX_SEARCH_CANDIDATES};
pub use inbox::{MongoInbox, MAX_CLAIM_CANDIDATES};
pub use indexes::{
    ensure_indexes, IndexError, FACTS_COLLECTION, FACTS_TTL_INDEX, INBOX_COLLECTION,
    INBOX_TTL_INDEX, LEASES_COLLECTION, MEMORY_COLLECTION, MEMORY_TTL_INDEX, PROFILES_COLLECTION,
};
pub use leases::MongoLeases;
pub use memory_repo::MongoMemoryRepository;
pub use profile_repo::MongoProfileRepository;
pub use reminder_repo::{
    MongoReminderRepository, REMINDERS_COLLECTION, REMINDERS_TTL_INDEX, REMINDER_RETENTION,
};
pub use uri::{mask_uri, scrub};

/// How long events live before MongoDB's TTL monitor removes them, unless configured.
pub const DEFAULT_MEMORY_TTL: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// How long done updates stay in the inbox, recognising late redeliveries, unless configured.
pub const DEFAULT_INBOX_RETENTION: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// The database used when neither the options nor the URI name one.
pub const DEFAULT_DATABASE: &str = "butler";

/// How to reach and lay out the MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoOptions {
    /// Database name; `None` takes the one in the URI, else [`DEFAULT_DATABASE`].
    pub database: Option<String>,
    /// Age after which memory events and facts expire (TTL indexes on `created_at`); `None`
    /// disables expiry and removes existing TTL indexes.
    pub memory_ttl: Option<Duration>,
    /// How long done updates stay in the inbox before MongoDB's TTL monitor removes them (TTL
    /// index on `inbox_updates.done_at`); a redelivery within it is recognised as a duplicate.
    pub inbox_retention: Duration,
    /// How long to wait for a usable server before an operation fails (also bounds start-up).
    pub server_selection_timeout: Duration,
    /// TCP connect time-out per connection attempt.
    pub connect_timeout: Duration,
    /// Upper bound for any single repository operation, including retries.
    pub operation_timeout: Duration,
    /// Name the server sees for this client (visible in server logs and `currentOp`).
    pub app_name: String,
}

impl Default for MongoOptions {
    fn default() -> Self {
        Self {
            database: None,
            memory_ttl: Some(DEFAULT_MEMORY_TTL),
            inbox_retention: DEFAULT_INBOX_RETENTION,
            server_selection_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(15),
            app_name: "personalised-butler".to_owned(),
        }
    }
}

/// Why the store could not be opened. Every variant names the URI with credentials masked.
#[derive(Debug, Error)]
pub enum MongoConnectError {
    /// The connection string is malformed.
    #[error("invalid MongoDB URI {uri}: {reason}")]
    InvalidUri {
        /// The masked URI.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No server answered `ping` within the server-selection time-out.
    #[error("MongoDB at {uri} is unreachable (waited {waited:?}): {detail}")]
    Unreachable {
        /// The masked URI.
        uri: String,
        /// How long start-up waited.
        waited: Duration,
        /// The driver's reason.
        detail: String,
    },
    /// The server answered but the indexes could not be created.
    #[error("MongoDB at {uri}: {source}")]
    Indexes {
        /// The masked URI.
        uri: String,
        /// What failed.
        source: IndexError,
    },
}

/// An open MongoDB database: hands out the repositories, which share the client.
#[derive(Debug, Clone)]
pub struct MongoStore {
    database: Database,
    options: MongoOptions,
    /// This process's id as a lease holder.
    instance: Uuid,
}

impl MongoStore {
    /// Connects, checks the server answers (`ping`), and ensures the indexes exist.
    ///
    /// # Errors
    /// [`MongoConnectError`] naming the masked URI, within roughly
    /// `server_selection_timeout` when no server is reachable.
    pub async fn connect(uri: &str, options: MongoOptions) -> Result<Self, MongoConnectError> {
        let masked = mask_uri(uri);
        let mut client_options =
            ClientOptions::parse(uri)
                .await
                .map_err(|e| MongoConnectError::InvalidUri {
                    uri: masked.clone(),
                    reason: scrub(&describe(&e), uri),
                })?;
        client_options.server_selection_timeout = Some(options.server_selection_timeout);
        client_options.connect_timeout = Some(options.connect_timeout);
        client_options.app_name = Some(options.app_name.clone());
        let database_name = options
            .database
            .clone()
            .or_else(|| client_options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let client =
            Client::with_options(client_options).map_err(|e| MongoConnectError::InvalidUri {
                uri: masked.clone(),
                reason: scrub(&describe(&e), uri),
            })?;
        let database = client.database(&database_name);

        let waited = options.server_selection_timeout + options.connect_timeout;
        let unreachable = |detail: String| MongoConnectError::Unreachable {
            uri: masked.clone(),
            waited,
            detail: scrub(&detail, uri),
        };
        match tokio::time::timeout(waited, database.run_command(doc! { "ping": 1 })).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(describe(&e))),
            Err(_) => return Err(unreachable("no answer to ping".to_owned())),
        }
        ensure_indexes(&database, options.memory_ttl, options.inbox_retention)
            .await
            .map_err(|source| MongoConnectError::Indexes {
                uri: masked.clone(),
                source,
            })?;
        tracing::info!(uri = %masked, database = %database_name, "connected to MongoDB");
        Ok(Self {
            database,
            options,
            instance: Uuid::new_v4(),
        })
    }

    /// The profile repository over this database.
    #[must_use]
    pub fn profiles(&self) -> MongoProfileRepository {
        MongoProfileRepository::new(&self.database, self.options.operation_timeout)
    }

    /// The memory repository over this database.
    #[must_use]
    pub fn memory(&self) -> MongoMemoryRepository {
        MongoMemoryRepository::new(&self.database, self.options.operation_timeout)
    }

    /// The fact repository over this database.
    #[must_use]
    pub fn facts(&self) -> MongoFactRepository {
        MongoFactRepository::new(&self.database, self.options.operation_timeout)
    }

    /// The update inbox over this database; any number of processes may claim from it.
    #[must_use]
    pub fn inbox(&self) -> MongoInbox {
        MongoInbox::new(
            &self.database,
            self.instance,
            self.options.operation_timeout,
        )
    }

    /// The conversation leases over this database (the same documents the inbox's claims
    /// take).
    #[must_use]
    pub fn leases(&self) -> MongoLeases {
        MongoLeases::new(
            &self.database,
            self.instance,
            self.options.operation_timeout,
        )
    }

    /// The reminders over this database; any number of processes may claim from it.
    #[must_use]
    pub fn reminders(&self) -> MongoReminderRepository {
        MongoReminderRepository::new(&self.database, self.options.operation_timeout)
    }

    /// The database (for administration and tests).
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.database
    }
}

/// A failed driver call, before it becomes a port error.
#[derive(Debug)]
enum Fault {
    /// The driver or server failed; the text is safe to show (codes, hosts, no contents).
    Driver(String),
    /// A stored document could not be decoded; names the field.
    Corrupt(String),
}

impl Fault {
    fn timed_out(collection: &str, limit: Duration) -> Self {
        Self::Driver(format!("mongodb {collection}: no answer within {limit:?}"))
    }

    fn from_driver(collection: &str, e: &DriverError) -> Self {
        match &*e.kind {
            ErrorKind::BsonDeserialization(_) => {
                Self::Corrupt(format!("{collection}: a document could not be decoded"))
            }
            _ => Self::Driver(format!("mongodb {collection}: {}", describe(e))),
        }
    }
}

/// Runs one driver call under `limit`, mapping its error with the collection name.
async fn bounded<T, F>(collection: &str, limit: Duration, call: F) -> Result<T, Fault>
where
    F: IntoFuture<Output = Result<T, DriverError>>,
{
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|e| Fault::from_driver(collection, &e)),
        Err(_) => Err(Fault::timed_out(collection, limit)),
    }
}

/// MongoDB's code for a duplicate key in a unique index.
const DUPLICATE_KEY: i32 = 11_000;

/// Whether the error is (only) duplicate-key violations.
fn is_duplicate_key(e: &DriverError) -> bool {
    match &*e.kind {
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|errs| errs.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

/// A description of a driver error that carries codes, code names and hosts but no server
/// message text for write errors (duplicate-key messages quote key values).
fn describe(e: &DriverError) -> String {
    let text = match &*e.kind {
        ErrorKind::Command(c) => format!("command failed: code {} ({})", c.code, c.code_name),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => format!(
            "write failed: code {} ({})",
            w.code,
            w.code_name.as_deref().unwrap_or("unnamed")
        ),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteConcernError(w)) => {
            format!("write concern failed: code {} ({})", w.code, w.code_name)
        }
        ErrorKind::InsertMany(m) => {
            let mut codes: Vec<i32> = m.write_errors.iter().flatten().map(|w| w.code).collect();
            codes.dedup();
            let concern = m
                .write_concern_error
                .as_ref()
                .map(|w| format!("; write concern code {}", w.code))
                .unwrap_or_default();
            format!("insert failed: write error codes {codes:?}{concern}")
        }
        ErrorKind::Io(io) => format!("connection error: {io}"),
        ErrorKind::ServerSelection { message, .. } => format!("no usable server: {message}"),
        ErrorKind::Authentication { .. } => "authentication failed".to_owned(),
        other => other.to_string(),
    };
    let mut text: String = text.chars().take(400).collect();
    let network = matches!(
        &*e.kind,
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }
    );
    if network || e.contains_label("RetryableWriteError") {
        text.push_str(" (retryable)");
    }
    text
}

fn uuid_bson(id: Uuid) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Uuid,
        bytes: id.as_bytes().to_vec(),
    })
}

fn date_bson(at: OffsetDateTime) -> Bson {
    Bson::DateTime(BsonDateTime::from_millis(to_unix_millis(at)))
}

fn int_bson(value: u64, field: &str) -> Result<Bson, Fault> {
    i64::try_from(value)
        .map(Bson::Int64)
        .map_err(|_| Fault::Corrupt(format!("{field} exceeds the BSON integer range")))
}

/// Reads an integer field stored as Int32 or Int64 (servers may narrow small numbers).
fn get_int(doc: &Document, field: &str) -> Result<i64, Fault> {
    match doc.get(field) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        _ => Err(Fault::Corrupt(format!(
            "{field} is missing or not an integer"
        ))),
    }
}

fn get_str(doc: &Document, field: &str) -> Result<String, Fault> {
    doc.get_str(field)
        .map(str::to_owned)
        .map_err(|_| Fault::Corrupt(format!("{field} is missing or not a string")))
}

fn get_uuid(doc: &Document, field: &str) -> Result<Uuid, Fault> {
    match doc.get(field) {
        Some(Bson::Binary(b)) => Uuid::from_slice(&b.bytes)
            .map_err(|_| Fault::Corrupt(format!("{field} is not a 16-byte UUID"))),
        _ => Err(Fault::Corrupt(format!("{field} is missing or not binary"))),
    }
}

fn get_time(doc: &Document, field: &str) -> Result<OffsetDateTime, Fault> {
    let millis = doc
        .get_datetime(field)
        .map_err(|_| Fault::Corrupt(format!("{field} is missing or not a date")))?
        .timestamp_millis();
    from_unix_millis(millis).ok_or_else(|| Fault::Corrupt(format!("{field} is out of range")))
}

fn get_strings(doc: &Document, field: &str) -> Result<Vec<String>, Fault> {
    let array = doc
        .get_array(field)
        .map_err(|_| Fault::Corrupt(format!("{field} is missing or not an array")))?;
    array
        .iter()
        .map(|b| {
            b.as_str()
                .map(str::to_owned)
                .ok_or_else(|| Fault::Corrupt(format!("{field} holds a non-string")))
        })
        .collect()
}

/// A limit as BSON's `Int64`, saturating.
fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
