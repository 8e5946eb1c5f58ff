//! Day 15: a batched key/value cache that sequences join and leave between
//! steps (continuous batching).
//!
//! Day 13's `forward_batch` runs a left-padded batch with one shared cache
//! offset: every row's newest token sits in the last column. A serving
//! engine's batch changes every few steps: a sequence whose prefill just
//! completed joins it, a finished one leaves it at once. [`BatchKvCache`]
//! keeps that layout true through both:
//!
//! - joining (`add_row`): the shorter side is left-padded with zero columns
//!   (the new row, or every old row), so the right edges stay aligned;
//! - leaving (`filter_rows`): the other rows keep their values; columns that
//!   are now padding in every row are dropped, so the batch does not keep
//!   paying for a long sequence that has gone.
//!
//! Shapes: keys `B x H_kv x S x D`, values `B x H_kv x S x D_v`; row `b`
//! has `pad[b]` padding columns then `S - pad[b]` real tokens.
//!
//! Reference: mlx-lm `models/cache.py` (`BatchKVCache.extend`, `filter`);
//! Yu et al. 2022, "Orca" (iteration-level scheduling).

#[allow(unused_imports)]
use mlx_rs::ops::indexing::{take_axis, TryIndexOp};
#[allow(unused_imports)]
use mlx_rs::ops::{concatenate, zeros_dtype};
use mlx_rs::Array;
pub use tiny_llm_common::batch_cache::BatchCache;
#[allow(unused_imports)]
use tiny_llm_common::kv_cache::check_update;
pub use tiny_llm_common::KvCache;
// `Error` is named by the doc comments.
#[allow(unused_imports)]
use tiny_llm_common::{shape_error, Error, Result};

/// A per-layer cache of `B` left-padded rows (see the module doc).
///
/// Appends by concatenation along the columns (as day 8's
/// `KvConcatCache`); `left_padding` records each row's padding.
#[derive(Debug, Clone, Default)]
pub struct BatchKvCache {
    #[allow(dead_code)] // read once you write the methods
    /// `B x H_kv x S x D` keys and `B x H_kv x S x D_v` values, `None`
    /// while the cache holds no column.
    kv: Option<(Array, Array)>,
    #[allow(dead_code)] // read once you write the methods
    /// Padding columns per row (`B` entries).
    pad: Vec<i32>,
}

impl BatchKvCache {
    /// An empty cache: no rows, offset 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvCache for BatchKvCache {
    /// The shared column count `S` (padding included).
    fn offset(&self) -> usize {
        todo!("day 15: BatchKvCache::offset")
    }

    /// Appends `L` columns to every row (`keys` `B x H_kv x L x D`) and
    /// returns all `S + L`. On an empty cache the batch becomes `N` rows
    /// with no padding.
    ///
    /// Errors: as [`KvCache::update_and_fetch`], and [`Error::Shape`] when
    /// `N` differs from the rows (`B`) the cache holds.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let _ = (keys, values);
        todo!("day 15: BatchKvCache::update_and_fetch")
    }

    /// Forgets the last `min(n, S)` columns of every row; padding counts
    /// are capped at the new `S`. Returns the columns forgotten.
    fn trim(&mut self, n: usize) -> usize {
        let _ = (n,);
        todo!("day 15: BatchKvCache::trim")
    }

    /// Every row's columns, padding included (`None` while empty).
    fn state(&self) -> Option<(Array, Array)> {
        todo!("day 15: BatchKvCache::state")
    }
}

impl BatchCache for BatchKvCache {
    fn row(&self, b: usize) -> Result<Option<(Array, Array)>> {
        let _ = (b,);
        todo!("day 15: BatchKvCache::row")
    }

    fn rows(&self) -> usize {
        todo!("day 15: BatchKvCache::rows")
    }

    fn left_padding(&self) -> Vec<i32> {
        todo!("day 15: BatchKvCache::left_padding")
    }

    fn add_row(&mut self, keys: &Array, values: &Array) -> Result<()> {
        let _ = (keys, values);
        todo!("day 15: BatchKvCache::add_row")
    }

    fn filter_rows(&mut self, keep: &[usize]) -> Result<()> {
        let _ = (keep,);
        todo!("day 15: BatchKvCache::filter_rows")
    }
}
