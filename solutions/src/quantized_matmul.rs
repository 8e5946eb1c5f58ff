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

use mlx_rs::{Array, Dtype};
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
/// Implementation: the codes are unpacked as day 6 does (an integer division
/// by `[1, 2^bits, ..]` and a remainder by `2^bits`) to `G x O x group_size`
/// f32, `x` becomes `G x M x group_size`, one batched matmul gives the
/// `G x M x O` group dot products, which are scaled and summed over `G`; the
/// bias term is one `M x G` by `G x O` matmul of the group sums of `x`.
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    let (rows, cols, groups) = check_inputs(x, w, scales, biases, group_size, bits)?;
    let out_dtype = Dtype::from_promoting_types(
        x.dtype(),
        Dtype::from_promoting_types(scales.dtype(), biases.dtype()),
    );
    let per_word = 32 / bits;
    let words = cols / per_word;

    // Unpack: on unsigned words `>> s` is `/ 2^s` and `& (2^b - 1)` is `% 2^b`.
    let shifts: Vec<u32> = (0..per_word).map(|j| 1u32 << (bits * j)).collect();
    let shifts = Array::from_slice(&shifts, &[1, 1, per_word]);
    let modulus = Array::from_slice(&[1u32 << bits], &[1]);
    let codes = w
        .reshape(&[rows, words, 1])?
        .floor_divide(&shifts)?
        .remainder(&modulus)? // O x words x per_word: input p * per_word + j
        .as_dtype(Dtype::Float32)?
        .reshape(&[rows, groups, group_size])?
        .transpose_axes(&[1, 0, 2])?; // G x O x g

    // x as M x I rows, then G x M x g.
    let lead: Vec<i32> = x.shape()[..x.ndim() - 1].to_vec();
    let m: i32 = lead.iter().product();
    let xg = x
        .as_dtype(Dtype::Float32)?
        .reshape(&[m, groups, group_size])?;
    let dots = xg
        .transpose_axes(&[1, 0, 2])?
        .matmul(&codes.swap_axes(-1, -2)?)?; // G x M x O: x . q per group

    let s = scales
        .as_dtype(Dtype::Float32)?
        .transpose()?
        .expand_dims(1)?; // G x 1 x O
    let b = biases.as_dtype(Dtype::Float32)?.transpose()?; // G x O
    let scaled = dots.multiply(&s)?.sum_axis(0, false)?; // M x O
    let xsum = xg.sum_axis(-1, false)?; // M x G
    let y = scaled.add(&xsum.matmul(&b)?)?;

    let mut out_shape = lead;
    out_shape.push(rows);
    Ok(y.reshape(&out_shape)?.as_dtype(out_dtype)?)
}

/// Checks every argument; returns `(O, I, I / group_size)`.
fn check_inputs(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<(i32, i32, i32)> {
    if !SUPPORTED_BITS.contains(&bits) {
        return Err(Error::Invalid(format!("bits must be 4 or 8, got {bits}")));
    }
    if !SUPPORTED_GROUP_SIZES.contains(&group_size) {
        return Err(Error::Invalid(format!(
            "group_size must be 32, 64 or 128, got {group_size}"
        )));
    }
    if w.dtype() != Dtype::Uint32 {
        return Err(Error::Invalid(format!(
            "quantized weight w must be uint32, got {:?}",
            w.dtype()
        )));
    }
    for (what, a) in [("x", x), ("scales", scales), ("biases", biases)] {
        if !a.dtype().is_float() {
            return Err(Error::Invalid(format!(
                "{what} must be a float array (f32, f16 or bf16), got {:?}",
                a.dtype()
            )));
        }
    }
    if w.ndim() != 2 {
        return Err(shape_error("quantized weight w", w, "[O, I * bits / 32]"));
    }
    let per_word = 32 / bits;
    let (rows, cols) = (w.dim(0), w.dim(1) * per_word);
    if cols % group_size != 0 {
        return Err(shape_error(
            "quantized weight w",
            w,
            &format!(
                "[O, P] with I = P * {per_word} (32 / bits) a multiple of group_size {group_size}"
            ),
        ));
    }
    let groups = cols / group_size;
    let want = format!("[{rows}, {groups}] (O, I / group_size with I = {cols})");
    if scales.shape() != [rows, groups] {
        return Err(shape_error("scales", scales, &want));
    }
    if biases.shape() != [rows, groups] {
        return Err(shape_error("biases", biases, &want));
    }
    if x.ndim() == 0 || x.dim(-1) != cols {
        return Err(shape_error(
            "x",
            x,
            &format!("[N.., {cols}] (I = {} words x {per_word} codes)", w.dim(1)),
        ));
    }
    Ok((rows, cols, groups))
}
