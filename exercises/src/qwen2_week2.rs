//! Day 8: the model with a KV cache (skeleton: the day-8 engineer writes it).

use mlx_rs::{Array, Dtype};
use tiny_llm_common::Checkpoint;
use tiny_llm_common::{CachedLm, KvCache, Qwen2Config, Result};

/// A Qwen2 (or Llama) model that runs only new tokens, with a KV cache per
/// layer, and dense or quantized linear layers.
#[derive(Debug, Clone)]
pub struct Qwen2ModelWeek2 {
    config: Qwen2Config,
}

impl Qwen2ModelWeek2 {
    /// Builds the model from a checkpoint (dense or MLX-quantized).
    pub fn new(config: &Qwen2Config, checkpoint: &Checkpoint, dtype: Dtype) -> Result<Self> {
        let _ = (checkpoint, dtype);
        let _ = config;
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
    pub fn forward(
        &self,
        _inputs: &Array,
        _offset: usize,
        _cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        todo!("day 8: Qwen2ModelWeek2::forward")
    }

    /// As [`Self::forward`], the last position only: `N x vocab`.
    pub fn forward_last(
        &self,
        _inputs: &Array,
        _offset: usize,
        _cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        todo!("day 8: Qwen2ModelWeek2::forward_last")
    }
}

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
