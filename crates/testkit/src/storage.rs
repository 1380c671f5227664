//! A fresh, empty store of either backend for a test, described the way an operator configures
//! it: the `STORAGE`, `SQLITE_PATH`, `MONGODB_URI` and `MONGODB_DB` variables. Tests hand these
//! to a binary they start ([`TestStorage::env`]) or to the factory's settings
//! ([`TestStorage::var`]), so the store is opened exactly as production opens it.

use std::path::PathBuf;

use crate::services::mongo::{shared_mongo, unique_database_name};
use crate::services::ServiceError;

/// Which storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: a SQLite file.
    Sqlite,
    /// A database on the MongoDB-wire test server.
    Mongo,
}

impl Backend {
    /// Both, SQLite first.
    pub const ALL: [Self; 2] = [Self::Sqlite, Self::Mongo];

    /// The value of `STORAGE` that selects it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Mongo => "mongodb",
        }
    }
}

/// A fresh store: a SQLite file in a temporary directory (removed on drop), or a database of
/// its own on the shared MongoDB-wire test server.
#[derive(Debug)]
pub struct TestStorage {
    backend: Backend,
    vars: Vec<(&'static str, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestStorage {
    /// A SQLite file that does not exist yet, in a new temporary directory.
    ///
    /// # Errors
    /// If the temporary directory cannot be created.
    pub fn sqlite() -> Result<Self, ServiceError> {
        let dir = tempfile::Builder::new()
            .prefix("butler-test-")
            .tempdir()
            .map_err(|e| ServiceError(format!("cannot create a temporary directory: {e}")))?;
        let path = dir.path().join("butler.db");
        Ok(Self {
            backend: Backend::Sqlite,
            vars: vec![
                ("STORAGE", Backend::Sqlite.name().to_owned()),
                ("SQLITE_PATH", path.display().to_string()),
            ],
            _dir: Some(dir),
        })
    }

    /// A new database named after `tag` on the MongoDB-wire test server (started on first use).
    ///
    /// # Errors
    /// If the server cannot be started; the message says what to install.
    pub async fn mongo(tag: &str) -> Result<Self, ServiceError> {
        let server = shared_mongo().await?;
        Ok(Self {
            backend: Backend::Mongo,
            vars: vec![
                ("STORAGE", Backend::Mongo.name().to_owned()),
                ("MONGODB_URI", server.uri().to_owned()),
                ("MONGODB_DB", unique_database_name(tag)),
            ],
            _dir: None,
        })
    }

    /// A fresh store of `backend`; `tag` names a Mongo database.
    ///
    /// # Errors
    /// As [`Self::sqlite`] and [`Self::mongo`].
    pub async fn fresh(backend: Backend, tag: &str) -> Result<Self, ServiceError> {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Mongo => Self::mongo(tag).await,
        }
    }

    /// Which backend.
    #[must_use]
    pub const fn backend(&self) -> Backend {
        self.backend
    }

    /// The settings variables selecting this store, for `Command::envs`.
    #[must_use]
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.vars.clone()
    }

    /// One settings variable of this store, for `Settings::from_sources`.
    #[must_use]
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.clone())
    }

    /// The SQLite file, if this is the SQLite backend.
    #[must_use]
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.var("SQLITE_PATH").map(PathBuf::from)
    }
}
