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
/// and the checks, before the code under test builds its graph).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if on_gpu() {
            assert!(
                tiny_llm_common::gpu::gpu_available(),
                "[error] TINY_LLM_DEVICE=gpu but MLX has no usable GPU here"
            );
            mlx_rs::Device::set_default(&mlx_rs::Device::gpu());
        }
    });
}
