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

use mlx_rs::{Array, Dtype};
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
pub fn dequantize_affine(
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
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
            "quantized weight must be uint32, got {:?}",
            w.dtype()
        )));
    }
    if !scales.dtype().is_float() || biases.dtype() != scales.dtype() {
        return Err(Error::Invalid(format!(
            "scales and biases must share a float dtype, got {:?} and {:?}",
            scales.dtype(),
            biases.dtype()
        )));
    }
    if w.ndim() != 2 {
        return Err(shape_error("quantized weight", w, "[O, I * bits / 32]"));
    }
    let per_word = 32 / bits;
    let (rows, words) = (w.dim(0), w.dim(1));
    let cols = words * per_word;
    if cols % group_size != 0 {
        return Err(shape_error(
            "quantized weight",
            w,
            &format!("[O, P] with P * {per_word} a multiple of group_size {group_size}"),
        ));
    }
    let groups = cols / group_size;
    let want = format!("[{rows}, {groups}] (O, I / group_size)");
    if scales.shape() != [rows, groups] {
        return Err(shape_error("scales", scales, &want));
    }
    if biases.shape() != [rows, groups] {
        return Err(shape_error("biases", biases, &want));
    }

    // mlx-rs has no bitwise ops: on unsigned words, `x >> s` is `x / 2^s`
    // (integer division) and `x & (2^b - 1)` is `x % 2^b`.
    let shifts: Vec<u32> = (0..per_word).map(|j| 1u32 << (bits * j)).collect();
    let shifts = Array::from_slice(&shifts, &[1, 1, per_word]);
    let mask = Array::from_slice(&[1u32 << bits], &[1]);
    let codes = w
        .reshape(&[rows, words, 1])?
        .floor_divide(&shifts)?
        .remainder(&mask)?; // O x P x per_word: code j of each word
    let codes = codes
        .reshape(&[rows, groups, group_size])?
        .as_dtype(Dtype::Float32)?;
    let s = scales.as_dtype(Dtype::Float32)?.expand_dims(-1)?;
    let b = biases.as_dtype(Dtype::Float32)?.expand_dims(-1)?;
    let dense = codes.multiply(&s)?.add(&b)?.reshape(&[rows, cols])?;
    Ok(dense.as_dtype(scales.dtype())?)
}
