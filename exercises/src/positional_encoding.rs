//! Day 2: rotary positional embedding (RoPE).
//!
//! Each pair of features of a head is rotated by an angle proportional to the
//! token's position, so that `q . k` depends on the *relative* position only.
//!
//! Week-1 rule: array ops only (`arange`, `exp`, `cos`, `sin`, `multiply`,
//! `reshape`, `try_index`, `concatenate`, `stack`, ...). No
//! `mlx_rs::fast::rope`, no `mlx_rs::nn`.
//!
//! Hints: Check your work with `cargo xtask check day2`.

use mlx_rs::Array;
#[allow(unused_imports)]
use tiny_llm_common::{expect_min_ndim, shape_error, Error, Result};

/// Rotary positional embedding with precomputed `cos`/`sin` tables.
///
/// For the pair `(x1, x2)` with frequency index `i` (`0 <= i < D/2`) at
/// position `p`, with `theta_i = base^(-2i/D)`:
/// `(x1, x2) -> (x1 cos(p theta_i) - x2 sin(p theta_i), x1 sin(p theta_i) + x2 cos(p theta_i))`.
///
/// - `traditional = true`: the pairs are interleaved, `(x[2i], x[2i+1])`
///   (the RoFormer paper, GPT-J).
/// - `traditional = false`: the pairs are the two halves, `(x[i], x[i + D/2])`
///   (GPT-NeoX, Hugging Face Qwen2/Llama: "rotate_half").
///
/// Reference: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary
/// Position Embedding", eq. 34; `mx.fast.rope`.
#[derive(Debug, Clone)]
pub struct RoPE {
    /// `D`, the rotated head width (even).
    pub dims: i32,
    /// The number of positions the tables cover (`0..seq_len`).
    pub seq_len: i32,
    /// `theta`'s base (10000 in the paper, 1e6 for Qwen2).
    pub base: f32,
    /// Interleaved pairs (`true`) or halves (`false`).
    pub traditional: bool,
    /// `cos(p * theta_i)`, `seq_len x D/2`, float32.
    pub cos: Array,
    /// `sin(p * theta_i)`, `seq_len x D/2`, float32.
    pub sin: Array,
}

impl RoPE {
    /// Precomputes the `seq_len x D/2` float32 tables of `cos(p theta_i)`
    /// and `sin(p theta_i)` for `p = 0..seq_len`, `theta_i = base^(-2i/D)`.
    ///
    /// Errors: [`Error::Invalid`] when `dims` is not positive and even,
    /// `seq_len` is not positive, or `base` is not finite and > 0.
    ///
    /// Hints: `theta_i = exp(-i * ln(base) / (D/2))` for `i` in
    /// `arange::<_, f32>(0, D/2, 1)` (`mlx_rs::ops::arange`); the angles are
    /// the outer product of the positions (`seq_len x 1`) and the
    /// frequencies (`1 x D/2`), a broadcast `multiply`.
    pub fn new(dims: i32, seq_len: i32, base: f32, traditional: bool) -> Result<Self> {
        let _ = (dims, seq_len, base, traditional);
        todo!("day 2: RoPE::new")
    }

    /// Rotates `x` for positions `offset..offset + L`.
    ///
    /// - `x`: `N.. x L x H x D` (batch dims, sequence, heads, head width),
    ///   any float dtype.
    /// - `offset`: the position of the first token (the number of tokens
    ///   before it, e.g. in a KV cache).
    /// - returns: same shape and dtype as `x` (compute in float32 and cast
    ///   back).
    ///
    /// Errors: [`Error::Shape`] when `x` has fewer than 3 dims or
    /// `D != dims`; [`Error::Invalid`] when `offset < 0` or
    /// `offset + L > seq_len`.
    ///
    /// Hints: take rows `offset..offset + L` of the tables
    /// (`self.cos.try_index(offset..offset + l)?`, from
    /// `mlx_rs::ops::indexing::TryIndexOp`) and reshape them to
    /// `L x 1 x D/2` so they broadcast over heads and batch.
    /// Halves: `x1 = x[.., :D/2]`, `x2 = x[.., D/2:]`
    /// (`x.try_index((Ellipsis, 0..half))?`), concatenate the two rotated
    /// halves on the last axis. Interleaved: reshape `[.., D]` to
    /// `[.., D/2, 2]`, take `[.., 0]` and `[.., 1]`, `stack` the
    /// results on a new last axis and reshape back to `[.., D]`.
    pub fn forward(&self, x: &Array, offset: i32) -> Result<Array> {
        let _ = (x, offset);
        todo!("day 2: RoPE::forward")
    }
}
