//! Day 13 in the week-2 model: one forward pass over a left-padded batch,
//! each row at its own positions, padding keys hidden by the mask.
//!
//! Reference: mlx-lm `BatchGenerator` (`generate.py`) with `BatchKVCache`
//! (`models/cache.py`).

use super::Qwen2ModelWeek2;
use crate::attention_grouped::scaled_dot_product_attention_grouped;
use crate::week2_linear::project_with;
use mlx_rs::Array;
use tiny_llm_common::{shape_error, AttentionMask, Error, KvCache, Result};

impl Qwen2ModelWeek2 {
    /// Logits of every new position of a left-padded batch (day 13): row
    /// `b` of `inputs` is `left_padding[b]` padding tokens then its own;
    /// `offset` columns are cached (each row's tokens start at position
    /// `offset - left_padding[b]`). Returns `B x L x vocab`; at row `b`'s
    /// real positions the logits equal [`Self::forward`] of that row alone.
    ///
    /// Per layer as [`Self::forward`], except that q and k are rotated at
    /// each row's own positions (`crate::batch::rope_rows` with
    /// `crate::batch::row_offsets(offset, left_padding)`; with the `fused`
    /// and `gpu` kernels `crate::fused_gpu::rope`, which takes one offset
    /// per row) and attention uses
    /// `crate::batch::batch_causal_mask(L, offset, left_padding)` (padding
    /// keys hidden from real queries), also for `L = 1`.
    ///
    /// - `inputs`: `B x L` int32 ids (`L >= 1`); `offset`: every cache's
    ///   offset (columns, padding included); `left_padding`: `B` counts,
    ///   kept for the batch's whole life (decode steps pass the same).
    /// - `cache`: one cache per layer, batch `B`; each grows by `L`.
    /// - returns: `B x L x vocab` in the model's dtype (padding positions
    ///   hold finite values of no meaning).
    ///
    /// Errors: as [`Self::forward`], and [`Error::Invalid`] when
    /// `left_padding` has not one count per row (naming both) or a count is
    /// negative. A failed call leaves the caches as they were.
    ///
    /// Reference: mlx-lm `BatchGenerator` (`generate.py`) with
    /// `BatchKVCache` (`models/cache.py`).
    pub fn forward_batch(
        &self,
        inputs: &Array,
        offset: usize,
        left_padding: &[i32],
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        if inputs.ndim() != 2 || inputs.dim(1) == 0 {
            return Err(shape_error("inputs", inputs, "[B, L] token ids, L >= 1"));
        }
        let (b, l) = (inputs.dim(0), inputs.dim(1));
        if left_padding.len() != b as usize {
            return Err(Error::Invalid(format!(
                "left_padding has {} counts for a batch of {b} rows, expected one per row",
                left_padding.len()
            )));
        }
        if cache.len() != self.layers.len() || cache.iter().any(|c| c.offset() != offset) {
            return Err(Error::Invalid(format!(
                "forward_batch needs one cache per layer ({}), each holding offset = {offset} \
                 columns; got {} caches holding {:?}",
                self.layers.len(),
                cache.len(),
                cache.iter().map(|c| c.offset()).collect::<Vec<_>>()
            )));
        }
        let mask = crate::batch::batch_causal_mask(l, offset as i32, left_padding, self.dtype)?;
        let offsets = crate::batch::row_offsets(offset as i32, left_padding);
        let context = self.config.rope_positions();
        if let Some(row) = offsets.iter().position(|&o| o + l > context) {
            return Err(Error::Invalid(format!(
                "row {row}'s positions {}..{} pass the model's context of {context} tokens",
                offsets[row],
                offsets[row] + l
            )));
        }
        let (h_q, h_kv, d) = self.heads;
        let run = |cache: &mut [Box<dyn KvCache>]| -> Result<Array> {
            let mut h = self.embed_tokens.embed(inputs, self.dtype)?;
            for (layer, c) in self.layers.iter().zip(cache.iter_mut()) {
                let x = self.rms_norm(&layer.input_layernorm, &h)?;
                let [q, k, v]: [Array; 3] = layer
                    .qkv
                    .forward(&x, self.kernels)?
                    .try_into()
                    .map_err(|_| Error::Invalid("q/k/v projections: expected 3 outputs".into()))?;
                let rot = |a: &Array, heads: i32| -> Result<Array> {
                    let a = a.reshape(&[b, l, heads, d])?;
                    let a = self.rope_rows(&a, &offsets)?;
                    Ok(a.transpose_axes(&[0, 2, 1, 3])?)
                };
                let (q, k) = (rot(&q, h_q)?, rot(&k, h_kv)?);
                let v = v.reshape(&[b, l, h_kv, d])?.transpose_axes(&[0, 2, 1, 3])?;
                let (k, v) = c.update_and_fetch(&k, &v)?;
                let o = if self.kernels.flash_attention {
                    self.flash(&q, &k, &v, AttentionMask::Array(&mask))?
                } else {
                    scaled_dot_product_attention_grouped(&q, &k, &v, None, Some(&mask))?
                };
                let o = o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, h_q * d])?;
                h = h.add(project_with(&o, &layer.o_proj, self.kernels)?)?;
                let x = self.rms_norm(&layer.post_attention_layernorm, &h)?;
                let [g, u]: [Array; 2] = layer
                    .gate_up
                    .forward(&x, self.kernels)?
                    .try_into()
                    .map_err(|_| {
                        Error::Invalid("gate/up projections: expected 2 outputs".into())
                    })?;
                h = h.add(project_with(
                    &self.swiglu(&g, &u)?,
                    &layer.down_proj,
                    self.kernels,
                )?)?;
            }
            self.head(&h)
        };
        run(cache).inspect_err(|_| {
            for c in cache.iter_mut() {
                let extra = c.offset().saturating_sub(offset);
                c.trim(extra);
            }
        })
    }
}

/// What the week-3 engine drives (given): day 8's cached forward pass for
/// prefill chunks, day 13's `forward_batch` for the decode batch.
impl tiny_llm_common::engine::BatchLm for Qwen2ModelWeek2 {
    fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
        Qwen2ModelWeek2::new_cache(self)
    }
    fn forward_last(
        &self,
        inputs: &Array,
        offset: usize,
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        Qwen2ModelWeek2::forward_last(self, inputs, offset, cache)
    }
    fn forward_batch(
        &self,
        inputs: &Array,
        offset: usize,
        left_padding: &[i32],
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        Qwen2ModelWeek2::forward_batch(self, inputs, offset, left_padding, cache)
    }
    fn vocab_size(&self) -> usize {
        self.config.vocab_size as usize
    }
    fn context_len(&self) -> usize {
        self.config.rope_positions() as usize
    }
}
