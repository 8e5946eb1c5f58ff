//! The BLAS libraries preloaded into each measured process (`LD_PRELOAD`).
use super::*;

/// The BLAS libraries preloaded into each process.
#[derive(Debug, Clone)]
pub(super) struct BlasLibs {
    pub(super) optimised: PathBuf,
    /// The wheel's netlib BLAS; `None` where there is none (macOS).
    pub(super) reference: Option<PathBuf>,
}

impl BlasLibs {
    pub(super) fn find() -> Result<Option<BlasLibs>> {
        if !cfg!(target_os = "linux") {
            return Ok(None);
        }
        // What the kit's wheel copy links (a symlink after `setup`), else Debian's.
        let libs = setup::Layout::new().dist().join("mlx_cpu.libs");
        let optimised = first_match(&libs, "libblas-")
            .and_then(|p| std::fs::read_link(p).ok())
            .unwrap_or_else(|| PathBuf::from(DEBIAN_OPENBLAS));
        if !optimised.is_file() {
            bail!(
                "{} is missing (Debian package libopenblas0-pthread)",
                optimised.display()
            );
        }
        // The venv's mlx-cpu wheel keeps its own reference BLAS.
        let reference = glob_venv_blas();
        Ok(Some(BlasLibs {
            optimised,
            reference,
        }))
    }

    pub(super) fn path(&self, kind: BlasKind) -> Option<&Path> {
        match kind {
            BlasKind::Optimised => Some(&self.optimised),
            BlasKind::Reference => self.reference.as_deref(),
        }
    }
}

/// The first file in `dir` whose name starts with `prefix`.
pub(super) fn first_match(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with(prefix))
                .unwrap_or(false)
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// `target/venv/lib/python3.*/site-packages/mlx_cpu.libs/libblas-*`, a
/// regular file (the wheel's netlib reference BLAS).
pub(super) fn glob_venv_blas() -> Option<PathBuf> {
    let lib = venv::venv_dir().join("lib");
    let mut pys: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
        })
        .collect();
    pys.sort();
    pys.into_iter().find_map(|py| {
        let f = first_match(&py.join("site-packages").join("mlx_cpu.libs"), "libblas-")?;
        let meta = std::fs::symlink_metadata(&f).ok()?;
        meta.file_type().is_file().then_some(f)
    })
}
