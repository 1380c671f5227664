//! Python virtual environments for test services (SecantusDB, faster-whisper-server, model
//! packages). One venv per service, created once under a file lock so parallel test binaries
//! never race, and re-created when the requirement list changes.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{services_dir, ServiceError};

/// A provisioned virtual environment.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    root: PathBuf,
}

impl PythonEnv {
    /// Returns the venv `name` with `requirements` installed, creating it if needed. Blocking:
    /// from async code call it inside `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    /// When `python3`/venv/pip are missing or an install fails; the message names the fix.
    pub fn ensure(name: &str, requirements: &[&str]) -> Result<Self, ServiceError> {
        let base = services_dir();
        fs::create_dir_all(&base)
            .map_err(|e| ServiceError::new(format!("cannot create {}: {e}", base.display())))?;
        let lock_path = base.join(format!("{name}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ServiceError::new(format!("cannot open {}: {e}", lock_path.display())))?;
        lock.lock()
            .map_err(|e| ServiceError::new(format!("cannot lock {}: {e}", lock_path.display())))?;
        let env = Self {
            root: base.join(name),
        };
        let result = env.provision(requirements);
        // Dropping the file releases the lock; say so explicitly for readers.
        drop::<File>(lock);
        result.map(|()| env)
    }

    fn provision(&self, requirements: &[&str]) -> Result<(), ServiceError> {
        let stamp = self.root.join(".requirements");
        let wanted = requirements.join("\n");
        if fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) && self.python().exists() {
            return Ok(());
        }
        if self.root.exists() {
            fs::remove_dir_all(&self.root).map_err(|e| {
                ServiceError::new(format!("cannot remove stale {}: {e}", self.root.display()))
            })?;
        }
        run(
            Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&self.root),
            "create a Python venv",
            "install Python 3 with venv support: `apt-get install python3 python3-venv`",
        )?;
        if !requirements.is_empty() {
            run(
                Command::new(self.python())
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--quiet",
                    ])
                    .args(requirements),
                &format!("pip install {}", requirements.join(" ")),
                "check that PyPI is reachable (pip install needs the package index)",
            )?;
        }
        fs::write(&stamp, wanted)
            .map_err(|e| ServiceError::new(format!("cannot write {}: {e}", stamp.display())))
    }

    /// The venv's directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The venv's Python interpreter.
    #[must_use]
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// An executable installed in the venv (`bin/<name>`).
    #[must_use]
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    /// The venv's `site-packages` directory.
    ///
    /// # Errors
    /// If the venv has no `lib/python3.*/site-packages`.
    pub fn site_packages(&self) -> Result<PathBuf, ServiceError> {
        let lib = self.root.join("lib");
        let entries = fs::read_dir(&lib)
            .map_err(|e| ServiceError::new(format!("cannot read {}: {e}", lib.display())))?;
        entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages"))
            .find(|p| p.is_dir())
            .ok_or_else(|| ServiceError::new(format!("no site-packages under {}", lib.display())))
    }
}

fn run(command: &mut Command, what: &str, hint: &str) -> Result<(), ServiceError> {
    let output = command
        .output()
        .map_err(|e| ServiceError::new(format!("cannot {what}: {e}; {hint}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(ServiceError::new(format!(
        "failed to {what} ({}); {hint}\n{tail}",
        output.status
    )))
}
