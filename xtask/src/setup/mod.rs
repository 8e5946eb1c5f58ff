//! `cargo xtask setup`: makes mlx-rs build and run on Linux x86_64.
//!
//! mlx-sys (links = "mlx") cannot build there as published, so this step
//! provisions, under `target/mlx/`, everything its build script would have
//! made, and tells Cargo through a build-script override
//! (`target/mlx/override.toml`, included by `.cargo/config.toml`):
//!
//! 1. Debian packages: cmake, libclang 14 (for bindgen), OpenBLAS.
//! 2. The `mlx-cpu==0.32.2` wheel from PyPI (sha256 pinned), unpacked with its
//!    layout, so `libmlx.so` finds its BLAS through its own rpath. By default
//!    its reference BLAS is replaced by Debian's OpenBLAS (`--blas reference`
//!    keeps it).
//! 3. mlx-c, copied out of the mlx-sys crate's source, built as `libmlxc.a`
//!    against the wheel, with a force-included compat header (`assets/`).
//! 4. `bindings.rs` from the `mlx-bindgen` helper.
//! 5. A static shim for `mach_approximate_time` (used by mlx-rs's random).
//! 6. The override file, with absolute paths and a hash of the native files
//!    so Cargo relinks mlx-sys when they change.
//!
//! Every step is stamped with a hash of its inputs; a second run only checks.
//! On macOS nothing is done: mlx-sys builds there as published.

use crate::util::{self, read_stamp, run_logged, sha256_bytes, sha256_file, write_stamp, Step};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

mod bindgen;
mod cuda;
mod debian;
mod layout;
mod mlxc;
mod override_file;
mod wheels;

use bindgen::*;
use cuda::*;
use debian::*;
pub use layout::Layout;
use mlxc::*;
use override_file::*;
use wheels::*;

/// MLX release that mlx-c 0.7.0 (inside mlx-sys 0.7.0) pins; every wheel
/// pin below must carry it (a test checks).
#[cfg(test)]
const MLX_VERSION: &str = "0.32.2";
const MLX_SYS_VERSION: &str = "0.7.0";
const WHEEL_FILE: &str = "mlx_cpu-0.32.2-py3-none-manylinux_2_35_x86_64.whl";
const WHEEL_SHA256: &str = "fc5d31b90fc4f457b2f9614ed45651a567d22a6a11a03d114a90a4e10bdd8878";
const CUDA_WHEEL_FILE: &str = "mlx_cuda_13-0.32.2-py3-none-manylinux_2_35_x86_64.whl";
const CUDA_WHEEL_SHA256: &str = "335094ccd1c0c6dc3e09c8caba207c8180602bacc0c38ba20c1d81e9456ab394";
/// The NVIDIA CUDA 13.0 runtime wheels libmlx.so (CUDA) needs, pinned to the
/// CUDA 13.0 line so a 580-series driver runs them.
const NVIDIA_WHEELS: &[&str] = &[
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-nvrtc==13.0.88",
    "nvidia-cublas==13.0.2.14",
    "nvidia-cufft==12.0.0.61",
    "nvidia-cudnn-cu13==9.13.1.26",
    "nvidia-nccl-cu13==2.28.3",
];
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
const LIBCLANG_DIR: &str = "/usr/lib/llvm-14/lib";
const OPENBLAS: &str = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";
const COMPAT_HEADER: &str = include_str!("../../assets/mlxc_linux_compat.h");
const SHIM_SOURCE: &str = include_str!("../../assets/mach_time_shim.c");

/// Which BLAS the wheel's `libmlx.so` uses for f32 matmuls on the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Blas {
    /// Debian's OpenBLAS (pthreads), swapped into the private wheel copy.
    #[default]
    Openblas,
    /// The netlib reference BLAS the wheel ships (slow; for comparisons).
    Reference,
}

/// Which libmlx.so programs load at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// `mlx-cpu`: MLX's CPU backend only.
    Cpu,
    /// `mlx-cuda-13`: MLX's CUDA backend (NVIDIA GPU, CUDA 13 driver), CPU too.
    Cuda,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SetupArgs {
    /// BLAS behind MLX's CPU matmuls.
    #[arg(long, value_enum, default_value_t = Blas::Openblas)]
    pub blas: Blas,
    /// MLX backend; the choice is remembered (default: the last one, else cpu).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// With `--backend cuda`: an existing `nvidia` package folder (for example
    /// a PyTorch venv's `site-packages/nvidia`) to use instead of downloading
    /// the NVIDIA CUDA 13 runtime wheels.
    #[arg(long, value_name = "DIR")]
    pub nvidia_libs: Option<PathBuf>,
}

/// Runs setup; quick when everything is in place.
pub fn run(args: &SetupArgs) -> Result<()> {
    if cfg!(target_os = "macos") {
        return Ok(());
    }
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        bail!(
            "tiny-llm-rs supports macOS (Apple Silicon) and Linux x86_64; this is {} {}",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    }
    let l = Layout::new();
    for d in ["stamps", "logs", "wheels", "compat"] {
        std::fs::create_dir_all(l.p(d))?;
    }
    let started = std::time::Instant::now();
    let mut did_work = false;
    did_work |= ensure_debian_packages()?;
    did_work |= ensure_wheel(&l, &CPU_WHEEL)?;
    did_work |= ensure_unpacked(&l, args.blas)?;
    write_if_changed(&l.compat_header(), COMPAT_HEADER)?;
    did_work |= ensure_mlxc(&l)?;
    did_work |= ensure_shim(&l)?;
    did_work |= ensure_bindings(&l)?;
    let backend = args.backend.unwrap_or_else(|| l.backend());
    if backend == Backend::Cuda {
        did_work |= ensure_cuda(&l, args.nvidia_libs.as_deref())?;
    }
    if backend == Backend::Cuda && l.backend() != Backend::Cuda {
        // probe with the CPU build's binaries pointed at the CUDA libmlx.so
        // before switching, so a machine without a GPU keeps its CPU build
        write_override(&l, Backend::Cpu)?;
        probe_cuda(&l)
            .context("the CUDA backend is not usable here; MLX stays on the CPU backend")?;
    }
    did_work |= write_override(&l, backend)?;
    write_stamp(
        &l.backend_file(),
        if backend == Backend::Cuda {
            "cuda"
        } else {
            "cpu"
        },
    )?;
    if did_work {
        eprintln!(
            "MLX for Linux ready under {} ({:.0} s). Plain `cargo build` and `cargo test` now use it.",
            l.root.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn write_if_changed(path: &Path, content: &str) -> Result<bool> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_header_defines_both_half_types() {
        assert!(COMPAT_HEADER.contains("typedef __fp16 float16_t;"));
        assert!(COMPAT_HEADER.contains("typedef uint16_t bfloat16_t;"));
    }

    #[test]
    fn wheel_pins_match_mlx_c_and_are_sha256() {
        for w in [CPU_WHEEL, CUDA_WHEEL] {
            assert_eq!(w.sha256.len(), 64);
            assert!(w.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(w.file.contains(MLX_VERSION) && w.requirement.ends_with(MLX_VERSION));
        }
    }
}
