//! Day 10 on a GPU: the quantized matmul as CUDA kernels run through MLX's
//! custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]): a matvec kernel
//! for decode (few rows of `x`) and a tiled kernel for prefill, 4 and 8
//! bits; the Metal twin is `metal/qmatmul.metal` (macOS; it cannot run on the
//! Linux machines the kit is tested on).
//!
//! Same layout and contract as day 9's `crate::quantized_matmul` (MLX's
//! affine quantization: row `o` of `W` is `I * bits / 32` uint32 words, code
//! `j` of a word is input `p * (32 / bits) + j`, lowest bits first; group
//! `g` of row `o` has `scales[o, g]`, `biases[o, g]`, and
//! `w = scale * q + bias`). Without a CUDA GPU every function returns
//! [`tiny_llm_common::Error::Invalid`] before touching MLX's GPU device.
//!
//! Reference: MLX `mx.quantized_matmul` (transpose = true) and
//! `mlx/backend/cuda/custom_kernel.cpp` (how a body is wrapped).

use mlx_rs::Array;
use tiny_llm_common::{Linear, Result};

/// Rows of `x` up to which [`quantized_matmul`] runs the matvec kernel
/// (decode, small batches); more rows run the tiled kernel.
pub const MATVEC_MAX_ROWS: i32 = 8;

/// `x W^T` with `W` quantized (4 or 8 bits), on the GPU.
///
/// - `x`: `N.. x I`, f32/f16/bf16 (computed in f32).
/// - `w`: `O x I * bits / 32` uint32; `scales`, `biases`: `O x I / group_size`,
///   f32/f16/bf16 (the same dtype).
/// - returns: `N.. x O` in `x`'s dtype.
///
/// At most [`MATVEC_MAX_ROWS`] rows of `x` run the matvec kernel, more the
/// tiled kernel.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when the shapes disagree;
/// [`tiny_llm_common::Error::Invalid`] for bits other than 4 or 8, a group
/// size other than 32, 64 or 128, a non-float `x`, scales and biases of
/// different dtypes, or no usable CUDA GPU.
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    let _ = (x, w, scales, biases, group_size, bits);
    todo!("day 10 (GPU): quantized_matmul")
}

/// `x W^T + b` for a quantized [`Linear`] on the GPU: [`quantized_matmul`]
/// plus the bias (same contract as `crate::quantized_linear::quantized_linear`,
/// but the output keeps `x`'s dtype).
///
/// Errors: those of [`quantized_matmul`]; [`tiny_llm_common::Error::Invalid`]
/// for a dense layer.
pub fn quantized_linear(x: &Array, layer: &Linear) -> Result<Array> {
    let _ = (x, layer);
    todo!("day 10 (GPU): quantized_linear")
}
