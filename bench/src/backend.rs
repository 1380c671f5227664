//! The two storage backends, as the product configures them: a SQLite file, or a database on
//! the MongoDB-wire test server (SecantusDB, started on first use; or `BUTLER_TEST_MONGODB_URI`).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use butler_factory::settings::Settings;
use butler_factory::wiring::{self, Storage};
use butler_testkit::services::mongo::{shared_mongo, unique_database_name};

use crate::timing::{CallTimer, TimedMemory, TimedProfiles};

/// Which storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default.
    Sqlite,
    /// The MongoDB-wire test server.
    Mongo,
}

impl Backend {
    /// Both, in table order.
    pub const ALL: [Self; 2] = [Self::Sqlite, Self::Mongo];

    /// Column heading.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Mongo => "MongoDB-wire",
        }
    }
}

/// Settings variables selecting a fresh, empty store of one backend; the SQLite file lives in
/// a temporary directory removed on drop.
pub struct StoreEnv {
    /// `SQLITE_PATH` or `MONGODB_URI` + `MONGODB_DB`, and `STORAGE`.
    pub vars: HashMap<String, String>,
    _dir: Option<tempfile::TempDir>,
}

impl StoreEnv {
    /// A fresh store of `backend`; `tag` names the Mongo database.
    ///
    /// # Errors
    /// If the temporary directory cannot be made or the Mongo server cannot be started (the
    /// message says what to install).
    pub async fn fresh(backend: Backend, tag: &str) -> anyhow::Result<Self> {
        let mut vars = HashMap::new();
        let dir = match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("butler-bench-")
                    .tempdir()
                    .context("temporary directory for the SQLite file")?;
                vars.insert("STORAGE".to_owned(), "sqlite".to_owned());
                vars.insert(
                    "SQLITE_PATH".to_owned(),
                    dir.path().join("butler.db").display().to_string(),
                );
                Some(dir)
            }
            Backend::Mongo => {
                let server = shared_mongo()
                    .await
                    .map_err(|e| anyhow::anyhow!("MongoDB-wire test server: {e}"))?;
                vars.insert("STORAGE".to_owned(), "mongodb".to_owned());
                vars.insert("MONGODB_URI".to_owned(), server.uri().to_owned());
                vars.insert("MONGODB_DB".to_owned(), unique_database_name(tag));
                None
            }
        };
        Ok(Self { vars, _dir: dir })
    }

    /// Settings from these variables plus `extra` (everything else at its default).
    ///
    /// # Errors
    /// If a value is invalid.
    pub fn settings(&self, extra: &[(&str, String)]) -> anyhow::Result<Settings> {
        let mut vars = self.vars.clone();
        for (name, value) in extra {
            vars.insert((*name).to_owned(), value.clone());
        }
        Settings::from_sources(None, |name| vars.get(name).cloned())
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
