//! Day 9: the scalar CPU kernel over packed weights, the oracle of day 10.
//!
//! Plain Rust on slices, no MLX: it reads the same buffers MLX stores for an
//! affine-quantized weight (see [`tiny_llm_common::qmatrix`] for the layout)
//! and computes `x W^T` the obvious way, one output at a time. Day 10's fast
//! kernel is tested against it, so it is written to be easy to check, not
//! fast.

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
/// Implementation: each row of `W` is decoded group by group into a
/// `group_size` buffer of f32 weights, then dotted with the matching slice
/// of every row of `x`; no trick that could hide a bug (the identity
/// `s * (x . q) + b * sum(x)` is left to the fast kernel).
pub fn qmatmul_scalar<S: Scale>(
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_matmul(x, m, w, out)?;
    let (rows, cols, g) = (w.rows, w.cols, w.group_size);
    let bits = w.bits as usize;
    let k = w.codes_per_word();
    let mask = (1u32 << bits) - 1;
    let (wpr, gpr) = (w.words_per_row(), w.groups_per_row());
    out.fill(0.0);
    let mut dense = vec![0.0f32; g];
    for o in 0..rows {
        let words = &w.packed[o * wpr..(o + 1) * wpr];
        for grp in 0..gpr {
            let s = w.scales[o * gpr + grp].to_f32();
            let b = w.biases[o * gpr + grp].to_f32();
            for (j, wt) in dense.iter_mut().enumerate() {
                let i = grp * g + j;
                let q = (words[i / k] >> (bits * (i % k))) & mask;
                *wt = s * q as f32 + b;
            }
            for r in 0..m {
                let xs = &x[r * cols + grp * g..r * cols + (grp + 1) * g];
                let dot: f32 = xs.iter().zip(&dense).map(|(a, b)| a * b).sum();
                out[r * rows + o] += dot;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hand_packed_row() {
        // 4 bits, 32 inputs: codes 0..8 in word 0 (0x76543210), 8 in word 1..3.
        let mut packed = [0u32; 4];
        packed[0] = 0x7654_3210;
        let (s, b) = ([2.0f32], [-1.0f32]);
        let w = QuantizedMatrix::new(&packed, &s, &b, 1, 32, 32, 4).unwrap();
        let mut x = [0.0f32; 32];
        x[3] = 1.0; // q = 3 -> 2 * 3 - 1 = 5
        x[7] = 0.5; // q = 7 -> 13, * 0.5 = 6.5
        x[20] = 2.0; // q = 0 -> -1, * 2 = -2
        let mut out = [f32::NAN; 1];
        qmatmul_scalar(&x, 1, &w, &mut out).unwrap();
        assert_eq!(out[0], 5.0 + 6.5 - 2.0);
    }
}
