//! Day 3: Qwen2's attention layer: q/k/v projections with biases, RoPE on
//! queries and keys, grouped-query attention, the output projection.
//!
//! Week-1 rule: array ops only, plus your own `crate::basics::linear`,
//! `crate::positional_encoding::RoPE` and
//! `crate::attention_grouped::{causal_mask, scaled_dot_product_attention_grouped}`.

use crate::attention_grouped::{causal_mask, scaled_dot_product_attention_grouped, AttentionMask};
use crate::basics::linear;
use crate::positional_encoding::RoPE;
use mlx_rs::Array;
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
    pub fn new(
        num_heads: i32,
        num_kv_heads: i32,
        weights: Qwen2AttentionWeights,
        rope_theta: f32,
        max_seq_len: i32,
    ) -> Result<Self> {
        if num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 {
            return Err(Error::Invalid(format!(
                "num_kv_heads ({num_kv_heads}) must be positive and divide num_heads ({num_heads})"
            )));
        }
        let w = weights;
        if w.q_proj.ndim() != 2 || w.q_proj.dim(0) % num_heads != 0 {
            return Err(shape_error("q_proj.weight", &w.q_proj, "[H_q*D, E]"));
        }
        let (d, e) = (w.q_proj.dim(0) / num_heads, w.q_proj.dim(1));
        let (q_out, kv_out) = (num_heads * d, num_kv_heads * d);
        for (name, t, want) in [
            ("q_proj.weight", &w.q_proj, [q_out, e]),
            ("k_proj.weight", &w.k_proj, [kv_out, e]),
            ("v_proj.weight", &w.v_proj, [kv_out, e]),
            ("o_proj.weight", &w.o_proj, [e, q_out]),
        ] {
            if t.shape() != want {
                return Err(shape_error(name, t, &format!("{want:?}")));
            }
        }
        for (name, t, want) in [
            ("q_proj.bias", &w.q_proj_bias, q_out),
            ("k_proj.bias", &w.k_proj_bias, kv_out),
            ("v_proj.bias", &w.v_proj_bias, kv_out),
            ("o_proj.bias", &w.o_proj_bias, e),
        ] {
            if let Some(t) = t {
                if t.shape() != [want] {
                    return Err(shape_error(name, t, &format!("[{want}]")));
                }
            }
        }
        let rope = RoPE::new(d, max_seq_len, rope_theta, false)?;
        Ok(Self {
            hidden_size: e,
            num_heads,
            num_kv_heads,
            head_dim: d,
            q_proj: w.q_proj,
            k_proj: w.k_proj,
            v_proj: w.v_proj,
            o_proj: w.o_proj,
            q_proj_bias: w.q_proj_bias,
            k_proj_bias: w.k_proj_bias,
            v_proj_bias: w.v_proj_bias,
            o_proj_bias: w.o_proj_bias,
            rope,
        })
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
    pub fn forward(&self, x: &Array, offset: i32, mask: AttentionMask) -> Result<Array> {
        let e = self.hidden_size;
        if x.ndim() != 3 || x.dim(-1) != e {
            return Err(shape_error("x", x, &format!("[N, L, {e}]")));
        }
        let (n, l, d) = (x.dim(0), x.dim(1), self.head_dim);
        // N x L x (H*D) -> N x L x H x D: RoPE wants the sequence before the heads.
        let q = linear(x, &self.q_proj, self.q_proj_bias.as_ref())?.reshape(&[
            n,
            l,
            self.num_heads,
            d,
        ])?;
        let k = linear(x, &self.k_proj, self.k_proj_bias.as_ref())?.reshape(&[
            n,
            l,
            self.num_kv_heads,
            d,
        ])?;
        let v = linear(x, &self.v_proj, self.v_proj_bias.as_ref())?.reshape(&[
            n,
            l,
            self.num_kv_heads,
            d,
        ])?;
        let q = self
            .rope
            .forward(&q, offset)?
            .transpose_axes(&[0, 2, 1, 3])?;
        let k = self
            .rope
            .forward(&k, offset)?
            .transpose_axes(&[0, 2, 1, 3])?;
        let v = v.transpose_axes(&[0, 2, 1, 3])?;
        let causal;
        let mask = match mask {
            AttentionMask::None => None,
            AttentionMask::Causal => {
                causal = causal_mask(l, l, x.dtype())?;
                Some(&causal)
            }
            AttentionMask::Array(m) => Some(m),
        };
        let o = scaled_dot_product_attention_grouped(&q, &k, &v, None, mask)?;
        let o = o
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[n, l, self.num_heads * d])?;
        linear(&o, &self.o_proj, self.o_proj_bias.as_ref())
    }
}
