//! Day 4: SiLU and Qwen2's gated MLP (SwiGLU).
//!
//! Week-1 rule: array ops only (`exp`, `negative`, `divide`, ...) and
//! your day-1 `crate::basics::linear`. No `mlx_rs::nn`, no `ops::sigmoid`.
//!
//! Hints: Check your work with `cargo xtask check day4`.

#[allow(unused_imports)]
use crate::basics::linear;
#[allow(unused_imports)]
use mlx_rs::{Array, Dtype};
#[allow(unused_imports)]
use tiny_llm_common::{shape_error, Result};

/// SiLU (swish): `silu(x) = x * sigmoid(x) = x / (1 + exp(-x))`, computed in
/// float32 and cast back.
///
/// Stable for every finite `x`: large `|x|` gives `x` or `-0`, never `inf`
/// or NaN. The form `x / (1 + exp(-x))` is both the fastest and stable: for
/// very negative `x`, `exp(-x)` overflows to `inf` and `x / inf` is `-0`;
/// for large `x`, `exp(-x)` is 0 and the result is `x`. It takes 4 array ops
/// (a cast, `negative`, `exp` with `+ 1`, `divide`); the textbook-stable
/// select form with `e = exp(-|x|)` (`sigmoid = 1/(1+e)` for `x >= 0`,
/// `e/(1+e)` below) gives the same values with 9 ops, about 1.5x slower on
/// MLX's CPU backend, and silu runs on every `L x I` MLP activation. Avoid
/// `x * exp(x) / (1 + exp(x))`: `inf / inf` is NaN for large `x`.
///
/// - `x`: any shape, any float dtype.
/// - returns: same shape and dtype.
///
/// Reference: Elfwing et al. 2017, "Sigmoid-Weighted Linear Units for Neural
/// Network Function Approximation in Reinforcement Learning"; `mlx.nn.silu`.
///
/// Hints: `x.as_dtype(Dtype::Float32)?`, then `negative()`, `exp()`,
/// `add(Array::from_f32(1.0))?` and `divide`; cast back with
/// `as_dtype(x.dtype())`.
pub fn silu(x: &Array) -> Result<Array> {
    let _ = x;
    todo!("day 4: silu")
}

/// Qwen2's MLP: `down_proj(silu(gate_proj(x)) * up_proj(x))`, no biases.
///
/// Reference: Shazeer 2020, "GLU Variants Improve Transformer" (SwiGLU);
/// `mlx_lm.models.qwen2.MLP`.
#[derive(Debug, Clone)]
pub struct Qwen2Mlp {
    /// `gate_proj.weight`, `I x E`.
    pub gate_proj: Array,
    /// `up_proj.weight`, `I x E`.
    pub up_proj: Array,
    /// `down_proj.weight`, `E x I`.
    pub down_proj: Array,
}

impl Qwen2Mlp {
    /// Builds the MLP, checking the weights' shapes (`E`, `I` read from
    /// `gate_proj`): `gate_proj` `[I, E]`, `up_proj` `[I, E]`, `down_proj`
    /// `[E, I]`.
    ///
    /// Errors: [`tiny_llm_common::Error::Shape`] naming the weight whose
    /// shape is wrong (e.g. `"down_proj.weight"`, with [`shape_error`]).
    pub fn new(gate_proj: Array, up_proj: Array, down_proj: Array) -> Result<Self> {
        let _ = (gate_proj, up_proj, down_proj);
        todo!("day 4: Qwen2Mlp::new")
    }

    /// - `x`: `N.. x E`.
    /// - returns: `N.. x E`, in `x`'s dtype.
    ///
    /// Errors: [`tiny_llm_common::Error::Shape`] when `x`'s last dimension is
    /// not `E` ([`linear`] checks it).
    ///
    /// Hints: three [`linear`]s without bias, [`silu`] on the gate, an
    /// element-wise `multiply` of gate and up.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let _ = x;
        todo!("day 4: Qwen2Mlp::forward")
    }
}
