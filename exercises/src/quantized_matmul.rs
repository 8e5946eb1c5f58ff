//! Day 9: `quantized_matmul` with MLX array ops (skeleton: the day-9
//! engineer writes it).

use mlx_rs::Array;
use tiny_llm_common::Result;

/// `x W^T` for an MLX affine-quantized `W` (`O x I`), array ops only.
///
/// - `x`: `N.. x I`, float; `w`: `O x (I * bits / 32)` `uint32`;
///   `scales`, `biases`: `O x (I / group_size)`.
/// - returns `N.. x O`.
pub fn quantized_matmul(
    _x: &Array,
    _w: &Array,
    _scales: &Array,
    _biases: &Array,
    _group_size: i32,
    _bits: i32,
) -> Result<Array> {
    todo!("day 9: quantized_matmul")
}
