//! Day 10: the kernel meets MLX: a quantized linear layer and a quantized
//! embedding table, computed by [`crate::qmatmul_simd::qmatmul`] on the
//! host slices of MLX's buffers (through the given
//! [`tiny_llm_common::cpu_bridge`]).
//!
//! Reference: mlx-lm / `mlx.nn.QuantizedLinear` and
//! `mlx.nn.QuantizedEmbedding` (`__call__` gathers the packed rows, their
//! scales and biases, then `mx.dequantize`; `as_linear` is
//! `mx.quantized_matmul` with the table).

use mlx_rs::Array;
use tiny_llm_common::{Linear, Result};

/// `x W^T + b` for a quantized [`Linear`], through [`crate::qmatmul_simd::qmatmul`].
///
/// - `x`: `N.. x I` f32; returns `N.. x O` f32.
/// - `layer`: a quantized `O x I` layer (4 or 8 bits, groups of 32, 64 or
///   128, scales and biases f32, f16 or bf16), with or without a bias.
///
/// `x` (another float dtype is cast to f32), the packed weight, the scales
/// and the biases are read in place through the bridge (one sync for `x`;
/// the weights are evaluated once, on their first call); the output buffer
/// becomes the result array (`cpu_bridge::from_vec`: MLX's CPU allocator
/// copies it once); the bias is added by MLX.
///
/// Errors: [`Error::Invalid`] for a dense layer, a non-float `x`, or scales
/// and biases of different dtypes; [`Error::Shape`] when `x`'s last
/// dimension is not `I`.
///
/// Hints: match `&layer.weight` for `LinearWeight::Quantized { w, scales,
/// biases, group_size, bits }`; check `x.dim(-1)`; read `x` with
/// `cpu_bridge::host_f32` and the weight, scales and biases with
/// `cpu_bridge::host` (no copies: they borrow MLX's buffers); build a
/// `QuantizedMatrix` over the slices (scales as `f32`, `half::bf16` or
/// `half::f16` by `scales.dtype()`), call `cpu_bridge::crossing()` and your
/// `qmatmul` into a `vec![0f32; M * O]`, wrap it with
/// `cpu_bridge::from_vec` in `x`'s shape with the last dimension `O`, then
/// add the bias.
pub fn quantized_linear(x: &Array, layer: &Linear) -> Result<Array> {
    let _ = (x, layer);
    todo!("day 10: quantized_linear")
}

/// An embedding table stored quantized (a tied model's `embed_tokens`, also
/// its `lm_head`).
#[derive(Debug, Clone)]
pub struct QuantizedEmbedding {
    /// The table as a quantized `vocab x E` layer (no bias).
    pub table: Linear,
}

impl QuantizedEmbedding {
    /// Wraps a quantized `vocab x E` [`Linear`] (Errors: a dense one, or
    /// one with a bias).
    pub fn new(table: Linear) -> Result<Self> {
        let _ = table;
        todo!("day 10: QuantizedEmbedding::new")
    }

    /// Gathers and dequantizes the rows of `ids` (`N x L` int32):
    /// `N x L x E`, f32.
    ///
    /// The packed rows, scales and biases of `ids` are gathered (MLX `take`
    /// on axis 0) and dequantized with day 6's `dequantize_affine`, the
    /// scales and biases cast to f32 first (exact for f16 and bf16), so the
    /// rows are `s * q + b` in f32, not rounded to the scales' dtype (mlx-lm
    /// with its parameters in f32). Any shape of integer ids works; ids
    /// outside `0..vocab` are not checked (as day 5).
    ///
    /// Errors: [`Error::Invalid`] when `ids` is not an integer array.
    ///
    /// Hints: `ids.reshape(&[-1])`, then `take_axis(&flat, 0)` of the packed
    /// weight, the scales and the biases; scales and biases
    /// `as_dtype(Float32)`; your day-6 `dequantize_affine` on those rows;
    /// reshape to `ids`' shape plus `E`.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        let _ = (self, ids);
        todo!("day 10: QuantizedEmbedding::forward")
    }

    /// The tied output layer: `x` `N.. x E` -> `N.. x vocab`, the table as a
    /// quantized matmul.
    ///
    /// Errors: those of [`quantized_linear`].
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        let _ = (self, x);
        todo!("day 10: QuantizedEmbedding::as_linear")
    }
}
