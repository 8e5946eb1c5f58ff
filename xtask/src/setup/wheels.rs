//! Step 2: the pinned MLX wheel from PyPI, downloaded (sha256 checked, never
//! installed or run) and unpacked with its layout, with the chosen BLAS.

use super::*;

/// A wheel pinned by version and sha256.
pub(super) struct PinnedWheel {
    /// `name==version` for pip.
    pub(super) requirement: &'static str,
    pub(super) file: &'static str,
    pub(super) sha256: &'static str,
    pub(super) label: &'static str,
}

pub(super) const CPU_WHEEL: PinnedWheel = PinnedWheel {
    requirement: "mlx-cpu==0.32.2",
    file: WHEEL_FILE,
    sha256: WHEEL_SHA256,
    label: "mlx-cpu wheel (PyPI, 10 MB)",
};

pub(super) const CUDA_WHEEL: PinnedWheel = PinnedWheel {
    requirement: "mlx-cuda-13==0.32.2",
    file: CUDA_WHEEL_FILE,
    sha256: CUDA_WHEEL_SHA256,
    label: "mlx-cuda-13 wheel (PyPI, 87 MB)",
};

/// Downloads a pinned wheel into `target/mlx/wheels` (never installs or runs
/// it) unless it is there with the right sha256; a mismatch removes the file.
pub(super) fn ensure_wheel(l: &Layout, w: &PinnedWheel) -> Result<bool> {
    let wheel = l.p("wheels").join(w.file);
    if wheel.exists() && sha256_file(&wheel)? == w.sha256 {
        return Ok(false);
    }
    let step = Step::start(format!("download the {}", w.label));
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--platform",
            "manylinux_2_35_x86_64",
            "--python-version",
            "3.11",
        ])
        .arg(w.requirement)
        .arg("-d")
        .arg(l.p("wheels"));
    run_logged(&mut pip, &l.log("pip-download"))?;
    let got = sha256_file(&wheel)?;
    if got != w.sha256 {
        std::fs::remove_file(&wheel).ok();
        bail!(
            "{}: sha256 {got}, expected {}; the file was removed",
            w.file,
            w.sha256
        );
    }
    step.done();
    Ok(true)
}

/// Unpacks the wheel keeping its layout, and puts the chosen BLAS in place.
pub(super) fn ensure_unpacked(l: &Layout, blas: Blas) -> Result<bool> {
    let stamp_path = l.stamp("unpack");
    let want = format!("{WHEEL_SHA256} {blas:?}");
    let libmlx = l.libmlx_dir().join("libmlx.so");
    if libmlx.exists() && read_stamp(&stamp_path).as_deref() == Some(want.as_str()) {
        return Ok(false);
    }
    let step = Step::start(format!("unpack the wheel ({blas:?} BLAS)"));
    let dist = l.dist();
    if dist.exists() {
        std::fs::remove_dir_all(&dist)?;
    }
    let mut unzip = Command::new("python3");
    unzip
        .args(["-m", "zipfile", "-e"])
        .arg(l.wheel())
        .arg(&dist);
    run_logged(&mut unzip, &l.log("unpack"))?;
    if !libmlx.exists() {
        bail!("the wheel has no mlx/lib/libmlx.so");
    }
    if blas == Blas::Openblas {
        if !Path::new(OPENBLAS).exists() {
            bail!("{OPENBLAS} is missing (Debian package libopenblas0-pthread)");
        }
        // libmlx.so finds BLAS through its own rpath ($ORIGIN/../../mlx_cpu.libs),
        // which wins over LD_LIBRARY_PATH: swap the file in the private copy.
        let libs = dist.join("mlx_cpu.libs");
        let mut swapped = 0;
        for entry in std::fs::read_dir(&libs)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name.starts_with("libblas-") {
                std::fs::remove_file(&path)?;
                std::os::unix::fs::symlink(OPENBLAS, &path)?;
                swapped += 1;
            }
        }
        if swapped != 1 {
            bail!(
                "expected one libblas-*.so in {}, found {swapped}",
                libs.display()
            );
        }
    }
    write_stamp(&stamp_path, &want)?;
    step.done();
    Ok(true)
}
