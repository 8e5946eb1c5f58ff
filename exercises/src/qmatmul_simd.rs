//! Day 10: the fast CPU kernel for `out = x W^T` over MLX's packed affine
//! weights: SIMD chosen at run time, threads over output rows, a matvec path
//! for decode (`M = 1`) and a tiled path for prefill (`M > 1`). No MLX in
//! this module: it works on the slices of a
//! [`QuantizedMatrix`](tiny_llm_common::qmatrix::QuantizedMatrix).
//!
//! The math is the scalar oracle's (day 9,
//! [`crate::qmatmul_scalar::qmatmul_scalar`]): `w = s * q + b` per group of
//! `group_size` inputs, f32 products and sums. Only the order of the
//! additions differs, so results agree with the oracle to f32 rounding
//! (about `K * 1e-7` relative to `sum |x_i w_i|`).
//!
//! Reference: the affine format of MLX (`mlx/backend/cpu/quantized.cpp`);
//! the "group dot product, then scale" split of llama.cpp's `ggml-cpu`
//! quantized dot products (`quants.c`), here with f32 activations.

use tiny_llm_common::qmatrix::{KernelError, QuantizedMatrix, Scale};

/// `out = x W^T`, as [`crate::qmatmul_scalar::qmatmul_scalar`], fast.
///
/// - `x`: `m x w.cols` f32, row-major.
/// - `w`: the packed `O x I` weight (`O = w.rows`, `I = w.cols`), 4 or 8
///   bits, groups of 32, 64 or 128, scales and biases in f32, f16 or bf16.
/// - `out`: `m x w.rows` f32, row-major, overwritten.
///
/// Results equal the scalar oracle's up to the order of f32 additions.
///
/// Errors: [`KernelError::Length`] naming `"x"` or `"out"` when a slice does
/// not have `m x I` or `m x O` elements.
///
/// Hints: start from your day-9 `qmatmul_scalar` and make it fast in steps,
/// checking against it after each (`cargo xtask check day10`):
/// 1. Per call, compute each row's group sums of `x` once: then a group
///    contributes `s * dot(x_g, q_g) + b * sum(x_g)`, and the inner loop is
///    a dot product of `x` with small integers.
/// 2. Threads: split the output rows into a few chunks per thread
///    (`rayon`'s `par_chunks_mut` on `out` when `m == 1`); keep a small
///    matrix on the calling thread (~170 calls per decoded token).
/// 3. SIMD: `is_x86_feature_detected!("avx2")` and `("fma")` once, then a
///    `#[target_feature(enable = "avx2,fma")] unsafe fn`: 8 packed bytes ->
///    `_mm256_cvtepu8_epi32` -> `& 0xF` (even inputs) and `>> 4` (odd
///    inputs) -> `_mm256_cvtepi32_ps` -> `_mm256_fmadd_ps` with `x`
///    rearranged once per call into the same even/odd order. Keep the
///    portable loop as the fallback (other CPUs, aarch64).
/// 4. Prefill (`m > 1`): dequantize a few rows of `W` to f32 once and
///    multiply them with every row of `x` (the weights are then read once,
///    not `m` times).
pub fn qmatmul<S: Scale>(
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let _ = (x, m, w, out);
    todo!("day 10: qmatmul")
}
