//! Day 11 on a GPU: the fused kernels as CUDA sources run through MLX's
//! custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]); their Metal
//! twins are in `metal/fused.metal` (macOS; they cannot run on the Linux
//! machines the kit is tested on).
//!
//! Same functions, signatures and contracts as `crate::fused` (the CPU
//! kernels of day 11): each one checks its arguments on the host, then
//! launches one CUDA kernel on MLX's default GPU stream. The kernels read
//! their inputs in the input's dtype (f32, f16 or bf16), compute in f32 and
//! write the input's dtype. Without a CUDA GPU (a CPU-only MLX, or no
//! NVIDIA device) every function returns
//! [`tiny_llm_common::Error::Invalid`] before touching MLX's GPU device.
//!
//! How MLX runs a body (`CudaKernel::new(name, inputs, outputs, source,
//! header, ..)`): it wraps `source` in `__global__ void
//! custom_kernel_<name>_<template args>(const T_in* in.., T_out* out..)`
//! (after MLX's header and `header`), declares each template argument inside
//! it (`constexpr int N = ..`, `constexpr bool B = ..`, `using T = float`),
//! and launches `grid / block` blocks of `block` threads: the grid is
//! counted in threads. Shared memory is static (`__shared__ float s[..]`,
//! 48 KB at most). A kernel is compiled once per name and template arguments
//! (NVRTC) and cached, so the input dtypes must be template arguments (the
//! cache key), and sizes that change from call to call (rows, sequence
//! length) are better read from a small `int32` input than made template
//! arguments (which would compile one kernel per length). Floats such as
//! `eps` travel as 1-element f32 inputs.
//!
//! Reference: MLX `mlx/backend/cuda/custom_kernel.cpp` (the wrapping), and
//! the formulas of `crate::fused`: `mx.fast.rms_norm`, `mx.fast.rope`,
//! `mx.softmax`, Shazeer 2020 (SwiGLU).

use mlx_rs::Array;
use tiny_llm_common::Result;
use tiny_llm_common::RopeView;

/// RMSNorm on the GPU: `x / sqrt(mean(x^2) + eps) * weight` over the last
/// axis (same contract as `crate::fused::rms_norm`).
///
/// - `x`: `N.. x E`, f32/f16/bf16 (computed in f32); `weight`: `E`, any
///   float dtype (read as f32).
/// - returns: `N.. x E` in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `x` is 0-D or `weight` is not `E`;
/// [`tiny_llm_common::Error::Invalid`] for a non-float `x`, `eps <= 0` (or not finite), or
/// no usable CUDA GPU.
///
/// Hints: check on the host first (float dtype, `weight` is `[E]`, `eps`), then
/// build a `CudaKernel` with inputs `x`, `weight` (as f32) and `eps` (a
/// 1-element f32 array) and launch one block per row (`grid = (rows * 256, 1,
/// 1)`, `block = (256, 1, 1)`) with template arguments `T` (x's dtype) and
/// `E`. In the body: `blockIdx.x` is the row; each thread sums the squares of
/// `x[i]` for `i = threadIdx.x, + blockDim.x, ...`; reduce within a warp with
/// `__shfl_xor_sync(0xffffffff, v, 16, 8, 4, 2, 1)`, write one value per warp
/// to `__shared__ float s[32]`, `__syncthreads()`, reduce those in warp 0;
/// then every thread writes `T(x * rsqrtf(sum / E + eps) * weight)`.
/// Ask `gpu_backend() == Some(GpuBackend::Cuda)` before `Device::gpu()`.
pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    let _ = (x, weight, eps);
    todo!("day 11: rms_norm")
}

/// RoPE on the GPU with one position offset per batch row (same contract
/// as `crate::fused::rope`).
///
/// - `x`: `N x L x H x D` (`D = rope.dims`), f32/f16/bf16 (computed in
///   f32); row `b`'s token `t` is at position `offsets[b] + t`.
/// - `offsets`: `N` offsets, or one for every row.
/// - returns: `N x L x H x D` in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `x` is not 4-D with `D = rope.dims`;
/// [`tiny_llm_common::Error::Invalid`] when `offsets.len()` is neither 1 nor `N`, a position
/// is negative or passes `rope.seq_len` (naming the row), `x` is not float,
/// or no CUDA GPU is usable.
///
/// Hints: expand one offset to `N` and check every row's positions on the
/// host; pass `x`, `rope.cos`, `rope.sin` (f32 tables), the offsets (int32,
/// `N`) and the sizes `[N, L, H]` (int32) as inputs, `T`, `D` and
/// `TRADITIONAL` as template arguments. One thread per pair: pair `p` is row
/// `r = p / (D/2)` (the row is `(b, t, head)` in row-major order) and
/// frequency `j = p % (D/2)`; its position is `offsets[b] + t`; the pair is
/// `(2j, 2j+1)` when traditional, else `(j, j + D/2)`. A grid-stride loop
/// (`p += gridDim.x * blockDim.x`) keeps the grid bounded.
pub fn rope(x: &Array, rope: RopeView<'_>, offsets: &[i32]) -> Result<Array> {
    let _ = (x, rope, offsets);
    todo!("day 11: rope")
}

/// SwiGLU's gate on the GPU: `silu(gate) * up`, elementwise (same contract
/// as `crate::fused::swiglu`).
///
/// - `gate`, `up`: the same shape `N.. x I`, float (computed in f32).
/// - returns: `N.. x I` in `gate`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when the shapes differ;
/// [`tiny_llm_common::Error::Invalid`] for a non-float input or no usable CUDA
/// GPU.
///
/// Hints: one thread per element in a grid-stride loop; the element count
/// as a 1-element int32 input, not a template argument (a template argument
/// compiles one kernel per size); template arguments `T` and `U` for the
/// two dtypes; `out[i] = T(g / (1 + expf(-g)) * u)` in f32.
pub fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    let _ = (gate, up);
    todo!("day 11: swiglu")
}

/// Softmax over the last axis on the GPU, numerically stable (same
/// contract as `crate::fused::softmax`; a row of all `-inf` gives NaN, as
/// MLX's does).
///
/// - `x`: `N.. x S`, float (computed in f32).
/// - returns: `N.. x S` in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Invalid`] for a non-float or 0-D `x`, or no usable
/// CUDA GPU.
///
/// Hints: like `rms_norm`, one block per row, the row length as an int32
/// input; three passes over the row: a block-wide maximum (`fmaxf` in the
/// shuffles, `-inf` as the neutral element: `-__int_as_float(0x7f800000)`,
/// as MLX 0.32's header defines no `inf`), a
/// block-wide sum of `expf(x - max)`, then the writes. Call `__syncthreads()`
/// before reusing the shared scratch for the second reduction. A row of all
/// `-inf` gives NaN by itself (`expf(-inf - -inf)`).
pub fn softmax(x: &Array) -> Result<Array> {
    let _ = x;
    todo!("day 11: softmax")
}
