//! Day 8: two key/value caches behind `tiny_llm_common::KvCache`.
//!
//! (Skeleton: the day-8 engineer writes the docs and bodies.)

use mlx_rs::Array;
pub use tiny_llm_common::KvCache;
use tiny_llm_common::Result;

/// Concatenates along the sequence axis at every step (`O(S)` copies a step).
#[derive(Debug, Clone, Default)]
pub struct KvConcatCache {
    kv: Option<(Array, Array)>,
}

impl KvConcatCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvCache for KvConcatCache {
    fn offset(&self) -> usize {
        todo!("day 8: KvConcatCache::offset")
    }
    fn update_and_fetch(&mut self, _keys: &Array, _values: &Array) -> Result<(Array, Array)> {
        todo!("day 8: KvConcatCache::update_and_fetch")
    }
    fn trim(&mut self, _n: usize) -> usize {
        todo!("day 8: KvConcatCache::trim")
    }
}

/// A preallocated buffer grown in steps of [`KvStepCache::STEP`] tokens.
#[derive(Debug, Clone, Default)]
pub struct KvStepCache {
    kv: Option<(Array, Array)>,
    offset: usize,
}

impl KvStepCache {
    /// Tokens added to the buffers each time they fill up.
    pub const STEP: usize = 256;
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvCache for KvStepCache {
    fn offset(&self) -> usize {
        todo!("day 8: KvStepCache::offset")
    }
    fn update_and_fetch(&mut self, _keys: &Array, _values: &Array) -> Result<(Array, Array)> {
        todo!("day 8: KvStepCache::update_and_fetch")
    }
    fn trim(&mut self, _n: usize) -> usize {
        todo!("day 8: KvStepCache::trim")
    }
}
