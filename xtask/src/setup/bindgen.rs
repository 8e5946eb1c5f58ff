//! Step 4: `bindings.rs` for mlx-sys, from the `mlx-bindgen` helper crate.

use super::*;

/// Generates `bindings.rs` with the `mlx-bindgen` helper crate.
pub(super) fn ensure_bindings(l: &Layout) -> Result<bool> {
    let helper_src = include_str!("../../mlx-bindgen/src/main.rs");
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
