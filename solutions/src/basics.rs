//! Day 1: the two building blocks every layer uses, `softmax` and `linear`.
//!
//! Week-1 rule: array ops only (`matmul`, `exp`, `max_axis`, `sum_axis`,
//! `transpose`, ...). No `mlx_rs::fast`, no `mlx_rs::nn`, no `ops::softmax`.

use mlx_rs::{Array, Dtype};
use tiny_llm_common::{shape_error, Result};

/// Softmax along `axis`: `exp(x - max) / sum(exp(x - max))`.
///
/// Subtract the maximum along `axis` before `exp` so large inputs cannot
/// overflow (softmax is shift-invariant, so the result is the same).
/// Compute half-precision inputs in f32 and cast the result back.
///
/// - `x`: any shape, any float dtype.
/// - `axis`: the axis to normalise (negative counts from the end).
/// - returns: same shape and dtype as `x`; entries along `axis` sum to 1.
///
/// Reference: `mx.softmax` (MLX); Goodfellow et al., *Deep Learning*, 4.1.
pub fn softmax(x: &Array, axis: i32) -> Result<Array> {
    let dtype = x.dtype();
    let xf = x.as_dtype(Dtype::Float32)?;
    let shifted = xf.subtract(xf.max_axis(axis, true)?)?;
    let e = shifted.exp()?;
    let out = e.divide(e.sum_axis(axis, true)?)?;
    Ok(out.as_dtype(dtype)?)
}

/// A fully connected layer: `x @ w^T + b`.
///
/// - `x`: `N.. x I` (any leading dims).
/// - `w`: `O x I`, the checkpoint layout (PyTorch/MLX `Linear.weight`).
/// - `b`: optional `O`.
/// - returns: `N.. x O`, in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `w` is not 2-D, or its
/// input size differs from `x`'s last dimension, or `b` is not `[O]`
/// (build it with [`shape_error`]).
///
/// Reference: `mlx.nn.Linear`.
pub fn linear(x: &Array, w: &Array, b: Option<&Array>) -> Result<Array> {
    if w.ndim() != 2 {
        return Err(shape_error(
            "linear weight",
            w,
            "[out_features, in_features]",
        ));
    }
    if x.ndim() == 0 || x.dim(-1) != w.dim(1) {
        return Err(shape_error(
            "linear input",
            x,
            &format!("[.., {}] (last dim = weight's in_features)", w.dim(1)),
        ));
    }
    let y = x.matmul(w.transpose()?)?;
    match b {
        Some(b) if b.shape() != [w.dim(0)] => {
            Err(shape_error("linear bias", b, &format!("[{}]", w.dim(0))))
        }
        Some(b) => Ok(y.add(b)?),
        None => Ok(y),
    }
}
