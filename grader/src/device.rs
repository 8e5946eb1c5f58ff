//! The device the grader runs MLX on: `TINY_LLM_DEVICE=gpu` (set by
//! `cargo xtask check --device gpu`) makes the GPU MLX's default device;
//! anything else, or no variable, keeps the CPU.
//!
//! MLX ends the process when asked for a GPU it lacks, so the GPU is only
//! chosen after `tiny_llm_common::gpu::gpu_available()` says yes.

use std::sync::Once;

/// Whether this test process grades on the GPU.
pub fn on_gpu() -> bool {
    std::env::var("TINY_LLM_DEVICE").is_ok_and(|d| d == "gpu")
}

/// Sets MLX's default device once per process (called by fixture loading
/// and the checks, before the code under test builds its graph). Asked for
/// a GPU that this machine lacks, it panics with `[skipped] no GPU`: the
/// test did not run.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if on_gpu() {
            assert!(
                tiny_llm_common::gpu::gpu_available(),
                "[skipped] no GPU: TINY_LLM_DEVICE=gpu but MLX has no usable GPU here \
                 (CPU-only MLX, or no NVIDIA device/driver); grade on the CPU instead"
            );
            mlx_rs::Device::set_default(&mlx_rs::Device::gpu());
        }
    });
}

/// The variable `cargo xtask check` sets for the tests it runs: a skipped
/// test then panics with its `[skipped]` tag (the check reads a panic
/// message, and a passing test's output is not shown).
pub const GRADING_ENV: &str = "TINY_LLM_GRADING";

/// Says that the calling test did not run, and why: under `cargo xtask
/// check` ([`GRADING_ENV`] set) it panics with `[skipped] <reason>`, which
/// the check reports as skipped; under plain `cargo test` it prints the same
/// line on stderr and returns (the test then returns, a pass there).
pub fn skip(reason: &str) {
    if std::env::var_os(GRADING_ENV).is_some() {
        panic!("[skipped] {reason}");
    }
    eprintln!("[skipped] {reason}");
}

/// For a test that needs a GPU: `true` when one is usable. Otherwise it
/// [`skip`]s with `[skipped] no GPU: ...` and returns `false`; the test then
/// returns at once (a pass for plain `cargo test`, reported as skipped by
/// `cargo xtask check`).
pub fn require_gpu(test: &str) -> bool {
    if tiny_llm_common::gpu::gpu_available() {
        return true;
    }
    skip(&format!(
        "no GPU: {test} needs a GPU that MLX can use, and none is usable here"
    ));
    false
}
