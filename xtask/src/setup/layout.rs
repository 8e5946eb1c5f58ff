//! Where setup puts things: the paths under `target/mlx/`.

use super::*;

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
    pub(super) fn p(&self, rel: &str) -> PathBuf {
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
    pub(super) fn mlxc_src(&self) -> PathBuf {
        self.p("mlx-c-src")
    }
    pub(super) fn mlxc_build(&self) -> PathBuf {
        self.p("mlx-c-build")
    }
    pub(super) fn mlxc_prefix(&self) -> PathBuf {
        self.p("mlx-c")
    }
    pub(super) fn mlxc_lib(&self) -> PathBuf {
        self.mlxc_prefix().join("lib")
    }
    pub(super) fn compat_header(&self) -> PathBuf {
        self.p("compat/mlxc_linux_compat.h")
    }
    pub(super) fn sys_out(&self) -> PathBuf {
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
    pub(super) fn backend_file(&self) -> PathBuf {
        self.p("backend")
    }
    /// The backend chosen last (`cpu` when none was).
    pub fn backend(&self) -> Backend {
        match read_stamp(&self.backend_file()).as_deref() {
            Some("cuda") => Backend::Cuda,
            _ => Backend::Cpu,
        }
    }
    pub(super) fn stamp(&self, name: &str) -> PathBuf {
        self.p("stamps").join(name)
    }
    pub(super) fn log(&self, name: &str) -> PathBuf {
        self.p("logs").join(format!("{name}.log"))
    }
}
