//! Day 5: one Qwen2 decoder layer: pre-norm attention and MLP, each with a
//! residual connection.
//!
//! Week-1 rule: array ops only, plus your own days 2-4
//! (`crate::qwen2_attention`, `crate::layer_norm`, `crate::mlp`).

use crate::attention_grouped::AttentionMask;
use crate::layer_norm::RmsNorm;
use crate::mlp::Qwen2Mlp;
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
    pub fn new(config: &Qwen2Config, weights: &HashMap<String, Array>, layer: i32) -> Result<Self> {
        let p = format!("model.layers.{layer}.");
        let (e, i) = (config.hidden_size, config.intermediate_size);
        let d = config.head_dim();
        let (q_out, kv_out) = (config.num_attention_heads * d, config.num_kv_heads() * d);
        let w = |name: &str, shape: &[i32]| take_weight(weights, &format!("{p}{name}"), shape);
        let bias = |name: &str, n: i32| -> Result<Option<Array>> {
            if config.qkv_bias() {
                w(name, &[n]).map(Some)
            } else {
                Ok(None)
            }
        };
        let attn = Qwen2AttentionWeights {
            q_proj: w("self_attn.q_proj.weight", &[q_out, e])?,
            k_proj: w("self_attn.k_proj.weight", &[kv_out, e])?,
            v_proj: w("self_attn.v_proj.weight", &[kv_out, e])?,
            o_proj: w("self_attn.o_proj.weight", &[e, q_out])?,
            q_proj_bias: bias("self_attn.q_proj.bias", q_out)?,
            k_proj_bias: bias("self_attn.k_proj.bias", kv_out)?,
            v_proj_bias: bias("self_attn.v_proj.bias", kv_out)?,
            o_proj_bias: if config.model_type == "llama" {
                bias("self_attn.o_proj.bias", e)?
            } else {
                None
            },
        };
        Ok(Self {
            input_layernorm: RmsNorm::new(w("input_layernorm.weight", &[e])?, config.rms_norm_eps)?,
            self_attn: Qwen2MultiHeadAttention::new(
                config.num_attention_heads,
                config.num_kv_heads(),
                attn,
                config.rope_theta,
                config.rope_positions(),
            )?,
            post_attention_layernorm: RmsNorm::new(
                w("post_attention_layernorm.weight", &[e])?,
                config.rms_norm_eps,
            )?,
            mlp: Qwen2Mlp::new(
                w("mlp.gate_proj.weight", &[i, e])?,
                w("mlp.up_proj.weight", &[i, e])?,
                w("mlp.down_proj.weight", &[e, i])?,
            )?,
        })
    }

    /// - `x`: `N x L x E`, in the weights' dtype.
    /// - `offset`: the position of the first token (RoPE).
    /// - `mask`: as [`Qwen2MultiHeadAttention::forward`].
    /// - returns: `N x L x E`.
    ///
    /// Errors: those of the layers (a wrong `x` shape, positions past RoPE's
    /// table).
    pub fn forward(&self, x: &Array, offset: i32, mask: AttentionMask) -> Result<Array> {
        let r = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, offset, mask)?;
        let h = x.add(r)?;
        let r = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        Ok(h.add(r)?)
    }
}
