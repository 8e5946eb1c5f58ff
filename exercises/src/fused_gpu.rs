//! Day 11 on a GPU: the fused kernels as CUDA sources run through MLX's
//! custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]); their Metal
//! twins are in `metal/fused.metal` (macOS; they cannot run on the Linux
//! machines the kit is tested on).
