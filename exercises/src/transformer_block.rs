//! Day 5: one Qwen2 decoder layer: pre-norm attention and MLP, each with a
//! residual connection.
//!
//! Week-1 rule: array ops only, plus your own days 2-4
//! (`crate::qwen2_attention`, `crate::layer_norm`, `crate::mlp`).
//!
//! Hints: Check your work with `cargo xtask check day5`.

use crate::attention_grouped::AttentionMask;
use crate::layer_norm::RmsNorm;
use crate::mlp::Qwen2Mlp;
#[allow(unused_imports)]
use crate::qwen2_attention::{Qwen2AttentionWeights, Qwen2MultiHeadAttention};
use mlx_rs::Array;
use std::collections::HashMap;
// `Error` is named by the doc comments.
#[allow(unused_imports)]
use tiny_llm_common::Error;
use tiny_llm_common::{Qwen2Config, Result};

/// `weights[key]`, checked to be a float array of shape `shape` (given;
/// defined in `tiny_llm_common` so that every day uses the same function).
pub use tiny_llm_common::take_weight;

/// One decoder layer of Qwen2 (and Llama):
///
/// ```text
/// h   = x + self_attn(input_layernorm(x))
/// out = h + mlp(post_attention_layernorm(h))
/// ```
///
/// Reference: `mlx_lm.models.qwen2.TransformerBlock`; Xiong et al. 2020,
/// "On Layer Normalization in the Transformer Architecture" (pre-norm).
#[derive(Debug, Clone)]
pub struct Qwen2TransformerBlock {
    /// RMSNorm before attention (`input_layernorm.weight`, `E`).
    pub input_layernorm: RmsNorm,
    /// Self-attention (`self_attn.*`).
    pub self_attn: Qwen2MultiHeadAttention,
    /// RMSNorm before the MLP (`post_attention_layernorm.weight`, `E`).
    pub post_attention_layernorm: RmsNorm,
    /// The gated MLP (`mlp.*`).
    pub mlp: Qwen2Mlp,
}

impl Qwen2TransformerBlock {
    /// Builds layer `layer` from the weights under `model.layers.{layer}.`:
    /// `input_layernorm.weight`, `self_attn.{q,k,v,o}_proj.weight`,
    /// `self_attn.{q,k,v}_proj.bias` (only when `config.qkv_bias()`;
    /// `self_attn.o_proj.bias` too for Llama with `attention_bias`),
    /// `post_attention_layernorm.weight`, `mlp.{gate,up,down}_proj.weight`.
    ///
    /// The weights are used in the dtype they come in. RoPE covers
    /// `config.rope_positions()` positions (`max_position_embeddings`,
    /// capped so that a huge claimed context cannot exhaust memory) with
    /// base `config.rope_theta`.
    ///
    /// Errors: a missing, non-float or wrongly shaped weight, naming its key
    /// ([`take_weight`]); [`Error::Invalid`] for a bad head configuration.
    ///
    /// Hints: with `E = config.hidden_size`, `I = config.intermediate_size`,
    /// `D = config.head_dim()`, the shapes are q `[H_q*D, E]`, k and v
    /// `[H_kv*D, E]`, o `[E, H_q*D]`, norms `[E]`, gate/up `[I, E]`, down
    /// `[E, I]`; fetch each with [`take_weight`] and build your day-3 and
    /// day-4 layers (`config.num_kv_heads()`, `config.rms_norm_eps`).
    pub fn new(config: &Qwen2Config, weights: &HashMap<String, Array>, layer: i32) -> Result<Self> {
        let _ = (config, weights, layer);
        todo!("day 5: Qwen2TransformerBlock::new")
    }

    /// - `x`: `N x L x E`, in the weights' dtype.
    /// - `offset`: the position of the first token (RoPE).
    /// - `mask`: as [`Qwen2MultiHeadAttention::forward`].
    /// - returns: `N x L x E`.
    ///
    /// Errors: those of the layers (a wrong `x` shape, positions past RoPE's
    /// table).
    ///
    /// Hints: `mlx_lm.models.qwen2.TransformerBlock.__call__`, four lines.
    pub fn forward(&self, x: &Array, offset: i32, mask: AttentionMask) -> Result<Array> {
        let _ = (x, offset, mask);
        todo!("day 5: Qwen2TransformerBlock::forward")
    }
}
