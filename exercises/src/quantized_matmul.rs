//! Day 9: `quantized_matmul` with MLX array ops.
//!
//! `y = x W^T` where `W` (`O x I`) is stored in MLX's affine format (see
//! [`tiny_llm_common::qmatrix`]): `O x (I * bits / 32)` `uint32` words, each
//! packing `32 / bits` codes lowest bits first, and one `scale`, `bias` pair
//! per group of `group_size` inputs, `w = scale * q + bias`.
//!
//! Within one group `g` of a row `o` the sum factors:
//! `sum_i x_i (s q_i + b) = s * (x . q) + b * sum(x)`. The codes `q` are small
//! integers (exact in any float type), the scale is applied once per group
//! instead of once per weight, and `sum(x)` is shared by every row. This is
//! the form the fast kernels use (MLX's Metal `qmv`, llama.cpp's `Q4_1`
//! dot products, and day 10's SIMD kernel), which is why this day writes it
//! rather than "dequantize, then matmul" (day 6 plus one matmul).
//!
//! Rule of the day: array ops only, no `quantize`, `dequantize` or
//! `quantized_matmul` from MLX (they are the fixtures' oracle).
//!
//! Hints: Check your work with `cargo xtask check day9`.

use mlx_rs::Array;
#[allow(unused_imports)]
use mlx_rs::Dtype;
#[allow(unused_imports)]
use tiny_llm_common::{shape_error, Error, Result};

/// Code widths this kit handles.
pub const SUPPORTED_BITS: [i32; 2] = [4, 8];
/// Group sizes this kit handles (MLX's choices).
pub const SUPPORTED_GROUP_SIZES: [i32; 3] = [32, 64, 128];

/// `x W^T` for an MLX affine-quantized `W` (`O x I`), array ops only.
///
/// `y[.., o] = sum_g scales[o, g] * (x[.., g] . q[o, g]) + biases[o, g] * sum(x[.., g])`,
/// where `x[.., g]` and `q[o, g]` are inputs `g * group_size .. (g + 1) * group_size`
/// and `q[o, i]` is bits `bits * (i % k) .. bits * (i % k + 1)` of word
/// `w[o, i / k]`, `k = 32 / bits` (`(word >> (bits * j)) & (2^bits - 1)`).
///
/// - `x`: `N.. x I` (one axis or more), float.
/// - `w`: `O x (I * bits / 32)`, `uint32`.
/// - `scales`, `biases`: `O x (I / group_size)`, float (f32, f16 or bf16).
/// - `group_size`: 32, 64 or 128; `bits`: 4 or 8.
/// - returns `N.. x O` in the promoted dtype of `x`, `scales` and `biases`
///   (as `mx.quantized_matmul`: f32 when any of them is f32 or when f16 meets
///   bf16), computed in f32 and cast once at the end.
///
/// Errors: [`Error::Invalid`] for other `bits` or `group_size`, a `w` that is
/// not `uint32` (the message says `uint32`), or an `x`, `scales` or `biases`
/// that is not a float; [`Error::Shape`] when `w` is not 2-D, when its
/// `I = P * 32 / bits` is not a multiple of `group_size` (the message names
/// `group_size`), when `scales` or `biases` are not `O x (I / group_size)`,
/// or when `x`'s last axis is not `I`.
///
/// Reference: `mx.quantized_matmul(x, w, scales, biases, transpose=True,
/// group_size, bits)` (MLX, mode "affine"); Jacob et al. 2018, "Quantization
/// and Training of Neural Networks for Efficient Integer-Arithmetic-Only
/// Inference", eq. 1.
///
/// Hints: unpack the codes as on day 6 (reshape `w` to `O x P x 1`,
/// `floor_divide` by the `1 x 1 x k` array `[1, 2^bits, 2^(2 bits), ..]`,
/// `remainder` by `2^bits`) and reshape them to `O x G x group_size` f32
/// (`G = I / group_size`). Reshape `x` to `M x G x group_size` (`M` = the
/// product of its leading axes). Put the group axis first on both
/// (`transpose_axes(&[1, 0, 2])`): one batched `matmul` of `G x M x g` by
/// `G x g x O` gives every group's `x . q`. Multiply by the scales as
/// `G x 1 x O`, sum over `G`, add `sum(x)` per group (`M x G`) matmul
/// `biases^T` (`G x O`), reshape to `N.. x O`. The output dtype is
/// `Dtype::from_promoting_types` of the three inputs' dtypes. Check every
/// argument first, with messages that name it (`x`, `w`, `scales`,
/// `biases`, `bits`, `group_size`).
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    let _ = (x, w, scales, biases, group_size, bits);
    todo!("day 9: quantized_matmul")
}
