//! `--device cpu|gpu` for check, run and bench: which MLX device the
//! programs use. The default is the GPU when one is usable, else the CPU.
//! Asking for the GPU where there is none is an error (exit code 2).

use crate::util;
use anyhow::{bail, Context, Result};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }
}

/// `cargo run -p tiny-llm-common --example gpu_probe`: prints `cuda`,
/// `metal` or `none`.
pub fn probe_command() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(util::project_root()).args([
        "run",
        "--quiet",
        "-p",
        "tiny-llm-common",
        "--example",
        "gpu_probe",
    ]);
    c
}

/// What MLX reports here: `cuda`, `metal` or `none`. Uses a prebuilt probe
/// (`target/*/examples/gpu_probe`) when there is one, else builds it.
pub fn probe() -> Result<String> {
    let target = util::target_dir();
    for profile in ["release", "debug"] {
        let exe = target.join(profile).join("examples").join("gpu_probe");
        if exe.exists() {
            let out = Command::new(&exe).output().context("running gpu_probe")?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            // a probe that cannot start (for example no libcuda) means no GPU
            return Ok("none".into());
        }
    }
    let out = probe_command()
        .output()
        .context("building and running gpu_probe")?;
    if !out.status.success() {
        return Ok("none".into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Resolves the requested device (None = automatic).
pub fn resolve(requested: Option<Device>) -> Result<Device> {
    if requested == Some(Device::Cpu) {
        return Ok(Device::Cpu);
    }
    let found = probe()?;
    match (requested, found.as_str()) {
        (_, "cuda" | "metal") => Ok(Device::Gpu),
        (Some(Device::Gpu), _) => bail!(NoGpu),
        _ => Ok(Device::Cpu),
    }
}

/// The error for `--device gpu` on a machine without a usable GPU; `main`
/// turns it into exit code 2.
#[derive(Debug)]
pub struct NoGpu;

impl std::fmt::Display for NoGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no GPU is available: MLX here has no usable GPU backend (CPU-only MLX, or no NVIDIA device/driver). \
             On Linux with an NVIDIA GPU run `cargo xtask setup --backend cuda`; on a Mac the GPU is used by default. \
             Use `--device cpu` to run on the CPU."
        )
    }
}

impl std::error::Error for NoGpu {}
