//! `--device cpu|gpu` for check, run and bench: which MLX device the
//! programs use. The default is the GPU when one is usable, else the CPU.
//! Asking for the GPU where there is none is an error (exit code 2).

use crate::util;
use anyhow::{Context, Result};
use std::process::Command;

use clap::builder::TypedValueParser;

pub use tiny_llm_course::Device;

/// clap's parser for `--device cpu|gpu` (the names come from
/// `tiny-llm-course`, which has no clap).
pub fn arg_parser() -> impl clap::builder::TypedValueParser<Value = Device> {
    clap::builder::PossibleValuesParser::new(Device::NAMES)
        .map(|s| s.parse::<Device>().expect("one of Device::NAMES"))
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

/// Resolves the requested device (None = automatic): probes MLX unless the
/// CPU was asked for; `--device gpu` without a GPU is [`NoGpu`].
pub fn resolve(requested: Option<Device>) -> Result<Device> {
    if requested == Some(Device::Cpu) {
        return Ok(Device::Cpu);
    }
    let found = probe()?;
    Ok(Device::choose(
        requested,
        matches!(found.as_str(), "cuda" | "metal"),
    )?)
}
