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
