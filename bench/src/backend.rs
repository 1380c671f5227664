//! The two storage backends, as the product configures them: a SQLite file, or a database on
//! the MongoDB-wire test server (SecantusDB, started on first use; or `BUTLER_TEST_MONGODB_URI`).

use std::sync::Arc;

use butler_factory::settings::Settings;
use butler_factory::wiring::{self, Storage};
pub use butler_testkit::storage::Backend;
use butler_testkit::storage::TestStorage;

use crate::timing::{CallTimer, TimedMemory, TimedProfiles};

/// The column heading of `backend`.
#[must_use]
pub const fn label(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite",
        Backend::Mongo => "MongoDB-wire",
    }
}

/// `SQLITE_SYNCHRONOUS` of every benchmark: commits wait for the operating system, not for
/// the disk, so the figures measure the butler's code rather than this machine's fsync, and
/// stay comparable with the runs before `full` became the default (what `full` costs is in
/// `docs/storage.md`).
pub const SQLITE_SYNCHRONOUS: &str = "normal";

/// Settings variables selecting a fresh, empty store of one backend; the SQLite file lives in
/// a temporary directory removed on drop.
pub struct StoreEnv {
    /// The store, as `STORAGE`, `SQLITE_PATH` or `MONGODB_URI` + `MONGODB_DB`.
    pub storage: TestStorage,
}

impl StoreEnv {
    /// A fresh store of `backend`; `tag` names the Mongo database.
    ///
    /// # Errors
    /// If the temporary directory cannot be made or the Mongo server cannot be started (the
    /// message says what to install).
    pub async fn fresh(backend: Backend, tag: &str) -> anyhow::Result<Self> {
        let storage = TestStorage::fresh(backend, tag)
            .await
            .map_err(|e| anyhow::anyhow!("{} test store: {e}", label(backend)))?;
        Ok(Self { storage })
    }

    /// Settings from these variables plus `extra` (everything else at its default, but
    /// [`SQLITE_SYNCHRONOUS`]).
    ///
    /// # Errors
    /// If a value is invalid.
    pub fn settings(&self, extra: &[(&str, String)]) -> anyhow::Result<Settings> {
        Settings::from_sources(None, |name| {
            extra
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| value.clone())
                .or_else(|| (name == "SQLITE_SYNCHRONOUS").then(|| SQLITE_SYNCHRONOUS.to_owned()))
                .or_else(|| self.storage.var(name))
        })
        .map_err(|e| anyhow::anyhow!("benchmark settings: {e}"))
    }
}

/// Opens the configured storage with every call timed by `timer`.
///
/// # Errors
/// If the store cannot be opened.
pub async fn open_timed(settings: &Settings, timer: &Arc<CallTimer>) -> anyhow::Result<Storage> {
    let storage = wiring::open_storage(settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Storage {
        profiles: Arc::new(TimedProfiles {
            inner: storage.profiles.clone(),
            timer: timer.clone(),
        }),
        memory: Arc::new(TimedMemory {
            inner: storage.memory.clone(),
            timer: timer.clone(),
        }),
        ..storage
    })
}
