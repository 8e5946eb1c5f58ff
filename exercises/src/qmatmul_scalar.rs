//! Day 9: the scalar CPU kernel over packed weights, the oracle of day 10.
//!
//! Plain Rust on slices, no MLX: it reads the same buffers MLX stores for an
//! affine-quantized weight (see [`tiny_llm_common::qmatrix`] for the layout)
//! and computes `x W^T` the obvious way, one output at a time. Day 10's fast
//! kernel is tested against it, so it is written to be easy to check, not
//! fast.
//!
//! Hints: Check your work with `cargo xtask check day9`.

#[allow(unused_imports)]
use tiny_llm_common::qmatrix::{check_matmul, KernelError, QuantizedMatrix, Scale};

/// `out = x W^T`: `x` `m x w.cols` f32, `out` `m x w.rows` f32, row-major.
///
/// `out[r][o] = sum_i x[r][i] * (scales[o][i / g] * q[o][i] + biases[o][i / g])`,
/// where `q[o][i]` is the unsigned `bits`-bit code of input `i` in row `o`:
/// bits `bits * (i % k) .. bits * (i % k + 1)` of word `i / k` of the row,
/// `k = 32 / bits` (lowest bits first). Every `out` element is overwritten.
///
/// - `x`: `m x I` f32 activations (`I = w.cols`); `m` may be 0.
/// - `w`: a checked `O x I` view; scales and biases in f32, f16 or bf16,
///   each converted to f32 exactly.
/// - `out`: `m x O` f32.
///
/// Accumulation is in f32: one dot product per group, in input order,
/// added to the output group by group. MLX's CPU kernel keeps one running
/// sum over the whole row instead, so the two can differ by f32 rounding
/// (measured: at most 5e-5 for `I` = 384; course.toml's day-9 tolerance).
///
/// Errors: [`KernelError::Length`] naming `"x"` or `"out"` when a length
/// does not follow from `m` and `w`'s shape (nothing is written then).
///
/// Reference: MLX `mlx/backend/cpu/quantized.cpp` (affine format);
/// `mx.quantized_matmul` with `transpose=True`.
///
/// Hints: decode one code with `(word >> (bits * (i % k))) & mask`, where
/// `word = packed[o * words_per_row + i / k]` and `mask = (1 << bits) - 1`;
/// the group's pair is `scales[o * groups_per_row + i / group_size]` (the
/// same index for `biases`), read as f32 with `Scale::to_f32`. Check the
/// lengths first with `check_matmul`, then start `out` from zero: the caller
/// may hand you any old buffer.
pub fn qmatmul_scalar<S: Scale>(
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let _ = (x, m, w, out);
    todo!("day 9: qmatmul_scalar")
}
