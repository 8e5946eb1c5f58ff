//! Steps 3 and 5: mlx-c, copied out of the mlx-sys crate and built against
//! the wheel, and the static `mach_approximate_time` shim.

use super::*;

/// Finds mlx-sys's source folder through `cargo metadata`.
pub(super) fn mlx_sys_source() -> Result<PathBuf> {
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

pub(super) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
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
pub(super) fn ensure_mlxc(l: &Layout) -> Result<bool> {
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
pub(super) fn ensure_shim(l: &Layout) -> Result<bool> {
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
