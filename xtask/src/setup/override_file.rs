//! Step 6: the Cargo build-script override (`target/mlx/override.toml`).

use super::*;

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
pub(super) fn publish_bindings(l: &Layout, native_hash: &str) -> Result<PathBuf> {
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
pub(super) fn write_override(l: &Layout, backend: Backend) -> Result<bool> {
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
