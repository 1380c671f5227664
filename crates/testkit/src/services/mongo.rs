//! A MongoDB-wire server for tests: SecantusDB (PyPI, pinned) started once per test binary on
//! a free loopback port, or the server named by `BUTLER_TEST_MONGODB_URI`. Tests share the
//! server and isolate themselves by database name ([`unique_database_name`]).
//!
//! The shared server lives in a static, which Rust never drops; the [`ServiceProcess`]
//! watchdog stops it once the test process is gone, so no server outlives its test binary.
//! Fault tests drive the server's `failCommand` fail point ([`FailCommand`]), scoped by the
//! client's `appName` so concurrent tests and other clients are unaffected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ClientOptions;
use mongodb::Client;
use tokio::sync::OnceCell;

use super::{free_port, PythonEnv, ServiceError, ServiceProcess};

/// The pinned server package.
pub const SECANTUS_REQUIREMENT: &str = "SecantusDB==0.7.0b3";

/// Environment variable naming an existing MongoDB to test against instead.
pub const MONGODB_URI_VAR: &str = "BUTLER_TEST_MONGODB_URI";

const INSTALL_HINT: &str = "the MongoDB-wire test server needs Python 3 with venv \
     (`apt-get install python3 python3-venv`) and access to PyPI for \
     `pip install SecantusDB==0.7.0b3`; or set BUTLER_TEST_MONGODB_URI=mongodb://host:port \
     to test against a running MongoDB";

/// The deadline of one operation for storage contract suites run against the test server.
/// SecantusDB is a single Python process shared by every test of a binary; with two tests at
/// once on a loaded 2-core machine one 500-event append has taken over 15 s there (the
/// production default, which suits a real MongoDB). The contracts check behaviour, not speed;
/// the deadline itself is tested against a stalling server (`mongo_faults.rs`).
pub const STAND_IN_OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// A MongoDB-wire server reachable at [`MongoServer::uri`].
#[derive(Debug)]
pub struct MongoServer {
    uri: String,
    process: Option<ServiceProcess>,
}

impl MongoServer {
    /// The connection string (no database in the path).
    #[must_use]
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether this is an external server from `BUTLER_TEST_MONGODB_URI`.
    #[must_use]
    pub fn is_external(&self) -> bool {
        self.process.is_none()
    }

    /// Starts a private SecantusDB (or adopts `BUTLER_TEST_MONGODB_URI`) and waits until it
    /// answers `ping`.
    ///
    /// # Errors
    /// A [`ServiceError`] saying what to install.
    pub async fn start() -> Result<Self, ServiceError> {
        if let Ok(uri) = std::env::var(MONGODB_URI_VAR) {
            let server = Self { uri, process: None };
            ping_until_ready(&server.uri, Duration::from_secs(10))
                .await
                .map_err(|e| {
                    ServiceError::new(format!(
                        "{MONGODB_URI_VAR} is set but the server does not answer ping: {e}"
                    ))
                })?;
            return Ok(server);
        }
        let env = tokio::task::spawn_blocking(|| {
            PythonEnv::ensure("secantusdb", &[SECANTUS_REQUIREMENT])
        })
        .await
        .map_err(|e| ServiceError::new(format!("provisioning SecantusDB panicked: {e}")))?
        .map_err(|e| ServiceError::new(format!("{e}\n{INSTALL_HINT}")))?;
        let port = free_port();
        let mut process = ServiceProcess::spawn(
            &format!("secantusdb-{port}"),
            &env.bin("secantusd-py"),
            &[
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--storage-path".into(),
                ":memory:".into(),
                "--enable-test-commands".into(),
            ],
            &[],
            INSTALL_HINT,
        )?;
        // A single-node replica set: connect directly so the driver never chases the host
        // name the server advertises.
        let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
        let probe = probe_client(&uri).await?;
        process
            .wait_ready(Duration::from_secs(60), || {
                let probe = probe.clone();
                async move { ping(&probe).await.is_ok() }
            })
            .await
            .map_err(|e| ServiceError::new(format!("{e}\n{INSTALL_HINT}")))?;
        Ok(Self {
            uri,
            process: Some(process),
        })
    }
}

static SHARED: OnceCell<MongoServer> = OnceCell::const_new();

/// The server shared by every test in this binary, started on first use.
///
/// # Errors
/// A [`ServiceError`] saying what to install; later callers retry the start.
pub async fn shared_mongo() -> Result<&'static MongoServer, ServiceError> {
    SHARED.get_or_try_init(MongoServer::start).await
}

/// A database name no other test (in this or another process) uses: `prefix` plus the
/// process id and a counter, within MongoDB's 63-character limit.
#[must_use]
pub fn unique_database_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(30)
        .collect();
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

async fn probe_client(uri: &str) -> Result<Client, ServiceError> {
    let mut options = ClientOptions::parse(uri)
        .await
        .map_err(|e| ServiceError::new(format!("bad test MongoDB URI: {e}")))?;
    options.server_selection_timeout = Some(Duration::from_millis(500));
    options.connect_timeout = Some(Duration::from_millis(500));
    Client::with_options(options)
        .map_err(|e| ServiceError::new(format!("cannot build a MongoDB client: {e}")))
}

async fn ping(client: &Client) -> mongodb::error::Result<Document> {
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
}

async fn ping_until_ready(uri: &str, timeout: Duration) -> Result<(), ServiceError> {
    let client = probe_client(uri).await?;
    let start = std::time::Instant::now();
    loop {
        match ping(&client).await {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > timeout => {
                return Err(ServiceError::new(format!("no ping answer: {}", e.kind)))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// How a `failCommand` fail point makes matching commands fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailWith {
    /// The server answers with this error code.
    ErrorCode(i32),
    /// The server closes the connection without answering.
    CloseConnection,
    /// The server holds the command this long before running it (`blockConnection`): a
    /// stalled server, for checking the client's own deadlines.
    Block(std::time::Duration),
}

/// A `failCommand` fail point on `commands`, for clients whose `appName` is `app_name`.
#[derive(Debug, Clone)]
pub struct FailCommand {
    /// Command names (`insert`, `find`, `update`, `delete`, `aggregate`, …).
    pub commands: Vec<String>,
    /// The failure.
    pub with: FailWith,
    /// Only commands from clients with this `appName` fail.
    pub app_name: String,
}

impl FailCommand {
    /// Turns the fail point on until [`FailCommand::clear`].
    ///
    /// # Errors
    /// If the server refuses (it needs test commands enabled).
    pub async fn enable(&self, admin: &Client) -> mongodb::error::Result<()> {
        self.configure(admin, Bson::String("alwaysOn".to_owned()))
            .await
    }

    /// Lets the next `skip` matching commands through, then fails every later one until
    /// [`FailCommand::clear`]: interrupts a sequence of writes after its first `skip` steps.
    ///
    /// # Errors
    /// If the server refuses (it needs test commands enabled).
    pub async fn enable_after(&self, admin: &Client, skip: u32) -> mongodb::error::Result<()> {
        self.configure(
            admin,
            Bson::Document(doc! { "skip": skip, "times": i32::MAX }),
        )
        .await
    }

    async fn configure(&self, admin: &Client, mode: Bson) -> mongodb::error::Result<()> {
        let mut data = doc! {
            "failCommands": self.commands.clone(),
            "appName": self.app_name.clone(),
        };
        match self.with {
            FailWith::ErrorCode(code) => data.insert("errorCode", code),
            FailWith::CloseConnection => data.insert("closeConnection", true),
            FailWith::Block(duration) => {
                data.insert("blockConnection", true);
                data.insert(
                    "blockTimeMS",
                    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
                )
            }
        };
        admin
            .database("admin")
            .run_command(doc! {
                "configureFailPoint": "failCommand",
                "mode": mode,
                "data": data,
            })
            .await
            .map(|_| ())
    }

    /// Turns every `failCommand` fail point off.
    ///
    /// # Errors
    /// If the server cannot be reached.
    pub async fn clear(admin: &Client) -> mongodb::error::Result<()> {
        admin
            .database("admin")
            .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
            .await
            .map(|_| ())
    }
}
