//! The kit's Python tools venv (`target/venv`): pinned mlx, mlx-lm, numpy and
//! gguf from `fixtures/requirements.txt`. Python makes fixtures, converts
//! offline models and runs the mlx-lm baseline; the learner's code never
//! uses it.

use crate::util::{self, read_stamp, run_logged, sha256_bytes, write_stamp, Step};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// `target/venv`.
pub fn venv_dir() -> PathBuf {
    util::target_dir().join("venv")
}

/// Creates or refreshes the venv when `fixtures/requirements.txt` changed;
/// returns its `python`.
pub fn ensure() -> Result<PathBuf> {
    let root = util::project_root();
    let req_path = root.join("fixtures").join("requirements.txt");
    let req =
        std::fs::read(&req_path).with_context(|| format!("reading {}", req_path.display()))?;
    let want = sha256_bytes(&req);
    let dir = venv_dir();
    let python = dir.join("bin").join("python");
    let stamp = util::target_dir().join("venv.stamp");
    if python.exists() && read_stamp(&stamp).as_deref() == Some(want.as_str()) {
        return Ok(python);
    }
    let step = Step::start("python venv with pinned mlx / mlx-lm / numpy / gguf (target/venv)");
    let logs = util::target_dir().join("mlx").join("logs");
    if !python.exists() {
        run_logged(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            &logs.join("venv.log"),
        )
        .context("python3 -m venv failed (Debian: apt-get install python3-venv)")?;
    }
    run_logged(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&req_path),
        &logs.join("venv-pip.log"),
    )?;
    write_stamp(&stamp, &want)?;
    step.done();
    Ok(python)
}
