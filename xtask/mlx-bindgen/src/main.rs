//! Writes the `bindings.rs` that mlx-sys 0.7.0 would generate in its build
//! script, for Linux where that build script cannot run.
//!
//! The builder settings follow mlx-sys 0.7.0's `src/bindgen_config.rs`: every
//! header in `<mlx-c>/mlx/c/*.h` in sorted order, Rust target 1.73, the mlx-c
//! root on the include path, and `malloc`/`realloc` left out.
//!
//! Usage: `mlx-bindgen <mlx-c root> <out bindings.rs>`. Extra clang arguments
//! (the compat header) come through `BINDGEN_EXTRA_CLANG_ARGS`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn headers(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root.join("mlx").join("c"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "h") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn generate(root: &Path, out: &Path) -> Result<usize, String> {
    let headers = headers(root).map_err(|e| format!("reading {}/mlx/c: {e}", root.display()))?;
    if headers.is_empty() {
        return Err(format!("no headers under {}/mlx/c", root.display()));
    }
    let target = "1.73.0"
        .parse()
        .map_err(|e| format!("rust target: {e:?}"))?;
    let mut builder = bindgen::Builder::default()
        .rust_target(target)
        .clang_arg(format!("-I{}", root.display()))
        .blocklist_function("malloc")
        .blocklist_function("realloc");
    for header in &headers {
        builder = builder.header(header.to_string_lossy());
    }
    let bindings = builder
        .generate()
        .map_err(|e| format!("bindgen failed: {e}"))?;
    bindings
        .write_to_file(out)
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(headers.len())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [root, out] = args.as_slice() else {
        eprintln!("usage: mlx-bindgen <mlx-c root> <out bindings.rs>");
        return ExitCode::from(2);
    };
    match generate(root, out) {
        Ok(n) => {
            eprintln!("mlx-bindgen: {n} headers -> {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mlx-bindgen: {e}");
            ExitCode::FAILURE
        }
    }
}
