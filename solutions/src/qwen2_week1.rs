//! Day 5: the whole week-1 model: embeddings, the decoder layers, the final
//! norm and the output layer. No KV cache: every call runs the full sequence.
//!
//! Week-1 rule: array ops only, plus your own days 1-5.

use crate::attention_grouped::AttentionMask;
use crate::basics::linear;
use crate::embedding::Embedding;
use crate::layer_norm::RmsNorm;
use crate::transformer_block::{take_weight, Qwen2TransformerBlock};
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, Dtype};
use std::collections::HashMap;
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
    pub fn new(
        config: &Qwen2Config,
        weights: &HashMap<String, Array>,
        dtype: Dtype,
    ) -> Result<Self> {
        if !dtype.is_float() {
            return Err(Error::Invalid(format!(
                "model dtype must be a float dtype, got {dtype:?}"
            )));
        }
        // Cast every float weight (lazily: only the ones used are computed).
        let mut cast = HashMap::with_capacity(weights.len());
        for (k, w) in weights {
            let w = if w.dtype().is_float() {
                w.as_dtype(dtype)?
            } else {
                w.clone()
            };
            cast.insert(k.clone(), w);
        }
        let (v, e) = (config.vocab_size, config.hidden_size);
        let embed_tokens =
            Embedding::new(take_weight(&cast, "model.embed_tokens.weight", &[v, e])?)?;
        let mut layers = (0..config.num_hidden_layers)
            .map(|i| Qwen2TransformerBlock::new(config, &cast, i))
            .collect::<Result<Vec<_>>>()?;
        // One RoPE table for the whole model: every layer's is the same
        // (same D, positions and base), so share the first one's arrays and
        // let the others' (lazy, never read) go.
        if let Some(rope) = layers.first().map(|l| l.self_attn.rope.clone()) {
            for layer in layers.iter_mut().skip(1) {
                layer.self_attn.rope = rope.clone();
            }
        }
        let norm = RmsNorm::new(
            take_weight(&cast, "model.norm.weight", &[e])?,
            config.rms_norm_eps,
        )?;
        let lm_head = if config.tie_word_embeddings || !cast.contains_key("lm_head.weight") {
            None
        } else {
            Some(take_weight(&cast, "lm_head.weight", &[v, e])?)
        };
        Ok(Self {
            config: config.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// Embeddings and every decoder layer: `N x L` ids -> `N x L x E`.
    fn hidden(&self, inputs: &Array) -> Result<Array> {
        if inputs.ndim() != 2 || inputs.dim(1) == 0 {
            return Err(shape_error("inputs", inputs, "[N, L] token ids, L >= 1"));
        }
        let mut h = self.embed_tokens.forward(inputs)?;
        for layer in &self.layers {
            h = layer.forward(&h, 0, AttentionMask::Causal)?;
        }
        Ok(h)
    }

    /// Final norm and output layer: `N.. x E` -> `N.. x vocab`.
    fn head(&self, h: &Array) -> Result<Array> {
        let h = self.norm.forward(h)?;
        match &self.lm_head {
            Some(w) => linear(&h, w, None),
            None => self.embed_tokens.as_linear(&h),
        }
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
    pub fn forward(&self, inputs: &Array) -> Result<Array> {
        self.head(&self.hidden(inputs)?)
    }

    /// The logits of the last position only: the final norm and `lm_head`
    /// run on one position per sequence (all a decoding step needs).
    ///
    /// - `inputs`: `N x L` int32 token ids (`L >= 1`).
    /// - returns: `N x vocab`, equal to `forward(inputs)[.., L - 1, ..]`.
    ///
    /// Errors: as [`Self::forward`].
    pub fn forward_last(&self, inputs: &Array) -> Result<Array> {
        let h = self.hidden(inputs)?;
        let last = h.try_index((.., h.dim(1) - 1, ..))?; // N x E
        self.head(&last)
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
