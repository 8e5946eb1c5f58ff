//! Day 6: MLX affine quantization, undone by hand.
//!
//! A quantized `O x I` matrix is stored as three arrays (mlx-lm's
//! `QuantizedLinear`): `weight`, `O x (I * bits / 32)` `uint32`, each word
//! packing `32 / bits` unsigned codes, the first in the lowest bits; and
//! `scales`, `biases`, `O x (I / group_size)` floats, one pair per group of
//! `group_size` consecutive inputs. A code `q` of group `g` stands for
//! `scales[g] * q + biases[g]`.
//!
//! Week-1 rule: array ops only, no `ops::dequantize` / `quantized_matmul`.
//!
//! Hints: Check your work with `cargo xtask check day6`.

use mlx_rs::Array;
#[allow(unused_imports)]
use mlx_rs::Dtype;
#[allow(unused_imports)]
use tiny_llm_common::{shape_error, Error, Result};

/// Code widths this kit handles.
pub const SUPPORTED_BITS: [i32; 2] = [4, 8];
/// Group sizes this kit handles (MLX's choices).
pub const SUPPORTED_GROUP_SIZES: [i32; 3] = [32, 64, 128];

/// Expands an MLX affine-quantized matrix to dense weights:
/// `w[o, i] = scales[o, i / group_size] * q[o, i] + biases[o, i / group_size]`,
/// where `q[o, i]` is bits `bits * (i % k) ..` of word `w[o, i / k]`, `k = 32 / bits`
/// (a right shift and a mask: `(word >> (bits * j)) & (2^bits - 1)`).
///
/// - `w`: `O x (I * bits / 32)`, `uint32`.
/// - `scales`, `biases`: `O x (I / group_size)`, the same float dtype.
/// - `group_size`: 32, 64 or 128; `bits`: 4 or 8.
/// - returns: `O x I` in the dtype of `scales` (compute in f32, cast once at
///   the end).
///
/// Errors: [`Error::Invalid`] for other `bits` or `group_size`, a `w` that is
/// not `uint32` or scales that are not floats; [`Error::Shape`] (build it
/// with [`shape_error`]) when the shapes do not fit together.
///
/// Reference: `mx.dequantize` (MLX, mode "affine"); Jacob et al. 2018,
/// "Quantization and Training of Neural Networks for Efficient
/// Integer-Arithmetic-Only Inference", eq. 1.
///
/// Hints: mlx-rs has no bitwise ops, but on unsigned words a right shift by
/// `s` is an integer division by `2^s` (`floor_divide`) and a mask of `b` bits
/// is a remainder by `2^b` (`remainder`). Reshape `w` to `O x P x 1` and
/// divide by the `1 x 1 x k` array `[1, 2^bits, 2^(2 bits), ...]`: code `j`
/// of each word lands at `[o, p, j]`, which is input `p * k + j`. Reshape the
/// codes to `O x groups x group_size`, and give scales and biases a trailing
/// axis so they broadcast over each group.
pub fn dequantize_affine(
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    let _ = (w, scales, biases, group_size, bits);
    todo!("day 6: dequantize_affine")
}
