//! The batched key/value cache seam (given code): what continuous batching
//! needs from a per-layer cache that holds several sequences side by side,
//! each left-padded to a shared length. Day 15's `BatchKvCache` implements
//! it; the engine (`crate::engine`) drives it through
//! [`crate::engine::BatchedLm`].
//!
//! Layout: keys and values `B x H_kv x S x D` (rows, kv heads, columns, head
//! width). Row `b` holds `left_padding()[b]` padding columns (zeros, hidden
//! by day 13's `batch_causal_mask`) then its `S - left_padding()[b]` real
//! tokens, so that every row's newest token is in the last column and one
//! shared offset `S` serves day 13's `forward_batch`.
//!
//! Reference: mlx-lm `models/cache.py` (`BatchKVCache`: `extend` adds rows,
//! `filter` keeps rows, both re-aligning the left padding).

use crate::kv_cache::KvCache;
use crate::Result;
use mlx_rs::Array;

/// A [`KvCache`] over a batch of left-padded rows that gains and loses rows
/// between steps. [`KvCache::offset`] is the shared column count `S`.
pub trait BatchCache: KvCache {
    /// Rows (sequences) in the batch, `B`.
    fn rows(&self) -> usize;

    /// Padding columns at the start of each row (`B` counts, each
    /// `0..=S`): what day 13's `forward_batch` takes as `left_padding`.
    fn left_padding(&self) -> Vec<i32>;

    /// Row `b`'s real tokens (its padding left out): `(keys, values)`,
    /// `1 x H_kv x T x D` and `1 x H_kv x T x D_v` with `T = S - pad[b]`,
    /// or `None` when the row holds no token. A fresh cache given them
    /// through `update_and_fetch` holds that sequence alone.
    ///
    /// Errors: `Error::Invalid` when `b` is not a row (naming `b` and `B`).
    fn row(&self, b: usize) -> Result<Option<(Array, Array)>>;

    /// Appends one row, last: a sequence's keys and values
    /// (`1 x H_kv x T x D` and `1 x H_kv x T x D_v`, `T >= 1`, the cached
    /// dtype). When `T < S` the new row is left-padded by `S - T`; when
    /// `T > S` every old row gains `T - S` padding columns at its start.
    ///
    /// Errors: `Error::Shape` for arrays that are not `1 x H_kv x T x D`
    /// or disagree with the cached heads and widths; `Error::Invalid` for
    /// `T = 0` or another dtype. A rejected row leaves the cache as it was.
    fn add_row(&mut self, keys: &Array, values: &Array) -> Result<()>;

    /// Keeps the rows `keep` (strictly increasing indices in `0..B`), in
    /// that order, with their values unchanged, then drops the leading
    /// columns that are padding in every kept row. Keeping none empties
    /// the cache (offset 0).
    ///
    /// Errors: `Error::Invalid` naming the index that is out of range or
    /// out of order. A rejected call leaves the cache as it was.
    fn filter_rows(&mut self, keep: &[usize]) -> Result<()>;
}
