//! GGUF models on disk: the documented default model, the models directory (`./data/models/`)
//! and a resumable, SHA-256-verified download with a progress bar.
//!
//! A download goes to `<file>.part`; an interrupted one resumes from where it stopped with an
//! HTTP `Range` request. Only a file whose SHA-256 matches is renamed into place, so a model in
//! the directory is always a whole, verified file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// A model the butler knows how to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name for `models list` and logs.
    pub name: String,
    /// File name inside the models directory.
    pub file_name: String,
    /// Where to download it (pinned to a revision, so the checksum stays right).
    pub url: String,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The default model: Qwen2.5-1.5B-Instruct, Q4_K_M (1.1 GB, Apache-2.0), multilingual
/// (Russian included) and small enough for a CPU. Pinned to revision `91cad51` of the official
/// `Qwen/Qwen2.5-1.5B-Instruct-GGUF` repository.
#[must_use]
pub fn default_model() -> ModelSpec {
    ModelSpec {
        name: "qwen2.5-1.5b-instruct-q4_k_m".to_owned(),
        file_name: "qwen2.5-1.5b-instruct-q4_k_m.gguf".to_owned(),
        url: "https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/\
              91cad51170dc346986eccefdc2dd33a9da36ead9/qwen2.5-1.5b-instruct-q4_k_m.gguf"
            .to_owned(),
        sha256: "6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e".to_owned(),
        size: 1_117_320_736,
    }
}

/// A GGUF file found in the models directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModel {
    /// File name.
    pub file_name: String,
    /// Full path.
    pub path: PathBuf,
    /// Bytes on disk.
    pub size: u64,
    /// `true` for an unfinished download (`*.gguf.part`).
    pub partial: bool,
}

/// Why a download failed. Messages name the file and say how to get the model by hand.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server could not be reached or the transfer broke off (the `.part` file is kept,
    /// so the next attempt resumes).
    #[error(
        "cannot download {url}: {detail}.\n\
         Without network access, fetch the file elsewhere and copy it to {path} \
         (SHA-256 {sha256}), or set LLM_GGUF_PATH to any GGUF chat model you have \
         (or use an LLM server: LLM_BASE_URL); see docs/llm.md"
    )]
    Network {
        /// What was requested.
        url: String,
        /// Where the file belongs.
        path: PathBuf,
        /// Expected checksum, to verify a manual copy.
        sha256: String,
        /// What went wrong.
        detail: String,
    },
    /// The finished file has the wrong checksum; it was deleted.
    #[error(
        "the download of {path} is corrupt: SHA-256 {actual}, expected {expected}; \
         the partial file was deleted, run `butler-bot models pull` again"
    )]
    Checksum {
        /// Where the file was going.
        path: PathBuf,
        /// What it should be.
        expected: String,
        /// What it was.
        actual: String,
    },
    /// A local file operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The models directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    /// A store in `dir` (created on the first download).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `spec` lives once downloaded.
    #[must_use]
    pub fn path_of(&self, spec: &ModelSpec) -> PathBuf {
        self.dir.join(&spec.file_name)
    }

    fn part_path(&self, spec: &ModelSpec) -> PathBuf {
        self.dir.join(format!("{}.part", spec.file_name))
    }

    /// GGUF files (and unfinished downloads) in the directory, by name. A missing directory
    /// has none.
    ///
    /// # Errors
    /// If the directory exists but cannot be read.
    pub fn list(&self) -> Result<Vec<LocalModel>, DownloadError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(DownloadError::Io {
                    operation: "cannot read the models directory",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut models: Vec<LocalModel> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let file_name = entry.file_name().to_string_lossy().into_owned();
                let partial = file_name.ends_with(".gguf.part");
                if !(partial || file_name.ends_with(".gguf")) {
                    return None;
                }
                let size = entry.metadata().ok().filter(|m| m.is_file())?.len();
                Some(LocalModel {
                    path: entry.path(),
                    file_name,
                    size,
                    partial,
                })
            })
            .collect();
        models.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        Ok(models)
    }

    /// Downloads `spec` unless a verified copy is already there, resuming an unfinished
    /// download, showing a progress bar on a terminal (stderr). Returns the file's path.
    ///
    /// # Errors
    /// [`DownloadError::Network`] (with how to get the file by hand), [`DownloadError::Checksum`]
    /// or [`DownloadError::Io`].
    pub async fn pull(&self, spec: &ModelSpec) -> Result<PathBuf, DownloadError> {
        let target = self.path_of(spec);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            let actual = sha256_of(&target).await?;
            if actual == spec.sha256 {
                return Ok(target);
            }
            tracing::warn!(path = %target.display(), "the model on disk has the wrong checksum; downloading it again");
            remove(&target).await?;
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|source| DownloadError::Io {
                operation: "cannot create the models directory",
                path: self.dir.clone(),
                source,
            })?;
        let part = self.part_path(spec);
        self.download(spec, &part).await?;
        let actual = sha256_of(&part).await?;
        if actual != spec.sha256 {
            remove(&part).await?;
            return Err(DownloadError::Checksum {
                path: target,
                expected: spec.sha256.clone(),
                actual,
            });
        }
        tokio::fs::rename(&part, &target)
            .await
            .map_err(|source| DownloadError::Io {
                operation: "cannot move the finished download to",
                path: target.clone(),
                source,
            })?;
        Ok(target)
    }

    /// Fetches the rest of the file into `part`, resuming from its current length.
    async fn download(&self, spec: &ModelSpec, part: &Path) -> Result<(), DownloadError> {
        let network = |detail: String| DownloadError::Network {
            url: spec.url.clone(),
            path: self.path_of(spec),
            sha256: spec.sha256.clone(),
            detail,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| network(e.to_string()))?;
        let have = tokio::fs::metadata(part).await.map_or(0, |m| m.len());
        if have >= spec.size && spec.size > 0 {
            return Ok(()); // Complete already; the checksum decides.
        }
        let mut request = client.get(&spec.url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = request.send().await.map_err(|e| network(describe(&e)))?;
        let resumed = match response.status() {
            StatusCode::PARTIAL_CONTENT
                if response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with(&format!("bytes {have}-"))) =>
            {
                true
            }
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => false,
            status => return Err(network(format!("the server answered HTTP {status}"))),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(part)
            .await
            .map_err(|source| DownloadError::Io {
                operation: "cannot open",
                path: part.to_path_buf(),
                source,
            })?;
        let start = if resumed { have } else { 0 };
        let total = response.content_length().map_or(spec.size, |n| n + start);
        let bar = progress_bar(total, &spec.file_name);
        bar.set_position(start);
        if resumed {
            tracing::info!(from = have, file = %spec.file_name, "resuming the model download");
        }
        while let Some(chunk) = response.chunk().await.map_err(|e| network(describe(&e)))? {
            file.write_all(&chunk)
                .await
                .map_err(|source| DownloadError::Io {
                    operation: "cannot write",
                    path: part.to_path_buf(),
                    source,
                })?;
            bar.inc(chunk.len() as u64);
        }
        file.flush().await.map_err(|source| DownloadError::Io {
            operation: "cannot write",
            path: part.to_path_buf(),
            source,
        })?;
        bar.finish_and_clear();
        Ok(())
    }
}

fn progress_bar(total: u64, file_name: &str) -> ProgressBar {
    // indicatif draws to stderr only when it is a terminal; in logs and tests it stays silent.
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("downloading {file_name}"));
    bar
}

/// A reqwest error without the URL: just what went wrong.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "the connection timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect (no network, or the host is blocked)".to_owned()
    } else {
        error.to_string()
    }
}

async fn remove(path: &Path) -> Result<(), DownloadError> {
    tokio::fs::remove_file(path)
        .await
        .map_err(|source| DownloadError::Io {
            operation: "cannot delete",
            path: path.to_path_buf(),
            source,
        })
}

/// Lower-case hex SHA-256 of a file, computed on a blocking thread.
///
/// # Errors
/// [`DownloadError::Io`] if the file cannot be read.
pub async fn sha256_of(path: &Path) -> Result<String, DownloadError> {
    let owned = path.to_path_buf();
    let io = |source| DownloadError::Io {
        operation: "cannot read",
        path: path.to_path_buf(),
        source,
    };
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut file = std::fs::File::open(&owned)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0_u8; 1 << 20];
        loop {
            let read = std::io::Read::read(&mut file, &mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    })
    .await
    .map_err(|e| io(std::io::Error::other(e.to_string())))?
    .map_err(io)
}
