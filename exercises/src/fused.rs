//! Day 11: fused kernels meet MLX: RMSNorm, RoPE, SwiGLU and softmax, each
//! one pass over the host buffers through `crate::fused_cpu`'s kernels
//! and the given [`tiny_llm_common::cpu_bridge`], in place of the chains of
//! MLX ops of week 1 (each of which reads and writes the whole tensor).
//!
//! Reference: `mlx.core.fast.rms_norm`, `mlx.core.fast.rope`,
//! `mlx.core.softmax`; SwiGLU: Shazeer 2020, "GLU Variants Improve
//! Transformer".
//!
//! Each call is one crossing of the bridge (`cpu_bridge::crossing()` once,
//! so the model's tests can count the fused calls): the inputs are borrowed
//! with `host_f32` (evaluated; cast to f32 first, a copy, when they are
//! f16 or bf16), the kernel writes a new `Vec<f32>`, `from_vec` wraps it in
//! the input's shape, and a non-f32 input gets its output cast back to its
//! dtype. Shapes and dtypes are checked before anything is evaluated.
//!
//! Speed: a sync of the input (it ends MLX's lazy graph there), then the
//! kernel, which is memory-bound (see `crate::fused_cpu`: 8 to 12 bytes an
//! element), then MLX's copy of the output (4 bytes an element more).
//!
//! Hints: check the shapes (`x.ndim()`, `x.dim(-1)`, `shape_error`), then
//! `host_f32` each input, `crossing()`, run your `crate::fused_cpu` kernel
//! with `fused_cpu::isa()`, `from_vec(out, x.shape())`, and
//! `as_dtype(x.dtype())` when `x` was not f32. A `KernelError` converts with
//! `Error::Invalid(e.to_string())`.

use mlx_rs::Array;
use tiny_llm_common::Result;
use tiny_llm_common::RopeView;

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * weight` over the last axis.
///
/// - `x`: `N.. x E`, any float dtype (computed in f32); `weight`: `E`.
/// - returns: `N.. x E` in `x`'s dtype; equal to day 4's `RmsNorm::forward`
///   within f32 rounding.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `weight` is not `E`;
/// [`tiny_llm_common::Error::Invalid`] for a non-float `x` or `eps <= 0`.
pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    let _ = (x, weight, eps);
    todo!("day 11: rms_norm")
}

/// RoPE with one position offset per batch row, from `rope`'s cos/sin
/// tables (day 2's `RoPE` (as a [`RopeView`]): `dims`, `base`, `traditional`).
///
/// - `x`: `N x L x H x D` (`D = rope.dims`), any float dtype (computed in
///   f32); row `b`'s token `t` is at position `offsets[b] + t`.
/// - `offsets`: `N` offsets, or one for every row.
/// - returns: `N x L x H x D` in `x`'s dtype; with one offset, equal to
///   `rope.forward(x, offset)` within f32 rounding.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `x` is not 4-D with
/// `D = rope.dims`; [`tiny_llm_common::Error::Invalid`] when
/// `offsets.len()` is neither 1 nor `N`, or a position passes
/// `rope.seq_len` (naming the row and the position).
pub fn rope(x: &Array, rope: RopeView<'_>, offsets: &[i32]) -> Result<Array> {
    let _ = (x, rope, offsets);
    todo!("day 11: rope")
}

/// SwiGLU's gate: `silu(gate) * up`, elementwise, `silu(x) = x / (1 + e^-x)`.
///
/// - `gate`, `up`: the same shape `N.. x I`, float (computed in f32).
/// - returns: `N.. x I` in `gate`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when the shapes differ.
pub fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    let _ = (gate, up);
    todo!("day 11: swiglu")
}

/// Softmax over the last axis, numerically stable (the row maximum is
/// subtracted first; a row of all `-inf` gives NaN, as MLX's does).
///
/// - `x`: `N.. x S`, float (computed in f32).
/// - returns: `N.. x S` in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Invalid`] for a non-float or 0-D `x`.
pub fn softmax(x: &Array) -> Result<Array> {
    let _ = x;
    todo!("day 11: softmax")
}
