//! Day 9: the scalar CPU kernel over packed weights, the oracle of day 10
//! (skeleton: the day-9 engineer writes it). No MLX in this module.

use tiny_llm_common::qmatrix::{KernelError, QuantizedMatrix, Scale};

/// `out = x W^T`: `x` `m x w.cols` f32, `out` `m x w.rows` f32, row-major.
pub fn qmatmul_scalar<S: Scale>(
    _x: &[f32],
    _m: usize,
    _w: &QuantizedMatrix<'_, S>,
    _out: &mut [f32],
) -> Result<(), KernelError> {
    todo!("day 9: qmatmul_scalar")
}
