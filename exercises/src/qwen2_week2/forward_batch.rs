//! Day 13 in the week-2 model: one forward pass over a left-padded batch,
//! each row at its own positions, padding keys hidden by the mask.
//!
//! Reference: mlx-lm `BatchGenerator` (`generate.py`) with `BatchKVCache`
//! (`models/cache.py`).

#[allow(unused_imports)]
use super::Qwen2ModelWeek2;
use mlx_rs::Array;
#[allow(unused_imports)]
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
    ///
    /// Hints: day 8's `forward` with three changes: check `left_padding`
    /// against the batch first; rotate q and k with
    /// `crate::batch::rope_rows(.., &crate::batch::row_offsets(offset,
    /// left_padding))`; pass `crate::batch::batch_causal_mask(L, offset,
    /// left_padding, dtype)` to the grouped attention at every step (also
    /// `L = 1`: the padding columns stay hidden).
    pub fn forward_batch(
        &self,
        inputs: &Array,
        offset: usize,
        left_padding: &[i32],
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        let _ = (inputs, offset, left_padding, cache);
        todo!("day 13: Qwen2ModelWeek2::forward_batch")
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
