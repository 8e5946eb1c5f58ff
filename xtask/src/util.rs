//! Small helpers shared by the subcommands: the project root, hashing, running
//! external commands with their output kept in a log, and progress display.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `target/` of the workspace.
pub fn target_dir() -> PathBuf {
    project_root().join("target")
}

/// Lower-case hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `cmd`, sending its stdout and stderr to `log`. On failure the error
/// names the command and shows the last lines of the log.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let status = cmd
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{cmd:?} failed ({status}); last lines of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// Runs `cmd` with inherited output; fails with the command line on a
/// non-zero exit.
pub fn run_inherit(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// A progress line for one long step: a spinner with elapsed time while it
/// runs (on a terminal), then `done (12.3 s)` or the error.
pub struct Step {
    bar: indicatif::ProgressBar,
    label: String,
    started: Instant,
}

impl Step {
    pub fn start(label: impl Into<String>) -> Step {
        let label = label.into();
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                .expect("valid template"),
        );
        bar.set_message(label.clone());
        if bar.is_hidden() {
            eprintln!("  .. {label}");
        } else {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Step {
            bar,
            label,
            started: Instant::now(),
        }
    }

    pub fn done(self) {
        let secs = self.started.elapsed().as_secs_f64();
        self.bar.finish_and_clear();
        eprintln!("  ok {} ({secs:.1} s)", self.label);
    }
}

/// Reads a stamp file (the hash of a step's inputs); `None` when missing.
pub fn read_stamp(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn write_stamp(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, format!("{value}\n"))
        .with_context(|| format!("writing {}", path.display()))
}
