//! Day 12 on a GPU: flash attention as a CUDA source run through MLX's
//! custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]); its Metal twin
//! is `metal/flash_attention.metal` (macOS; it cannot run on the Linux
//! machines the kit is tested on).
