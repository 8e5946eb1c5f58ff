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

/// For a test that needs a GPU: `true` when one is usable. Otherwise it
/// prints `[skipped] no GPU (<why>)` on stderr and returns `false`; the test
/// then returns at once (a pass for plain `cargo test`, reported as skipped
/// by `cargo xtask check`, which reads the tag).
pub fn require_gpu(test: &str) -> bool {
    if tiny_llm_common::gpu::gpu_available() {
        return true;
    }
    eprintln!("[skipped] no GPU: {test} needs a GPU that MLX can use, and none is usable here");
    false
}
