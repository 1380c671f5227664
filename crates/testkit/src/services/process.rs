//! A test service running as a child process, stopped when dropped — and also when the test
//! process dies without dropping it (statics are never dropped): the child runs under a small
//! shell watchdog that exits, taking the service with it, once the test process is gone.

use std::fs::{self, File};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{services_dir, ServiceError};

/// Runs the program given as "$@" in the background and stops it when the parent (the test
/// process) is gone or the watchdog itself is asked to stop.
const WATCHDOG: &str = r#"parent="$1"; shift
"$@" &
child=$!
trap 'kill "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill "$child" 2>/dev/null
wait "$child""#;

/// A running service process.
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    watchdog: Child,
    log_path: PathBuf,
}

impl ServiceProcess {
    /// Starts `program args…` with its output in `target/test-services/logs/<name>.log`.
    ///
    /// # Errors
    /// If the program cannot be started; `hint` says how to install it.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        hint: &str,
    ) -> Result<Self, ServiceError> {
        if !program.exists() {
            return Err(ServiceError::new(format!(
                "{name}: {} does not exist; {hint}",
                program.display()
            )));
        }
        let logs = services_dir().join("logs");
        fs::create_dir_all(&logs)
            .map_err(|e| ServiceError::new(format!("cannot create {}: {e}", logs.display())))?;
        let log_path = logs.join(format!("{name}-{}.log", std::process::id()));
        let log = File::create(&log_path)
            .map_err(|e| ServiceError::new(format!("cannot create {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| ServiceError::new(format!("cannot duplicate log handle: {e}")))?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| ServiceError::new(format!("{name}: cannot start: {e}; {hint}")))?;
        Ok(Self {
            name: name.to_owned(),
            watchdog,
            log_path,
        })
    }

    /// Polls `ready` every 100 ms until it returns true, the process exits, or `timeout` passes.
    ///
    /// # Errors
    /// On exit or time-out, with the tail of the service's log.
    pub async fn wait_ready<F, Fut>(
        &mut self,
        timeout: Duration,
        mut ready: F,
    ) -> Result<(), ServiceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if ready().await {
                return Ok(());
            }
            if let Ok(Some(status)) = self.watchdog.try_wait() {
                return Err(self.failure(&format!("exited with {status} before it was ready")));
            }
            if start.elapsed() > timeout {
                return Err(self.failure(&format!("not ready after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The service's log file.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// An error naming the service, with the last lines of its log.
    #[must_use]
    pub fn failure(&self, what: &str) -> ServiceError {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        ServiceError::new(format!(
            "{}: {what}; log {}:\n{}",
            self.name,
            self.log_path.display(),
            tail.join("\n")
        ))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // SIGTERM lets the watchdog stop the service; SIGKILL would orphan it.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.watchdog.id().to_string())
            .status();
        let _ = self.watchdog.wait();
    }
}

/// Sends SIGTERM to `child` (a process under test, e.g. `butler-bot`) and waits for it to exit:
/// its exit status, or `None` when it was still running after `within` (it is then killed).
///
/// # Panics
/// When `kill` cannot be run or the child cannot be polled.
pub async fn sigterm(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "SIGTERM delivered");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll the child process") {
            return Some(status);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
