//! Day 10: the kernel meets MLX: a quantized linear layer and embedding
//! (skeleton: the day-10 engineer writes it).

use mlx_rs::Array;
use tiny_llm_common::{Linear, Result};

/// `x W^T + b` for a quantized [`Linear`], through [`crate::qmatmul_simd::qmatmul`].
///
/// - `x`: `N.. x I` f32; returns `N.. x O` f32.
pub fn quantized_linear(_x: &Array, _layer: &Linear) -> Result<Array> {
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
    pub fn new(_table: Linear) -> Result<Self> {
        todo!("day 10: QuantizedEmbedding::new")
    }

    /// Gathers and dequantizes the rows of `ids` (`N x L` int32):
    /// `N x L x E`, f32.
    pub fn forward(&self, _ids: &Array) -> Result<Array> {
        todo!("day 10: QuantizedEmbedding::forward")
    }

    /// The tied output layer: `x` `N.. x E` -> `N.. x vocab`, the table as a
    /// quantized matmul.
    pub fn as_linear(&self, _x: &Array) -> Result<Array> {
        todo!("day 10: QuantizedEmbedding::as_linear")
    }
}
