//! A second build with nothing changed must be a no-op.
//!
//! Cargo fingerprints mlx-sys's build-script override (`target/mlx/override.toml`,
//! written by `cargo xtask setup`) by hashing the parsed table. It reads the
//! `rustc-env` table in hash-map order, which differs between Cargo processes,
//! so an override with two `rustc-env` keys made about half of all no-op
//! builds rebuild mlx-sys and everything above it (9-13 s instead of 0.1 s).
//! Setup now writes a single key; this test builds mlx-sys (the package that
//! carries `links = "mlx"`, so every MLX crate inherits its fingerprint) once,
//! then three more times, and asserts that every artifact of the later builds
//! is reported fresh. With the old two-key file it fails with probability 7/8.

use std::path::Path;
use std::process::Command;

fn build_mlx_sys(root: &Path) -> Vec<(String, bool)> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["build", "--package", "mlx-sys", "--message-format=json"])
        .output()
        .expect("running cargo build");
    assert!(
        out.status.success(),
        "cargo build -p mlx-sys failed (run `cargo xtask setup` first on Linux):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .map(|m| {
            (
                m["target"]["name"].as_str().unwrap_or("?").to_string(),
                m["fresh"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn second_build_of_mlx_sys_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    if cfg!(target_os = "linux") && !root.join("target/mlx/override.toml").exists() {
        panic!("target/mlx/override.toml is missing: run `cargo xtask setup` first");
    }
    build_mlx_sys(root);
    for round in 1..=3 {
        let artifacts = build_mlx_sys(root);
        assert!(
            artifacts.iter().any(|(name, _)| name == "mlx_sys"),
            "no mlx_sys artifact reported: {artifacts:?}"
        );
        let stale: Vec<&String> = artifacts
            .iter()
            .filter(|(_, fresh)| !fresh)
            .map(|(name, _)| name)
            .collect();
        assert!(
            stale.is_empty(),
            "no-op build {round} rebuilt {stale:?}: Cargo's fingerprint of an input is not deterministic"
        );
    }
}
