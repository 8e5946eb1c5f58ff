//! Day 10: the fast CPU kernel (SIMD chosen at run time, threads over output
//! rows, matvec for decode, tiled for prefill). No MLX in this module.
//! (Skeleton: the day-10 engineer writes it.)

use tiny_llm_common::qmatrix::{KernelError, QuantizedMatrix, Scale};

/// `out = x W^T`, as [`crate::qmatmul_scalar::qmatmul_scalar`], fast.
pub fn qmatmul<S: Scale>(
    _x: &[f32],
    _m: usize,
    _w: &QuantizedMatrix<'_, S>,
    _out: &mut [f32],
) -> Result<(), KernelError> {
    todo!("day 10: qmatmul")
}
