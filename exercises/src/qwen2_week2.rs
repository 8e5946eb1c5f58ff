//! Day 8: the model with a KV cache: each forward pass runs only the new
//! tokens, and every layer attends over its cached keys and values.
//!
//! The layers are week 1's (your RoPE with an offset, grouped attention with
//! `causal_mask(L, S)`, RMSNorm, silu, the embedding), with [`Linear`] layers
//! that hold a dense or an MLX-quantized weight. A prompt is one forward pass
//! of `L` tokens at offset 0 (prefill); then each decoding step feeds one
//! token at offset `S` (the tokens cached so far), and its logits equal those
//! of week 1's full forward pass over all `S + 1` tokens.
//!
//! Reference: `mlx_lm.models.qwen2.Model` with `make_prompt_cache`, and
//! `mlx_lm.generate.generate_step` (prefill, then one-token steps).
//!
//! Hints: Check your work with `cargo xtask check day8` (days 9 and 10 may
//! still be `todo!()`: a dense model never reaches them). The given
//! `crate::week2_linear::{project, TokenTable, load_linear}` load and run a
//! dense or quantized layer for you. Per layer keep the two norms and the `Linear`s
//! (`q/k/v/o_proj`, `gate/up/down_proj`); keep one `RoPE` for the model.

mod forward_batch;
mod kernels;

#[allow(unused_imports)]
use crate::attention_grouped::{causal_mask, scaled_dot_product_attention_grouped};
#[allow(unused_imports)]
use crate::kv_cache::KvStepCache;
#[allow(unused_imports)]
use crate::layer_norm::RmsNorm;
#[allow(unused_imports)]
use crate::mlp::silu;
#[allow(unused_imports)]
use crate::positional_encoding::RoPE;
#[allow(unused_imports)]
use crate::week2_linear::{load_linear, project, TokenTable};
#[allow(unused_imports)]
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, Dtype};
#[allow(unused_imports)]
use tiny_llm_common::{
    shape_error, take_weight, CachedLm, Checkpoint, Error, KvCache, Linear, LinearWeight,
    Qwen2Config, Result, Week2Kernels,
};

/// A Qwen2 (or Llama) model that runs only new tokens, with a KV cache per
/// layer, and dense or quantized linear layers.
///
/// ```text
/// h = embed_tokens(ids)                               N x L x E
/// per layer, positions offset..offset + L:
///   q, k, v = projections of input_layernorm(h)       RoPE on q and k at `offset`
///   k, v    = cache.update_and_fetch(k, v)            N x H_kv x S x D, S = offset + L
///   h       = h + o_proj(attention(q, k, v, causal_mask(L, S)))
///   h       = h + down(silu(gate(x)) * up(x)), x = post_attention_layernorm(h)
/// logits = lm_head(norm(h))                           lm_head = embed_tokens^T when tied
/// ```
///
/// Numerics: activations, dense weights, norms and biases in the model's
/// dtype (f32 on the CPU); a quantized layer keeps its packed codes, scales
/// and biases as stored and computes in f32.
///
/// Reference: `mlx_lm.models.qwen2.Model` (and `llama.Model`) with
/// `mlx_lm.models.cache.KVCache`.
#[derive(Debug, Clone)]
pub struct Qwen2ModelWeek2 {
    config: Qwen2Config,
    // Hints: add what `new` builds: the token table, the layers, the final
    // norm, the output layer (or `None` when tied), the shared RoPE.
}

impl Qwen2ModelWeek2 {
    /// Builds the model from a checkpoint (dense or MLX-quantized).
    ///
    /// Reads `model.embed_tokens.*`, `model.layers.{i}.*` (as week 1:
    /// `input_layernorm`, `self_attn.{q,k,v,o}_proj` with the q/k/v biases
    /// when `config.qkv_bias()`, `post_attention_layernorm`,
    /// `mlp.{gate,up,down}_proj`), `model.norm.weight`, and `lm_head.*`
    /// unless the embeddings are tied (or `lm_head.weight` is absent). A
    /// layer with `{prefix}.scales` is quantized at
    /// `checkpoint.quant_of(prefix)`. Dense weights, norms and biases are cast
    /// to `dtype`; packed layers keep their stored scales and biases. RoPE
    /// covers `config.rope_positions()` positions, base `rope_theta`,
    /// non-traditional.
    ///
    /// Errors: [`Error::Invalid`] when `dtype` is not a float dtype or the
    /// head configuration is inconsistent; a missing, non-float or wrongly
    /// shaped tensor, naming its key.
    ///
    /// Hints: check `dtype` and the heads first. Per layer `i`, with
    /// `p = "model.layers.{i}."`: `load_linear(checkpoint, &format!("{p}self_attn.q_proj"),
    /// [H_q * D, E], config.qkv_bias(), dtype)`, k/v at `[H_kv * D, E]`, o_proj at
    /// `[E, H_q * D]` (a bias only for Llama with `qkv_bias()`, as in week 1), the
    /// MLP at `[I, E]`, `[I, E]`, `[E, I]` without biases; norms from
    /// `take_weight(&checkpoint.weights, key, &[E])?.as_dtype(dtype)?`. Then
    /// `TokenTable::load`, `model.norm.weight`, `lm_head` (as week 1 decides
    /// tying) and one `RoPE::new(D, config.rope_positions(), config.rope_theta, false)`.
    pub fn new(config: &Qwen2Config, checkpoint: &Checkpoint, dtype: Dtype) -> Result<Self> {
        let _ = (config, checkpoint, dtype);
        todo!("day 8: Qwen2ModelWeek2::new")
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// Empty caches, one per layer ([`crate::kv_cache::KvStepCache`]).
    pub fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
        todo!("day 8: Qwen2ModelWeek2::new_cache")
    }

    /// Logits of every new position: `inputs` `N x L` at positions
    /// `offset..offset + L`; `offset` must equal every cache's offset.
    /// Returns `N x L x vocab`.
    ///
    /// - `inputs`: `N x L` int32 token ids (`L >= 1`), ids in `0..vocab`
    ///   (checked on the host by the caller, not here).
    /// - `offset`: the tokens already in the caches (0 for a prompt).
    /// - `cache`: one cache per layer ([`Self::new_cache`]); each grows by
    ///   `L`.
    /// - returns: `N x L x vocab` in the model's dtype; equal to week 1's
    ///   `forward` over all `offset + L` tokens, at the last `L` positions.
    ///
    /// Errors: [`Error::Shape`] when `inputs` is not `N x L`;
    /// [`Error::Invalid`] when the number of caches differs from the number
    /// of layers, when `offset` differs from a cache's offset (naming both),
    /// or when `offset + L` passes the model's context
    /// (`config.rope_positions()`). A failed call leaves the caches as they
    /// were.
    ///
    /// Hints: check everything before touching a cache (the cache count,
    /// every `cache[i].offset() == offset`, `offset + L <= context`). Then
    /// week 1's block with `project(x, &linear)` for every layer: q, k, v to
    /// `N x L x H x D`, RoPE at `offset`, transpose to `N x H x L x D`, then
    /// `let (k, v) = cache[i].update_and_fetch(&k, &v)?` (`S = k.dim(2)`), the
    /// grouped attention with `causal_mask(L, S)` (no mask when `L == 1`).
    /// Finish with the norm and `project(h, lm_head)` or
    /// `embed_tokens.as_linear(h)`.
    pub fn forward(
        &self,
        inputs: &Array,
        offset: usize,
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        let _ = (inputs, offset, cache);
        todo!("day 8: Qwen2ModelWeek2::forward")
    }

    /// As [`Self::forward`], the last position only: `N x vocab`.
    ///
    /// Errors: as [`Self::forward`].
    pub fn forward_last(
        &self,
        inputs: &Array,
        offset: usize,
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        let _ = (inputs, offset, cache);
        todo!("day 8: Qwen2ModelWeek2::forward_last")
    }
}

/// What the week-2 generation loop drives (given).
impl CachedLm for Qwen2ModelWeek2 {
    fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
        Qwen2ModelWeek2::new_cache(self)
    }
    fn forward_last_cached(&self, inputs: &Array, cache: &mut [Box<dyn KvCache>]) -> Result<Array> {
        let offset = cache.first().map_or(0, |c| c.offset());
        self.forward_last(inputs, offset, cache)
    }
    fn context_len(&self) -> Option<usize> {
        Some(self.config.rope_positions() as usize)
    }
    fn vocab_size(&self) -> Option<usize> {
        Some(self.config.vocab_size as usize)
    }
}
