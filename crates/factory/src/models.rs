//! `butler-bot models pull` / `models list`: the GGUF files of the embedded engine.

use std::path::PathBuf;

use butler_infrastructure::llm::models::{default_model, DownloadError, ModelStore};

use crate::settings::Settings;

/// Downloads the default model into `LLM_MODELS_DIR` (resuming, verifying its SHA-256) unless
/// a verified copy is there; returns its path.
///
/// # Errors
/// [`DownloadError`], whose message says how to get the file without network.
pub async fn pull(settings: &Settings) -> Result<PathBuf, DownloadError> {
    ModelStore::new(&settings.llm.models_dir)
        .pull(&default_model())
        .await
}

/// A human-readable listing: the models directory, the default model's state and the model
/// in use.
///
/// # Errors
/// If the models directory exists but cannot be read.
pub fn list(settings: &Settings) -> Result<Vec<String>, DownloadError> {
    let store = ModelStore::new(&settings.llm.models_dir);
    let spec = default_model();
    let mut lines = vec![format!("models in {}:", store.dir().display())];
    let local = store.list()?;
    if local.is_empty() {
        lines.push("  (none)".to_owned());
    }
    for model in &local {
        let mut notes = Vec::new();
        if model.partial {
            notes.push("unfinished download; `models pull` resumes it");
        }
        if model.file_name == spec.file_name {
            notes.push("default model");
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join(", "))
        };
        lines.push(format!(
            "  {:<44} {:>8.1} MB{notes}",
            model.file_name,
            megabytes(model.size)
        ));
    }
    let default_path = store.path_of(&spec);
    lines.push(format!(
        "default model: {} ({:.0} MB, SHA-256 {}) from {}{}",
        spec.name,
        megabytes(spec.size),
        spec.sha256,
        spec.url,
        if default_path.is_file() {
            ""
        } else {
            " — not downloaded; `butler-bot models pull` fetches it"
        }
    ));
    let in_use = settings
        .llm
        .gguf_path
        .clone()
        .unwrap_or_else(|| default_path.clone());
    lines.push(format!(
        "in use ({}): {}",
        settings.llm.backend.as_str(),
        match settings.llm.backend {
            crate::settings::LlmBackend::Embedded => in_use.display().to_string(),
            crate::settings::LlmBackend::Http => settings.llm.base_urls.join(","),
        }
    ));
    Ok(lines)
}

#[allow(clippy::cast_precision_loss)] // Megabytes for people: a rounded figure is the point.
fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}
