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
//! Hints: MLX wraps a CUDA body (`CudaKernel::new(name, inputs, outputs,
//! source, header, true)`) in `__global__ void custom_kernel_<name>(const
//! T_in* in.., T_out* out..)`, declares each template argument inside it
//! (`constexpr int BITS = 4;`, `using T = __nv_bfloat16;`) and launches
//! `grid / block` blocks: the grid is counted in threads. Make the dtypes of
//! `x` and of the scales template arguments (`T`, `S`), and `BITS`, `GS`;
//! pass `M, I, O` as a 3-element int32 input (a new length must not compile
//! a new kernel). Shared memory is static, 48 KB at most. Read every value
//! as `static_cast<float>(..)`, accumulate in f32, write
//! `static_cast<T>(..)`. Both kernels use the identity `sum_i x_i (s q_i +
//! b) = s (x . q) + b sum(x)` over a group. A code is `(word >> (j * BITS))
//! & mask`; `__uint_as_float(0x4B000000u | code) - 8388608.0f` turns it
//! into a float faster than a conversion. Matvec (decode): memory-bound, so
//! aim at reading each weight byte once, fast: one warp per output row (or
//! two), lanes reading consecutive 16-byte chunks of the packed row
//! (`reinterpret_cast<const uint4*>(w)`, 32 codes at 4 bits), all `M` rows
//! of `x` per chunk (make `M` a template argument so `float acc[M]` stays in
//! registers); stage `x` in shared memory as f32 (in slices if `M x I` does
//! not fit), laid out so that the 32 lanes, each at its own chunk, read
//! different banks; sum the lanes with `__shfl_xor_sync` (16, 8, 4, 2, 1).
//! Tiled (prefill): a block of 256 threads per 64 x 64 tile of `out`; for
//! each step of 32 inputs (inside one group), dequantize the 64 x 32 `W`
//! tile into `__shared__ float` and copy the 64 x 32 `x` tile beside it
//! (k-major, stride 65 to dodge bank conflicts), `__syncthreads()`, then
//! each thread accumulates a 4 x 4 block of outputs (rows `ty + 16 i`,
//! columns `tx + 16 j`); zeros outside `M` and `O`, no write there. Test
//! them in CuPy first (`docs/gpu/check_cuda_sources.py` shows how MLX's
//! wrapping is reproduced), then through `cargo xtask check day10
//! --device gpu`.
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
///
/// Hints: all the host checks of day 9 first (bits, group size, `w` uint32
/// of 2 dimensions, `I = w.dim(1) * 32 / bits` a multiple of the group,
/// scales and biases `[O, I / group_size]` of one float dtype, `x` float
/// with last axis `I`), then `gpu_backend() == Some(GpuBackend::Cuda)` (else
/// the error) before `Stream::try_default_on_device(&Device::gpu())`. View
/// `x` as `M x I` rows; `M <= MATVEC_MAX_ROWS` launches the matvec kernel
/// (e.g. `grid = (ceil(O / 8) * 256, 1, 1)`, `block = (256, 1, 1)`), more
/// the tiled one (`grid = (ceil(O / 64) * 256, ceil(M / 64), 1)`); one
/// output `M x O` in `x`'s dtype, reshaped to `N.. x O`.
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
///
/// Hints: take `w`, `scales`, `biases`, `group_size`, `bits` out of
/// `LinearWeight::Quantized` (a dense layer is an error), call
/// [`quantized_matmul`], add the bias with MLX's `add` and cast back to
/// `x`'s dtype (a bf16 `x` plus an f32 bias would promote to f32).
pub fn quantized_linear(x: &Array, layer: &Linear) -> Result<Array> {
    let _ = (x, layer);
    todo!("day 10 (GPU): quantized_linear")
}
