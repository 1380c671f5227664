//! SQLite storage (the embedded default): one database file holding profiles, memory events,
//! facts and the update inbox.
//!
//! SQLite calls block, so none runs on a runtime worker. Writes run on one thread of their own
//! with one connection, the one the store was opened with; queued writes are committed together
//! (group commit, see the `writer` module). Reads run on tokio's blocking pool with a small
//! pool of connections rather than `r2d2`: waiting for a free connection is an async semaphore,
//! so a burst of requests queues without parking blocking threads (which `r2d2::Pool::get`
//! would do). In WAL mode reads never wait for the writer. Writers in other processes
//! (`memory-worker`, `profile_admin`) serialise with this one on the database lock and
//! `busy_timeout`. Reading connections open lazily, up to
//! [`SqliteOptions::max_connections`] with the writer's.
//!
//! Durability is [`SqliteOptions::synchronous`] (`SQLITE_SYNCHRONOUS`): with `FULL` every
//! commit fsyncs the WAL before it returns, so an acknowledged write survives a power loss;
//! with `NORMAL` a commit reaches the operating system but not the disk, so it survives a crash
//! of the process (and of anything but the kernel and the power), while a power loss may drop
//! the last commits — never corrupt the file. `docs/storage.md` has the measured cost.
//!
//! Checkpoints run in the background. With `synchronous=NORMAL` a WAL commit does not fsync,
//! but SQLite's automatic checkpoint (every 1,000 WAL pages) runs inside the commit that crosses
//! the threshold and fsyncs the WAL and the database — a few to tens of milliseconds on a
//! virtual disk, several times a second under load, with every queued writer waiting. A task
//! runs a `PASSIVE` checkpoint every [`SqliteOptions::checkpoint_interval`] on its own
//! connection instead, when something was written since the last complete one (writers go on
//! appending meanwhile); the automatic checkpoint stays as a
//! backstop at [`BACKSTOP_CHECKPOINT_PAGES`], should the task fall far behind.
//!
//! Representation: times are integer Unix milliseconds (see `butler_domain::timestamp`), UUIDs
//! are 16-byte big-endian BLOBs — SQLite compares BLOBs with `memcmp`, which is exactly the
//! order of [`uuid::Uuid`], so `(created_at, event_id)` row-value comparisons in SQL agree with
//! [`butler_domain::EventCursor`]. Lists (topics, tags) are JSON arrays in TEXT columns.

mod fact_repo;
mod inbox;
mod leases;
mod memory_repo;
mod migrations;
mod profile_repo;
mod reminder_repo;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use uuid::Uuid;

use butler_domain::timestamp::{from_unix_millis, to_unix_millis};

pub use fact_repo::SqliteFactRepository;
pub use inbox::SqliteInbox;
pub use leases::SqliteLeases;
pub use memory_repo::SqliteMemoryRepository;
pub use migrations::SCHEMA_VERSION;
pub use profile_repo::SqliteProfileRepository;
pub use reminder_repo::SqliteReminderRepository;
pub use writer::THREAD_NAME as WRITER_THREAD;

/// Where the database lives when nothing else is configured.
pub const DEFAULT_PATH: &str = "./data/butler.db";

/// How to open the SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file; its parent directory is created if missing.
    pub path: PathBuf,
    /// Most connections used at once (readers run in parallel in WAL mode).
    pub max_connections: usize,
    /// How long a writer waits for the database lock before failing as unavailable.
    pub busy_timeout: Duration,
    /// How often the background task checkpoints the WAL into the database file.
    pub checkpoint_interval: Duration,
    /// Whether a commit waits for the disk (see the module docs).
    pub synchronous: Synchronous,
}

/// SQLite's `PRAGMA synchronous` in WAL mode: what an acknowledged commit survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// The commit is in the operating system's cache: it survives the process crashing, not a
    /// power loss (which may drop the last commits, never corrupt the file).
    Normal,
    /// The commit fsyncs the WAL first: it survives a power loss too.
    #[default]
    Full,
}

impl Synchronous {
    /// The pragma's value.
    #[must_use]
    pub const fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }

    /// The level SQLite reports for `PRAGMA synchronous` (`1` NORMAL, `2` FULL); `None` for
    /// the levels the butler never sets.
    #[must_use]
    pub const fn from_level(level: i64) -> Option<Self> {
        match level {
            1 => Some(Self::Normal),
            2 => Some(Self::Full),
            _ => None,
        }
    }
}

/// WAL pages after which a commit checkpoints inline, if the background task has not (about
/// 40 MB with 4 KiB pages; SQLite's own default is 1,000).
pub const BACKSTOP_CHECKPOINT_PAGES: u32 = 10_000;

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_PATH),
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(1),
            synchronous: Synchronous::default(),
        }
    }
}

impl SqliteOptions {
    /// Default options for the database at `path`.
    #[must_use]
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
}

/// Why the database could not be opened.
#[derive(Debug, Error)]
pub enum SqliteOpenError {
    /// The parent directory could not be created.
    #[error("cannot create the directory {dir} for the SQLite database: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// SQLite refused to open or configure the file.
    #[error("cannot open the SQLite database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A schema migration failed; the database was left at the last complete version.
    #[error("migrating the SQLite database {path} to schema version {version} failed: {source}")]
    Migrate {
        /// The file.
        path: PathBuf,
        /// The version being applied.
        version: u32,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file was written by a newer release of the butler.
    #[error(
        "the SQLite database {path} has schema version {found}, newer than this binary's \
         {supported}: upgrade the butler or restore a backup"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// The newest version this binary knows.
        supported: u32,
    },
    /// Another live process owns the file (see [`SqliteStore::take_ownership`]).
    #[error(
        "another butler-bot process (pid {pid}) is using the SQLite database {path}: \
         stop it first — one bot per SQLite file (the lock is on {lock}); several replicas need \
         MongoDB"
    )]
    Owned {
        /// The database file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The owner's process id as it recorded it (`unknown` if it had not yet).
        pid: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {lock} (the owner lock of the SQLite database {path}): {source}")]
    Lock {
        /// The database file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The blocking task opening the database did not finish.
    #[error("opening the SQLite database {path} was interrupted: {detail}")]
    Interrupted {
        /// The file.
        path: PathBuf,
        /// What happened to the task.
        detail: String,
    },
    /// A setting in effect could not be read back, or is not one the butler sets.
    #[error("cannot read back the settings of the SQLite database {path}: {detail}")]
    Inspect {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// An open SQLite database: hands out the repositories, which share its connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database, switches it to WAL and applies any pending
    /// schema migrations.
    ///
    /// # Errors
    /// [`SqliteOpenError`] naming the file and what failed.
    pub async fn open(options: SqliteOptions) -> Result<Self, SqliteOpenError> {
        let path = options.path.clone();
        let every = options.checkpoint_interval;
        let opened = tokio::task::spawn_blocking(move || Pool::open(options))
            .await
            .map_err(|e| SqliteOpenError::Interrupted {
                path,
                detail: e.to_string(),
            })??;
        let pool = Arc::new(opened);
        tokio::spawn(checkpoints(Arc::downgrade(&pool), every));
        Ok(Self { pool })
    }

    /// The profile repository over this database.
    #[must_use]
    pub fn profiles(&self) -> SqliteProfileRepository {
        SqliteProfileRepository::new(Arc::clone(&self.pool))
    }

    /// The memory repository over this database.
    #[must_use]
    pub fn memory(&self) -> SqliteMemoryRepository {
        SqliteMemoryRepository::new(Arc::clone(&self.pool))
    }

    /// The fact repository over this database.
    #[must_use]
    pub fn facts(&self) -> SqliteFactRepository {
        SqliteFactRepository::new(Arc::clone(&self.pool))
    }

    /// The update inbox in this database. A bot takes ownership of the file first
    /// ([`SqliteStore::take_ownership`]).
    #[must_use]
    pub fn inbox(&self) -> SqliteInbox {
        SqliteInbox::new(Arc::clone(&self.pool))
    }

    /// The reminders in this database.
    #[must_use]
    pub fn reminders(&self) -> SqliteReminderRepository {
        SqliteReminderRepository::new(Arc::clone(&self.pool))
    }

    /// The conversation leases in this database (the same rows the inbox's claims take).
    #[must_use]
    pub fn leases(&self) -> SqliteLeases {
        SqliteLeases::new(Arc::clone(&self.pool))
    }

    /// Makes this process the file's one bot: takes an exclusive lock on `<file>.lock` for as
    /// long as the store lives (the operating system drops it when the process ends, however
    /// it ends), then voids the leases the previous owner left — a crashed or stopped bot's
    /// claims, so its unfinished updates are answered at once instead of after their leases
    /// expire. Leases of other processes on the file (`memory-worker`, `profile_admin`) are
    /// left alone. Returns how many leases were voided.
    ///
    /// # Errors
    /// [`SqliteOpenError::Owned`] when another live process owns the file (naming the file
    /// and the owner's pid); [`SqliteOpenError::Lock`] or [`SqliteOpenError::Open`] when the
    /// lock file or the database cannot be written.
    pub async fn take_ownership(&self) -> Result<u64, SqliteOpenError> {
        let pool = Arc::clone(&self.pool);
        let path = self.pool.connect.path.clone();
        tokio::task::spawn_blocking(move || pool.take_ownership())
            .await
            .map_err(|e| SqliteOpenError::Interrupted {
                path,
                detail: e.to_string(),
            })?
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.pool.connect.path
    }

    /// The durability in effect, as SQLite reports it on a connection of the pool (`PRAGMA
    /// synchronous`): for the start-up log, and for tests that the setting reached SQLite.
    ///
    /// # Errors
    /// [`SqliteOpenError::Inspect`] when no connection answers, or one reports a level the
    /// butler never sets.
    pub async fn synchronous(&self) -> Result<Synchronous, SqliteOpenError> {
        let level = self
            .pool
            .run(Access::Read, |conn| {
                Ok(conn.pragma_query_value(None, "synchronous", |row| row.get::<_, i64>(0))?)
            })
            .await;
        let inspect = |detail: String| SqliteOpenError::Inspect {
            path: self.pool.connect.path.clone(),
            detail,
        };
        let level = level.map_err(|fault| inspect(fault.detail("pragma synchronous")))?;
        Synchronous::from_level(level)
            .ok_or_else(|| inspect(format!("synchronous is level {level}, not NORMAL or FULL")))
    }
}

/// Whether a repository call writes: writes run on the writer thread ([`writer`]).
#[derive(Debug, Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// How every connection of a store is opened and set up.
#[derive(Debug, Clone)]
struct Connect {
    path: PathBuf,
    busy_timeout: Duration,
    /// Set on every connection.
    synchronous: Synchronous,
}

impl Connect {
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        // A per-connection setting: every connection of the pool gets it.
        conn.pragma_update(None, "synchronous", self.synchronous.pragma())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES)?;
        Ok(conn)
    }
}

/// The writer thread's connection, plus lazily opened reading connections, at most `permits`
/// of them in use at once.
#[derive(Debug)]
struct Pool {
    /// How its connections are opened; `connect.path` is the database file.
    connect: Connect,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    /// Runs every write of this process (see [`writer`]).
    writer: writer::Writer,
    /// Set by every write, cleared by the background checkpoint: an idle store is left alone.
    written: Arc<AtomicBool>,
    /// This process's id as a lease holder (one per opened store).
    instance: Uuid,
    /// The owner lock, once taken ([`SqliteStore::take_ownership`]); held while the pool lives.
    owner_lock: Mutex<Option<std::fs::File>>,
}

/// A port's storage error, as [`Pool::run_for`] builds it from a [`Fault`].
trait PortError {
    /// What the log line calls the storage (`profile`, `memory`, `fact`, `inbox`).
    const STORAGE: &'static str;
    fn corrupt(detail: String) -> Self;
    fn unavailable(operation: &'static str, detail: String) -> Self;
}

impl PortError for butler_domain::ports::ProfileStoreError {
    const STORAGE: &'static str = "profile";
    fn corrupt(detail: String) -> Self {
        Self::Corrupt { detail }
    }
    fn unavailable(operation: &'static str, detail: String) -> Self {
        Self::Unavailable { operation, detail }
    }
}

impl PortError for butler_domain::ports::MemoryStoreError {
    const STORAGE: &'static str = "memory";
    fn corrupt(detail: String) -> Self {
        Self::Corrupt { detail }
    }
    fn unavailable(operation: &'static str, detail: String) -> Self {
        Self::Unavailable { operation, detail }
    }
}

impl PortError for butler_domain::ports::FactStoreError {
    const STORAGE: &'static str = "fact";
    fn corrupt(detail: String) -> Self {
        Self::Corrupt { detail }
    }
    fn unavailable(operation: &'static str, detail: String) -> Self {
        Self::Unavailable { operation, detail }
    }
}

impl PortError for butler_domain::ports::LeaseError {
    const STORAGE: &'static str = "lease";
    fn corrupt(detail: String) -> Self {
        Self::Corrupt { detail }
    }
    fn unavailable(operation: &'static str, detail: String) -> Self {
        Self::Unavailable { operation, detail }
    }
}

impl PortError for butler_domain::ports::ReminderStoreError {
    const STORAGE: &'static str = "reminder";
    fn corrupt(detail: String) -> Self {
        Self::Corrupt { detail }
    }
    fn unavailable(operation: &'static str, detail: String) -> Self {
        Self::Unavailable { operation, detail }
    }
}

impl PortError for butler_domain::ports::InboxError {
    const STORAGE: &'static str = "inbox";
    fn corrupt(detail: String) -> Self {
        Self::Corrupt { detail }
    }
    fn unavailable(operation: &'static str, detail: String) -> Self {
        Self::Unavailable { operation, detail }
    }
}

/// What went wrong inside a blocking database call, before it becomes a port error.
#[derive(Debug)]
enum Fault {
    /// SQLite failed (I/O, lock time-out, constraint, …).
    Db(rusqlite::Error),
    /// A stored value could not be decoded; names the column, never the value.
    Corrupt(String),
    /// The blocking task panicked or was cancelled.
    Task(String),
}

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(column, ..)
            | rusqlite::Error::InvalidColumnType(column, ..)
            | rusqlite::Error::IntegralValueOutOfRange(column, ..) => {
                Self::Corrupt(format!("column {column} has an unexpected value"))
            }
            other => Self::Db(other),
        }
    }
}

impl Fault {
    /// The detail for an `Unavailable` error: SQLite's error code and message, which name
    /// tables and constraints but never bound values.
    fn detail(&self, table: &str) -> String {
        match self {
            Self::Db(rusqlite::Error::SqliteFailure(code, message)) => match message {
                Some(m) => format!("sqlite {table}: {code}: {m}"),
                None => format!("sqlite {table}: {code}"),
            },
            Self::Db(other) => format!("sqlite {table}: {other}"),
            Self::Corrupt(what) => format!("sqlite {table}: {what}"),
            Self::Task(what) => format!("sqlite {table}: blocking task failed: {what}"),
        }
    }
}

impl Pool {
    fn open(options: SqliteOptions) -> Result<Self, SqliteOpenError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SqliteOpenError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let SqliteOptions {
            path,
            max_connections,
            busy_timeout,
            synchronous,
            ..
        } = options;
        let connect = Connect {
            path,
            busy_timeout,
            synchronous,
        };
        let path = &connect.path;
        // The first connection sets the file up and then is the writer thread's for good.
        let open_error = |source| SqliteOpenError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = connect.open().map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        migrations::apply(&mut conn, path)?;
        let written = Arc::new(AtomicBool::new(false));
        let writer = writer::Writer::start(conn, Arc::clone(&written)).map_err(|source| {
            SqliteOpenError::Interrupted {
                path: path.clone(),
                detail: format!("cannot start the SQLite writer thread: {source}"),
            }
        })?;
        Ok(Self {
            connect,
            idle: Mutex::new(Vec::new()),
            // One connection is the writer thread's.
            permits: Semaphore::new(max_connections.saturating_sub(1).max(1)),
            writer,
            written,
            instance: Uuid::new_v4(),
            owner_lock: Mutex::new(None),
        })
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        self.connect.open()
    }

    /// See [`SqliteStore::take_ownership`]. Blocking.
    fn take_ownership(&self) -> Result<u64, SqliteOpenError> {
        let lock_path = lock_path(&self.connect.path);
        let lock_error = |source| SqliteOpenError::Lock {
            path: self.connect.path.clone(),
            lock: lock_path.clone(),
            source,
        };
        let open_error = |source| SqliteOpenError::Open {
            path: self.connect.path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_error)?;
        let mut conn = match self.take() {
            Some(conn) => conn,
            None => self.connect().map_err(open_error)?,
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = conn
                    .query_row("SELECT pid FROM store_owner WHERE id = 1", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map_or_else(|_| "unknown".to_owned(), |pid| pid.to_string());
                self.give_back(conn);
                return Err(SqliteOpenError::Owned {
                    path: self.connect.path.clone(),
                    lock: lock_path,
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                self.give_back(conn);
                return Err(lock_error(source));
            }
        }
        let voided = (|| -> rusqlite::Result<u64> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let previous: Option<Vec<u8>> = tx
                .query_row("SELECT instance FROM store_owner WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let voided = match previous.and_then(|b| Uuid::from_slice(&b).ok()) {
                Some(previous) => leases::void_holder(&tx, previous)?,
                None => 0,
            };
            tx.execute(
                "INSERT INTO store_owner (id, instance, pid, since) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET instance = excluded.instance, \
                   pid = excluded.pid, since = excluded.since",
                rusqlite::params![
                    uuid_bytes(self.instance),
                    i64::from(std::process::id()),
                    millis(OffsetDateTime::now_utc())
                ],
            )?;
            tx.commit()?;
            Ok(voided)
        })();
        self.give_back(conn);
        let voided = voided.map_err(open_error)?;
        *self
            .owner_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file);
        Ok(voided)
    }

    fn take(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }

    /// [`Pool::run`] for a repository of `table`: a corrupt value becomes the port's `Corrupt`
    /// error, anything else is logged (without values) and becomes its `Unavailable` error.
    async fn run_for<E, T, F>(
        self: &Arc<Self>,
        table: &'static str,
        operation: &'static str,
        access: Access,
        f: F,
    ) -> Result<T, E>
    where
        E: PortError,
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        self.run(access, f).await.map_err(|fault| match fault {
            Fault::Corrupt(detail) => E::corrupt(detail),
            other => {
                let detail = other.detail(table);
                tracing::warn!(operation, table, %detail, "{} storage failed", E::STORAGE);
                E::unavailable(operation, detail)
            }
        })
    }

    /// Runs `f`: a write on the writer thread, after the writes of this process queued before
    /// it; a read with a connection on the blocking pool.
    async fn run<T, F>(self: &Arc<Self>, access: Access, f: F) -> Result<T, Fault>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fault> + Send + 'static,
    {
        if matches!(access, Access::Write) {
            return self.writer.write(f).await;
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Fault::Task(e.to_string()))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = match pool.take() {
                Some(conn) => conn,
                None => pool.connect()?,
            };
            let result = f(&mut conn);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| Fault::Task(e.to_string()))?
    }
}

/// Checkpoints the WAL every `every` until the store is dropped (see the module docs).
async fn checkpoints(pool: Weak<Pool>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if !pool.written.swap(false, Ordering::Acquire) {
            continue;
        }
        // PASSIVE: copies what no reader still needs, never waits for readers or writers.
        // It answers (busy, frames in the WAL, frames copied).
        let copied_all = pool
            .run(Access::Read, |conn| {
                Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok(row.get::<_, i64>(2)? >= row.get::<_, i64>(1)?)
                })?)
            })
            .await;
        let finished = match copied_all {
            Ok(all) => all,
            Err(fault) => {
                tracing::debug!(detail = %fault.detail("wal"), "background checkpoint failed");
                false
            }
        };
        if !finished {
            // A reader held back part of the WAL, or the call failed: try again next time.
            pool.written.store(true, Ordering::Release);
        }
    }
}

/// The owner lock file of the database at `path`: `<file>.lock` beside it.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn millis(at: OffsetDateTime) -> i64 {
    to_unix_millis(at)
}

fn time_from(column: &str, millis: i64) -> Result<OffsetDateTime, Fault> {
    from_unix_millis(millis).ok_or_else(|| Fault::Corrupt(format!("{column} is out of range")))
}

fn uuid_bytes(id: Uuid) -> [u8; 16] {
    *id.as_bytes()
}

fn uuid_from(column: &str, bytes: &[u8]) -> Result<Uuid, Fault> {
    Uuid::from_slice(bytes).map_err(|_| Fault::Corrupt(format!("{column} is not a 16-byte UUID")))
}

fn to_json(list: &[String]) -> String {
    // Serialising a list of strings cannot fail.
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

fn from_json(column: &str, text: &str) -> Result<Vec<String>, Fault> {
    serde_json::from_str(text)
        .map_err(|_| Fault::Corrupt(format!("{column} is not a JSON list of strings")))
}

/// Converts a `usize` limit to SQLite's integer, saturating (no one pages 2⁶³ rows).
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
