//! Day 5: the whole week-1 model: embeddings, the decoder layers, the final
//! norm and the output layer. No KV cache: every call runs the full sequence.
//!
//! Week-1 rule: array ops only, plus your own days 1-5.
//!
//! Hints: Check your work with `cargo xtask check day5`.

#[allow(unused_imports)]
use crate::attention_grouped::AttentionMask;
#[allow(unused_imports)]
use crate::basics::linear;
use crate::embedding::Embedding;
use crate::layer_norm::RmsNorm;
#[allow(unused_imports)]
use crate::transformer_block::{take_weight, Qwen2TransformerBlock};
use mlx_rs::{Array, Dtype};
use std::collections::HashMap;
#[allow(unused_imports)]
use tiny_llm_common::{shape_error, CausalLm, Error, Qwen2Config, Result};

/// A Qwen2 (or Llama) decoder-only language model, week-1 style.
///
/// ```text
/// h = embed_tokens(ids); h = layer_i(h) for every layer (causal mask, offset 0)
/// logits = lm_head(norm(h))          lm_head = embed_tokens^T when tied
/// ```
///
/// Reference: `mlx_lm.models.qwen2.Model` (and `llama.Model`).
#[derive(Debug, Clone)]
pub struct Qwen2ModelWeek1 {
    config: Qwen2Config,
    /// `model.embed_tokens.weight`, `vocab x E`.
    pub embed_tokens: Embedding,
    /// `model.layers.{i}`, in order.
    pub layers: Vec<Qwen2TransformerBlock>,
    /// `model.norm.weight`, the final RMSNorm.
    pub norm: RmsNorm,
    /// `lm_head.weight`, `vocab x E`; `None` when the output layer is
    /// `embed_tokens` (tied embeddings).
    pub lm_head: Option<Array>,
}

impl Qwen2ModelWeek1 {
    /// Builds the model from Hugging Face-named float weights, cast to
    /// `dtype`: `model.embed_tokens.weight`, `model.layers.{i}.*` (see
    /// [`Qwen2TransformerBlock::new`]), `model.norm.weight`, and
    /// `lm_head.weight` unless `config.tie_word_embeddings` (without it, the
    /// output layer falls back to `embed_tokens`). Extra keys are ignored.
    ///
    /// Errors: a missing, non-float or wrongly shaped weight, naming its key;
    /// [`Error::Invalid`] when `dtype` is not a float dtype or the head
    /// configuration is inconsistent.
    ///
    /// Hints: cast first (`w.as_dtype(dtype)?` for every float weight, into
    /// a new map; MLX is lazy, unused weights cost nothing), then build
    /// layers `0..config.num_hidden_layers` with your
    /// [`Qwen2TransformerBlock::new`]. Keep `config.clone()`.
    pub fn new(
        config: &Qwen2Config,
        weights: &HashMap<String, Array>,
        dtype: Dtype,
    ) -> Result<Self> {
        let _ = (config, weights, dtype);
        todo!("day 5: Qwen2ModelWeek1::new")
    }

    /// The configuration the model was built with.
    ///
    /// Hints: given code: nothing to implement here.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// The logits of every position.
    ///
    /// - `inputs`: `N x L` int32 token ids (`L >= 1`).
    /// - returns: `N x L x vocab` logits, in the model's dtype; position `l`
    ///   scores the token after `inputs[.., l]` (causal mask, offset 0).
    ///
    /// Errors: [`Error::Shape`] when `inputs` is not `N x L`. Ids must be in
    /// `0..vocab`; they are checked on the host by the caller
    /// ([`tiny_llm_common::check_token_ids`]), not here (no device-to-host
    /// sync inside forward).
    ///
    /// Hints: embed, every layer with `AttentionMask::Causal` and offset 0,
    /// `norm`, then `lm_head` ([`linear`]) or `embed_tokens.as_linear`.
    pub fn forward(&self, inputs: &Array) -> Result<Array> {
        let _ = inputs;
        todo!("day 5: Qwen2ModelWeek1::forward")
    }

    /// The logits of the last position only: the final norm and `lm_head`
    /// run on one position per sequence (all a decoding step needs).
    ///
    /// - `inputs`: `N x L` int32 token ids (`L >= 1`).
    /// - returns: `N x vocab`, equal to `forward(inputs)[.., L - 1, ..]`.
    ///
    /// Errors: as [`Self::forward`].
    ///
    /// Hints: take `h[.., L - 1, ..]` before the norm, with
    /// `h.try_index((.., l - 1, ..))?` (`mlx_rs::ops::indexing::TryIndexOp`).
    pub fn forward_last(&self, inputs: &Array) -> Result<Array> {
        let _ = inputs;
        todo!("day 5: Qwen2ModelWeek1::forward_last")
    }
}

/// What day 7's generation loop drives (given).
impl CausalLm for Qwen2ModelWeek1 {
    fn forward_last(&self, inputs: &Array) -> Result<Array> {
        Qwen2ModelWeek1::forward_last(self, inputs)
    }

    fn context_len(&self) -> Option<usize> {
        Some(self.config.rope_positions() as usize)
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(self.config.vocab_size as usize)
    }
}
