//! Day 3: Qwen2's attention layer: q/k/v projections with biases, RoPE on
//! queries and keys, grouped-query attention, the output projection.
//!
//! Week-1 rule: array ops only, plus your own `crate::basics::linear`,
//! `crate::positional_encoding::RoPE` and
//! `crate::attention_grouped::{causal_mask, scaled_dot_product_attention_grouped}`.
//!
//! Hints: Check your work with `cargo xtask check day3`.

use crate::attention_grouped::AttentionMask;
#[allow(unused_imports)]
use crate::attention_grouped::{causal_mask, scaled_dot_product_attention_grouped};
#[allow(unused_imports)]
use crate::basics::linear;
use crate::positional_encoding::RoPE;
use mlx_rs::Array;
#[allow(unused_imports)]
use tiny_llm_common::{shape_error, Error, Result};

/// The checkpoint tensors of one attention layer (given; defined in
/// `tiny_llm_common` so that every day passes the same type).
pub use tiny_llm_common::Qwen2AttentionWeights;

/// Qwen2 (and Llama) self-attention with grouped-query heads and RoPE.
///
/// Reference: `mlx_lm.models.qwen2.Attention` (and `llama.Attention`);
/// Hugging Face `Qwen2Attention`.
#[derive(Debug, Clone)]
pub struct Qwen2MultiHeadAttention {
    /// `E`, the model width.
    pub hidden_size: i32,
    /// `H_q`, query heads.
    pub num_heads: i32,
    /// `H_kv`, key/value heads (divides `H_q`).
    pub num_kv_heads: i32,
    /// `D`, the width of one head (`q_proj` rows / `H_q`).
    pub head_dim: i32,
    /// `q_proj.weight`, `H_q*D x E`.
    pub q_proj: Array,
    /// `k_proj.weight`, `H_kv*D x E`.
    pub k_proj: Array,
    /// `v_proj.weight`, `H_kv*D x E`.
    pub v_proj: Array,
    /// `o_proj.weight`, `E x H_q*D`.
    pub o_proj: Array,
    /// `q_proj.bias`, `H_q*D`.
    pub q_proj_bias: Option<Array>,
    /// `k_proj.bias`, `H_kv*D`.
    pub k_proj_bias: Option<Array>,
    /// `v_proj.bias`, `H_kv*D`.
    pub v_proj_bias: Option<Array>,
    /// `o_proj.bias`, `E`.
    pub o_proj_bias: Option<Array>,
    /// The rotary embedding of queries and keys: `RoPE::new(D, max_seq_len,
    /// rope_theta, false)` (non-traditional, "rotate_half").
    pub rope: RoPE,
}

impl Qwen2MultiHeadAttention {
    /// Builds the layer from its checkpoint tensors, checking every shape,
    /// and its RoPE (`dims = D`, positions `0..max_seq_len`, base
    /// `rope_theta`, non-traditional).
    ///
    /// `E` and `D` are read from `q_proj` (`H_q*D x E`).
    ///
    /// Errors: [`Error::Invalid`] when `num_heads`/`num_kv_heads` are not
    /// positive or `H_kv` does not divide `H_q`, and RoPE's errors;
    /// [`Error::Shape`] naming the tensor (e.g. `"k_proj.weight"`, built
    /// with [`shape_error`]) whose shape is wrong: the weights must be
    /// `[H_q*D, E]`, `[H_kv*D, E]`, `[H_kv*D, E]`, `[E, H_q*D]`, the biases
    /// (when present) `[H_q*D]`, `[H_kv*D]`, `[H_kv*D]`, `[E]`.
    ///
    /// Hints: build the RoPE here with `RoPE::new(d, max_seq_len, rope_theta,
    /// false)` (your day-2 code).
    pub fn new(
        num_heads: i32,
        num_kv_heads: i32,
        weights: Qwen2AttentionWeights,
        rope_theta: f32,
        max_seq_len: i32,
    ) -> Result<Self> {
        let _ = (num_heads, num_kv_heads, weights, rope_theta, max_seq_len);
        todo!("day 3: Qwen2MultiHeadAttention::new")
    }

    /// Self-attention of `x` over itself, tokens at positions
    /// `offset..offset + L`.
    ///
    /// - `x`: `N x L x E`, float (f32, f16, bf16; the weights' dtype).
    /// - `offset`: the position of the first token (RoPE).
    /// - `mask`: [`AttentionMask::Causal`] for a prompt (an `L x L`
    ///   [`causal_mask`] in `x`'s dtype), or an additive array broadcastable
    ///   to `N x H_q x L x L`.
    /// - returns: `N x L x E`.
    ///
    /// Errors: [`Error::Shape`] when `x` is not `N x L x E`; RoPE's errors
    /// when the positions exceed its `seq_len`.
    ///
    /// Hints: as `mlx_lm.models.qwen2.Attention.__call__`: project with
    /// [`linear`] (with the biases), reshape `N x L x H*D` to `N x L x H x D`,
    /// apply `self.rope` to queries and keys (RoPE takes `N x L x H x D`, so
    /// before the transpose), transpose to `N x H x L x D`, attend with
    /// [`scaled_dot_product_attention_grouped`] (scale `1/sqrt(D)`),
    /// transpose back, reshape to `N x L x H_q*D`, project with `o_proj`.
    pub fn forward(&self, x: &Array, offset: i32, mask: AttentionMask) -> Result<Array> {
        let _ = (x, offset, mask);
        todo!("day 3: Qwen2MultiHeadAttention::forward")
    }
}
