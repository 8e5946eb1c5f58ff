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
const COMPAT_HEADER: &str = include_str!("../assets/mlxc_linux_compat.h");
const SHIM_SOURCE: &str = include_str!("../assets/mach_time_shim.c");

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

/// Paths of the provisioned files.
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new() -> Layout {
        Layout {
            root: util::target_dir().join("mlx"),
        }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    pub fn wheel(&self) -> PathBuf {
        self.p("wheels").join(WHEEL_FILE)
    }
    /// The unpacked wheel: `mlx/lib/libmlx.so`, `mlx_cpu.libs/`.
    pub fn dist(&self) -> PathBuf {
        self.p("dist")
    }
    pub fn libmlx_dir(&self) -> PathBuf {
        self.dist().join("mlx").join("lib")
    }
    fn mlxc_src(&self) -> PathBuf {
        self.p("mlx-c-src")
    }
    fn mlxc_build(&self) -> PathBuf {
        self.p("mlx-c-build")
    }
    fn mlxc_prefix(&self) -> PathBuf {
        self.p("mlx-c")
    }
    fn mlxc_lib(&self) -> PathBuf {
        self.mlxc_prefix().join("lib")
    }
    fn compat_header(&self) -> PathBuf {
        self.p("compat/mlxc_linux_compat.h")
    }
    fn sys_out(&self) -> PathBuf {
        self.p("sys-out")
    }
    pub fn override_file(&self) -> PathBuf {
        self.p("override.toml")
    }
    /// The unpacked CUDA wheel: `mlx/lib/libmlx.so`, `mlx_cuda_13.libs/`,
    /// and `nvidia/` (CUDA runtime libraries) beside them, where libmlx.so's
    /// rpath looks.
    pub fn cuda_dist(&self) -> PathBuf {
        self.p("cuda-dist")
    }
    pub fn cuda_libmlx_dir(&self) -> PathBuf {
        self.cuda_dist().join("mlx").join("lib")
    }
    fn backend_file(&self) -> PathBuf {
        self.p("backend")
    }
    /// The backend chosen last (`cpu` when none was).
    pub fn backend(&self) -> Backend {
        match read_stamp(&self.backend_file()).as_deref() {
            Some("cuda") => Backend::Cuda,
            _ => Backend::Cpu,
        }
    }
    fn stamp(&self, name: &str) -> PathBuf {
        self.p("stamps").join(name)
    }
    fn log(&self, name: &str) -> PathBuf {
        self.p("logs").join(format!("{name}.log"))
    }
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

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the Debian packages the build needs when any is missing.
fn ensure_debian_packages() -> Result<bool> {
    let wanted = [
        "cmake",
        "g++",
        "libclang1-14",
        "libclang-common-14-dev",
        "libopenblas0-pthread",
        "python3-venv",
    ];
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !dpkg_installed(p)).collect();
    // python3-venv is only needed where python3 lacks a working venv module.
    let missing: Vec<&str> = missing
        .into_iter()
        .filter(|p| *p != "python3-venv" || !python_has_venv())
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let step = Step::start(format!("apt-get install {}", missing.join(" ")));
    let log = Layout::new().log("apt");
    run_logged(privileged(&["apt-get", "update", "-qq"]).as_mut(), &log).context(
        "apt-get update failed; install these Debian packages by hand: cmake g++ libclang1-14 libclang-common-14-dev libopenblas0-pthread",
    )?;
    let mut install = privileged(&["apt-get", "install", "-y", "-qq", "--no-install-recommends"]);
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(&missing);
    run_logged(&mut install, &Layout::new().log("apt-install"))?;
    step.done();
    Ok(true)
}

/// `args` as root: directly when we are root, else through sudo.
fn privileged(args: &[&str]) -> Box<Command> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if is_root {
        Command::new(args[0])
    } else {
        let mut c = Command::new("sudo");
        c.arg(args[0]);
        c
    };
    cmd.args(&args[1..]);
    Box::new(cmd)
}

fn python_has_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A wheel pinned by version and sha256.
struct PinnedWheel {
    /// `name==version` for pip.
    requirement: &'static str,
    file: &'static str,
    sha256: &'static str,
    label: &'static str,
}

const CPU_WHEEL: PinnedWheel = PinnedWheel {
    requirement: "mlx-cpu==0.32.2",
    file: WHEEL_FILE,
    sha256: WHEEL_SHA256,
    label: "mlx-cpu wheel (PyPI, 10 MB)",
};

const CUDA_WHEEL: PinnedWheel = PinnedWheel {
    requirement: "mlx-cuda-13==0.32.2",
    file: CUDA_WHEEL_FILE,
    sha256: CUDA_WHEEL_SHA256,
    label: "mlx-cuda-13 wheel (PyPI, 87 MB)",
};

/// Downloads a pinned wheel into `target/mlx/wheels` (never installs or runs
/// it) unless it is there with the right sha256; a mismatch removes the file.
fn ensure_wheel(l: &Layout, w: &PinnedWheel) -> Result<bool> {
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
fn ensure_unpacked(l: &Layout, blas: Blas) -> Result<bool> {
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

/// Finds mlx-sys's source folder through `cargo metadata`.
fn mlx_sys_source() -> Result<PathBuf> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1"])
        .current_dir(util::project_root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let pkgs = meta["packages"]
        .as_array()
        .context("cargo metadata: no packages")?;
    let sys = pkgs
        .iter()
        .find(|p| p["name"] == "mlx-sys")
        .context("mlx-sys is not in the dependency graph")?;
    if sys["version"] != MLX_SYS_VERSION {
        bail!(
            "mlx-sys {} found, this setup is for {MLX_SYS_VERSION}",
            sys["version"]
        );
    }
    let manifest = PathBuf::from(sys["manifest_path"].as_str().context("manifest_path")?);
    Ok(manifest.parent().context("manifest dir")?.to_path_buf())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
            let mut perm = std::fs::metadata(&dest)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&dest, perm)?;
        }
    }
    Ok(())
}

/// Copies mlx-c out of the registry (never edited in place) and builds
/// `libmlxc.a` against the wheel's MLX.
fn ensure_mlxc(l: &Layout) -> Result<bool> {
    let want = sha256_bytes(
        format!(
            "{MLX_SYS_VERSION} {WHEEL_SHA256} {}",
            sha256_bytes(COMPAT_HEADER.as_bytes())
        )
        .as_bytes(),
    );
    let lib = l.mlxc_lib().join("libmlxc.a");
    if lib.exists() && read_stamp(&l.stamp("mlx-c")).as_deref() == Some(want.as_str()) {
        return Ok(false);
    }
    let step = Step::start("build mlx-c against the wheel (cmake; a few minutes)");
    let src = l.mlxc_src();
    for d in [src.clone(), l.mlxc_build(), l.mlxc_prefix()] {
        if d.exists() {
            std::fs::remove_dir_all(&d)?;
        }
    }
    copy_dir(&mlx_sys_source()?.join("src").join("mlx-c"), &src)?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut configure = Command::new("cmake");
    configure
        .arg("-S")
        .arg(&src)
        .arg("-B")
        .arg(l.mlxc_build())
        .args(["-DCMAKE_BUILD_TYPE=Release", "-DMLX_C_USE_SYSTEM_MLX=ON"])
        .arg(format!(
            "-DMLX_DIR={}",
            l.dist().join("mlx/share/cmake/MLX").display()
        ))
        .args(["-DMLX_C_BUILD_EXAMPLES=OFF", "-DBUILD_SHARED_LIBS=OFF"])
        .arg(format!(
            "-DCMAKE_INSTALL_PREFIX={}",
            l.mlxc_prefix().display()
        ))
        .arg(format!(
            "-DCMAKE_CXX_FLAGS=-include {}",
            l.compat_header().display()
        ));
    run_logged(&mut configure, &l.log("mlx-c-configure"))?;
    let mut build = Command::new("cmake");
    build
        .arg("--build")
        .arg(l.mlxc_build())
        .arg(format!("-j{jobs}"));
    run_logged(&mut build, &l.log("mlx-c-build"))?;
    let mut install = Command::new("cmake");
    install.arg("--install").arg(l.mlxc_build());
    run_logged(&mut install, &l.log("mlx-c-install"))?;
    if !lib.exists() {
        bail!("cmake finished but {} is missing", lib.display());
    }
    write_stamp(&l.stamp("mlx-c"), &want)?;
    step.done();
    Ok(true)
}

/// Builds the static `mach_approximate_time` shim.
fn ensure_shim(l: &Layout) -> Result<bool> {
    let want = sha256_bytes(SHIM_SOURCE.as_bytes());
    let lib = l.mlxc_lib().join("libmlxrs_linux_shim.a");
    if lib.exists() && read_stamp(&l.stamp("shim")).as_deref() == Some(want.as_str()) {
        return Ok(false);
    }
    let step = Step::start("build the mach_approximate_time shim");
    let dir = l.p("shim");
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(l.mlxc_lib())?;
    let c = dir.join("mach_time_shim.c");
    let o = dir.join("mach_time_shim.o");
    std::fs::write(&c, SHIM_SOURCE)?;
    run_logged(
        Command::new("cc")
            .args(["-O2", "-fPIC", "-c"])
            .arg(&c)
            .arg("-o")
            .arg(&o),
        &l.log("shim"),
    )?;
    run_logged(
        Command::new("ar").arg("rcs").arg(&lib).arg(&o),
        &l.log("shim-ar"),
    )?;
    write_stamp(&l.stamp("shim"), &want)?;
    step.done();
    Ok(true)
}

/// Generates `bindings.rs` with the `mlx-bindgen` helper crate.
fn ensure_bindings(l: &Layout) -> Result<bool> {
    let helper_src = include_str!("../mlx-bindgen/src/main.rs");
    let want = sha256_bytes(
        format!(
            "{MLX_SYS_VERSION} {} {}",
            sha256_bytes(COMPAT_HEADER.as_bytes()),
            sha256_bytes(helper_src.as_bytes())
        )
        .as_bytes(),
    );
    let out = l.sys_out().join("bindings.rs");
    if out.exists() && read_stamp(&l.stamp("bindings")).as_deref() == Some(want.as_str()) {
        return Ok(false);
    }
    let step = Step::start("generate mlx-sys bindings (bindgen)");
    std::fs::create_dir_all(l.sys_out())?;
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(util::project_root())
        .args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "mlx-bindgen",
            "--",
        ])
        .arg(l.mlxc_src())
        .arg(&out)
        .env("LIBCLANG_PATH", LIBCLANG_DIR)
        .env(
            "BINDGEN_EXTRA_CLANG_ARGS",
            format!("-include {}", l.compat_header().display()),
        );
    run_logged(&mut cargo, &l.log("bindgen"))?;
    let text = std::fs::read_to_string(&out)?;
    for needle in [
        "pub type bfloat16_t = u16;",
        "pub type float16_t = __BindgenFloat16;",
    ] {
        if !text.contains(needle) {
            bail!(
                "{} lacks `{needle}`: the compat header was not applied",
                out.display()
            );
        }
    }
    write_stamp(&l.stamp("bindings"), &want)?;
    step.done();
    Ok(true)
}

/// Downloads (sha256 pinned) and unpacks the `mlx-cuda-13` wheel, and puts
/// the NVIDIA runtime libraries beside it.
fn ensure_cuda(l: &Layout, nvidia_libs: Option<&Path>) -> Result<bool> {
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
fn probe_cuda(l: &Layout) -> Result<()> {
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

/// Copies the generated `bindings.rs` into `sys-out/<native_hash>/`, the
/// folder the override names as mlx-sys's `OUT_DIR`, and removes the folders
/// of older hashes. Returns that folder.
///
/// Why a folder per hash: Cargo fingerprints an overridden build script by
/// hashing its parsed output, and it reads the `rustc-env` table into a list
/// in hash-map order, which differs from one Cargo process to the next. With
/// two keys (`OUT_DIR` and a hash variable, as before) half of all no-op
/// builds saw a "changed" mlx-sys and rebuilt everything above it. Folding
/// the hash into the one `OUT_DIR` value keeps the relink-on-change and makes
/// the fingerprint deterministic.
fn publish_bindings(l: &Layout, native_hash: &str) -> Result<PathBuf> {
    let generated = std::fs::read_to_string(l.sys_out().join("bindings.rs"))?;
    let dir = l.sys_out().join(native_hash);
    write_if_changed(&dir.join("bindings.rs"), &generated)?;
    for entry in std::fs::read_dir(l.sys_out())? {
        let path = entry?.path();
        if path.is_dir() && path != dir {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(dir)
}

/// Writes the Cargo build-script override for `links = "mlx"`. Programs
/// always link against the CPU wheel's libmlx.so (same symbols, and no
/// CUDA libraries needed to link); with the CUDA backend the run-time path
/// finds the CUDA build first.
fn write_override(l: &Layout, backend: Backend) -> Result<bool> {
    let mut native = Vec::new();
    for f in [
        l.mlxc_lib().join("libmlxc.a"),
        l.mlxc_lib().join("libmlxrs_linux_shim.a"),
        l.sys_out().join("bindings.rs"),
    ] {
        native.extend_from_slice(sha256_file(&f)?.as_bytes());
    }
    let native_hash = &sha256_bytes(&native)[..16];
    let out_dir = publish_bindings(l, native_hash)?;
    let text = format!(
        r#"# Written by `cargo xtask setup`; do not edit (it is rewritten when inputs change).
# mlx-sys {MLX_SYS_VERSION} declares `links = "mlx"`: this table stands in for its build
# script on Linux, wiring in mlx-c built here and libmlx.so from the mlx-cpu wheel.
[target.{TRIPLE}.mlx]
rustc-link-lib = ["static=mlxc", "static=mlxrs_linux_shim", "dylib=mlx", "dylib=stdc++"]
rustc-link-search = ["native={mlxc}", "native={libmlx}"]
# mlx-sys includes $OUT_DIR/bindings.rs. The folder is named by a hash of the
# native files, so Cargo relinks when they change. One key only: Cargo hashes
# this table in a random order, and two keys made no-op builds rebuild at random.
rustc-env = {{ OUT_DIR = "{out}" }}

[target.{TRIPLE}]
# Run-time search path for libmlx.so (no LD_LIBRARY_PATH needed); backend: {backend:?}.
rustflags = ["-C", "link-arg=-Wl,-rpath,{rpath}"]
"#,
        rpath = match backend {
            Backend::Cpu => l.libmlx_dir().display().to_string(),
            Backend::Cuda => format!(
                "{}:{}",
                l.cuda_libmlx_dir().display(),
                l.libmlx_dir().display()
            ),
        },
        mlxc = l.mlxc_lib().display(),
        libmlx = l.libmlx_dir().display(),
        out = out_dir.display(),
    );
    write_if_changed(&l.override_file(), &text)
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
