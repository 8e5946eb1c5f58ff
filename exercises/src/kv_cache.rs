//! Day 8: two key/value caches behind `tiny_llm_common::KvCache`.
//!
//! A cache keeps, for one attention layer, the keys and values of every token
//! seen so far (`N x H_kv x S x D`, the layout attention uses after its
//! transpose), so that a decoding step computes them for the new token only.
//! Both caches here hold the same numbers; they differ in how they copy:
//!
//! - [`KvConcatCache`] concatenates the new tokens to the old ones at every
//!   step: each step copies all `S` cached tokens (`O(S^2)` copying over a
//!   generation).
//! - [`KvStepCache`] preallocates buffers of [`KvStepCache::STEP`] tokens and
//!   writes each step's tokens into them in place (a slice update); it copies
//!   the cached tokens only when the buffers fill up, once every `STEP`
//!   tokens.
//!
//! Reference: mlx-lm `models/cache.py` (`KVCache`, which grows in steps of
//! 256, and `trim`); Pope et al. 2022, "Efficiently Scaling Transformer
//! Inference", section 2.
//!
//! Hints: Check your work with `cargo xtask check day8`. Both caches keep
//! `Option<(keys, values)>`; call the given `check_update` first, so a bad
//! update changes nothing.

#[allow(unused_imports)]
use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
#[allow(unused_imports)]
use mlx_rs::ops::{concatenate, zeros_dtype};
use mlx_rs::Array;
#[allow(unused_imports)]
use tiny_llm_common::kv_cache::check_update;
pub use tiny_llm_common::KvCache;
// `Error` is named by the doc comments.
#[allow(unused_imports)]
use tiny_llm_common::Error;
use tiny_llm_common::Result;

/// A cache that concatenates along the sequence axis at every step.
///
/// `update_and_fetch` returns `concatenate([cached, new], axis 2)` and keeps
/// it; `trim(n)` keeps the first `offset - n` tokens (a slice). Simple, and
/// `O(S)` copies a step: at 1,000 cached tokens every new token copies 1,000
/// tokens' keys and values per layer.
///
/// Reference: mlx-lm `models/cache.py` (`ConcatenateKVCache`).
#[derive(Debug, Clone, Default)]
pub struct KvConcatCache {
    #[allow(dead_code)] // read once you write the methods
    kv: Option<(Array, Array)>,
}

impl KvConcatCache {
    /// An empty cache (offset 0).
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvCache for KvConcatCache {
    /// The cached sequence length `S` (0 when empty).
    fn offset(&self) -> usize {
        todo!("day 8: KvConcatCache::offset")
    }

    /// Appends `keys` (`N x H_kv x L x D`) and `values` (`N x H_kv x L x
    /// D_v`) and returns all `S = offset + L` tokens'.
    ///
    /// Errors: as [`KvCache::update_and_fetch`] (checked with
    /// [`check_update`], given); a rejected update changes nothing.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let _ = (keys, values);
        todo!("day 8: KvConcatCache::update_and_fetch")
    }

    /// Forgets the last `min(n, offset)` tokens and returns that number.
    ///
    /// Hints: keep `try_index((.., .., 0..offset - n, ..))` of both arrays
    /// (or nothing, when all are forgotten).
    fn trim(&mut self, n: usize) -> usize {
        let _ = n;
        todo!("day 8: KvConcatCache::trim")
    }

    /// The concatenated keys and values (`None` while empty).
    ///
    /// Hints: (day 14) a clone of what the cache keeps: MLX arrays share
    /// their buffers, so this copies nothing.
    fn state(&self) -> Option<(Array, Array)> {
        todo!("day 14: KvConcatCache::state")
    }
}

/// A cache with preallocated buffers, grown in steps of
/// [`KvStepCache::STEP`] tokens.
///
/// The buffers are `N x H_kv x capacity x D` (and `x D_v`), `capacity` a
/// multiple of `STEP`; positions `0..offset` hold the cached tokens, the rest
/// is free. `update_and_fetch` writes the `L` new tokens at
/// `offset..offset + L` with a slice update (MLX reuses the buffer in place
/// when nothing else holds it) and returns the view `..offset + L`. When they
/// would not fit, the buffers are replaced by larger ones
/// (`ceil((offset + L) / STEP) * STEP` tokens) holding the first `offset`
/// tokens: one copy every `STEP` tokens instead of one every token.
/// `trim(n)` only moves the offset back; the tokens behind it are
/// overwritten by the next update.
///
/// Reference: mlx-lm `models/cache.py` (`KVCache`: `step = 256`,
/// `update_and_fetch`, `trim`).
#[derive(Debug, Clone, Default)]
pub struct KvStepCache {
    #[allow(dead_code)] // read once you write the methods
    kv: Option<(Array, Array)>,
    #[allow(dead_code)]
    offset: usize,
}

impl KvStepCache {
    /// Tokens added to the buffers each time they fill up.
    pub const STEP: usize = 256;

    /// An empty cache (offset 0, no buffers).
    pub fn new() -> Self {
        Self::default()
    }

    /// The tokens the buffers hold room for (a multiple of [`Self::STEP`];
    /// 0 before the first update).
    pub fn capacity(&self) -> usize {
        todo!("day 8: KvStepCache::capacity")
    }
}

impl KvCache for KvStepCache {
    /// The number of cached tokens (not the capacity).
    fn offset(&self) -> usize {
        todo!("day 8: KvStepCache::offset")
    }

    /// Writes `keys` (`N x H_kv x L x D`) and `values` at
    /// `offset..offset + L`, growing the buffers first when they are too
    /// small, and returns the first `offset + L` tokens.
    ///
    /// Errors: as [`KvCache::update_and_fetch`] (checked with
    /// [`check_update`], given); a rejected update changes nothing.
    ///
    /// Hints: `end = offset + L`. When `end` passes the capacity, make new
    /// buffers of `end.div_ceil(STEP) * STEP` tokens: the old
    /// `try_index((.., .., 0..offset, ..))` concatenated (axis 2) with
    /// `zeros_dtype(&[n, h, free, d], keys.dtype())`. Write the new tokens with
    /// `buf.try_index_mut((.., .., offset..end, ..), keys)?` and return
    /// `buf.try_index((.., .., 0..end, ..))?`.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let _ = (keys, values);
        todo!("day 8: KvStepCache::update_and_fetch")
    }

    /// Moves the offset back by `min(n, offset)` tokens and returns that
    /// number (the buffers stay allocated).
    fn trim(&mut self, n: usize) -> usize {
        let _ = n;
        todo!("day 8: KvStepCache::trim")
    }

    /// The first `offset` tokens of the buffers (`None` at offset 0).
    ///
    /// Hints: (day 14) `try_index((.., .., 0..offset, ..))` of both buffers,
    /// as `update_and_fetch` returns them; not the whole buffers, whose
    /// spare room (and what `trim` forgot) is not part of the cache.
    fn state(&self) -> Option<(Array, Array)> {
        todo!("day 14: KvStepCache::state")
    }
}
