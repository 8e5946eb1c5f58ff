//! `--backend cuda`: the `mlx-cuda-13` wheel, the NVIDIA runtime libraries,
//! and a probe that the GPU is usable before switching to it.

use super::*;

/// Downloads (sha256 pinned) and unpacks the `mlx-cuda-13` wheel, and puts
/// the NVIDIA runtime libraries beside it.
pub(super) fn ensure_cuda(l: &Layout, nvidia_libs: Option<&Path>) -> Result<bool> {
    let nvidia_src = match nvidia_libs {
        Some(dir) => {
            // CUDA 13 wheels put cublas/cufft/nvrtc/cudart under cu13/; older ones
            // have a folder each
            if !(dir.join("cu13").is_dir() || dir.join("cublas").is_dir()) {
                bail!(
                    "{} has neither cu13/ nor cublas/: expected an `nvidia` package folder (site-packages/nvidia)",
                    dir.display()
                );
            }
            format!("dir:{}", dir.canonicalize()?.display())
        }
        None => format!("wheels:{}", NVIDIA_WHEELS.join(",")),
    };
    let want = format!("{CUDA_WHEEL_SHA256} {nvidia_src}");
    let libmlx = l.cuda_libmlx_dir().join("libmlx.so");
    if libmlx.exists() && read_stamp(&l.stamp("cuda")).as_deref() == Some(want.as_str()) {
        return Ok(false);
    }
    ensure_wheel(l, &CUDA_WHEEL)?;
    let wheel = l.p("wheels").join(CUDA_WHEEL_FILE);
    let step = Step::start("unpack the CUDA wheel and lay out the NVIDIA libraries");
    let dist = l.cuda_dist();
    if dist.exists() {
        std::fs::remove_dir_all(&dist)?;
    }
    run_logged(
        Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&dist),
        &l.log("unpack-cuda"),
    )?;
    match nvidia_libs {
        Some(dir) => std::os::unix::fs::symlink(dir.canonicalize()?, dist.join("nvidia"))?,
        None => {
            let wheels = l.p("wheels").join("nvidia");
            std::fs::create_dir_all(&wheels)?;
            let mut pip = Command::new("python3");
            pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                .args([
                    "--platform",
                    "manylinux_2_28_x86_64",
                    "--platform",
                    "manylinux_2_27_x86_64",
                    // nvidia-nccl-cu13 2.28.3 ships only a manylinux_2_18 wheel
                    "--platform",
                    "manylinux_2_18_x86_64",
                    "--platform",
                    "manylinux_2_17_x86_64",
                ])
                .args([
                    "--platform",
                    "manylinux2014_x86_64",
                    "--python-version",
                    "3.11",
                ])
                .args(NVIDIA_WHEELS)
                .arg("-d")
                .arg(&wheels);
            run_logged(&mut pip, &l.log("pip-download-nvidia"))?;
            for entry in std::fs::read_dir(&wheels)? {
                let whl = entry?.path();
                if whl.extension().is_some_and(|e| e == "whl") {
                    run_logged(
                        Command::new("python3")
                            .args(["-m", "zipfile", "-e"])
                            .arg(&whl)
                            .arg(&dist),
                        &l.log("unpack-nvidia"),
                    )?;
                }
            }
        }
    }
    write_stamp(&l.stamp("cuda"), &want)?;
    step.done();
    Ok(true)
}

/// Runs the GPU probe example: fails with a clear message unless MLX's CUDA
/// backend reports a usable device (it exits the process rather than erroring
/// when asked for a GPU it lacks, so the probe only asks `mlx_cuda_is_available`).
pub(super) fn probe_cuda(l: &Layout) -> Result<()> {
    let step = Step::start("check the CUDA backend (mlx_cuda_is_available)");
    // LD_LIBRARY_PATH wins over the binary's RUNPATH (the CPU wheel)
    let out = crate::device::probe_command()
        .env("LD_LIBRARY_PATH", l.cuda_libmlx_dir())
        .output()
        .context("running the GPU probe")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.trim() == "cuda" {
        step.done();
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = if stderr.contains("libcuda.so") {
        "the NVIDIA driver (libcuda.so.1) is not installed".to_string()
    } else if out.status.success() {
        format!(
            "MLX reports no usable CUDA device (probe said `{}`)",
            stdout.trim()
        )
    } else {
        format!(
            "the probe failed: {}",
            stderr.lines().last().unwrap_or("no output")
        )
    };
    bail!("no usable NVIDIA GPU: {why}")
}
