//! The cheap checks made before a file is handed to llama.cpp: it exists, is a regular file and
//! starts with the GGUF magic. A wrong path or a half-downloaded HTML error page then fails with
//! a message naming the file instead of somewhere inside C++.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The first four bytes of every GGUF file.
pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// Why a model file cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// Nothing at the path.
    #[error(
        "no model file at {path}: set LLM_GGUF_PATH to a GGUF file, or run `butler-bot models pull`"
    )]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The path exists but cannot be read (a directory, permissions, I/O error).
    #[error("cannot read the model file {path}: {reason}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file does not start with the GGUF magic (truncated, an HTML page, another format).
    #[error(
        "{path} is not a GGUF model (it does not start with the GGUF magic); \
         download it again with `butler-bot models pull` or point LLM_GGUF_PATH at a .gguf file"
    )]
    NotGguf {
        /// The path.
        path: PathBuf,
    },
    /// llama.cpp rejected the file (corrupt or truncated tensors, unsupported architecture).
    #[error("llama.cpp cannot load the model {path}: {reason} (corrupt, truncated or unsupported; download it again)")]
    Load {
        /// The path.
        path: PathBuf,
        /// What llama.cpp reported.
        reason: String,
    },
    /// llama.cpp itself could not be initialised.
    #[error("cannot initialise llama.cpp: {0}")]
    Backend(String),
}

/// Checks that `path` is a readable file starting with [`GGUF_MAGIC`].
///
/// # Errors
/// [`ModelFileError::Missing`], [`ModelFileError::Unreadable`] or [`ModelFileError::NotGguf`].
pub fn check_gguf(path: &Path) -> Result<(), ModelFileError> {
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelFileError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => {
            return Err(ModelFileError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    if !metadata.is_file() {
        return Err(ModelFileError::Unreadable {
            path: path.to_path_buf(),
            reason: "not a regular file".to_owned(),
        });
    }
    let mut magic = [0_u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) if &magic == GGUF_MAGIC => Ok(()),
        Ok(()) => Err(ModelFileError::NotGguf {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ModelFileError::NotGguf {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(ModelFileError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_with_how_to_get_one() {
        let path = Path::new("/nonexistent/model.gguf");
        let err = check_gguf(path).unwrap_err();
        assert!(matches!(err, ModelFileError::Missing { .. }));
        let text = err.to_string();
        assert!(text.contains("/nonexistent/model.gguf"), "{text}");
        assert!(text.contains("LLM_GGUF_PATH"), "{text}");
    }

    #[test]
    fn a_file_without_the_magic_is_not_gguf_and_a_directory_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let html = dir.path().join("model.gguf");
        std::fs::write(&html, b"<html>rate limited</html>").unwrap();
        assert!(matches!(
            check_gguf(&html),
            Err(ModelFileError::NotGguf { .. })
        ));
        let short = dir.path().join("short.gguf");
        std::fs::write(&short, b"GG").unwrap();
        assert!(matches!(
            check_gguf(&short),
            Err(ModelFileError::NotGguf { .. })
        ));
        assert!(matches!(
            check_gguf(dir.path()),
            Err(ModelFileError::Unreadable { .. })
        ));
        let good = dir.path().join("good.gguf");
        std::fs::write(&good, b"GGUF\x03\0\0\0").unwrap();
        check_gguf(&good).unwrap();
    }
}
