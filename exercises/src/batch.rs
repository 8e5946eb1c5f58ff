//! Day 13: a batch of sequences at different positions: masks
//! `B x 1 x L x S` and per-row RoPE offsets.
//!
//! Layout: left padding, as mlx-lm's `BatchKVCache`. `B` prompts of
//! different lengths become one `B x L` array, each row right-aligned and
//! preceded by `left_padding[b]` padding tokens, so that every row's newest
//! token sits in the last column and one decoding step appends one column
//! for all rows alike (one shared cache offset, one `N x H_kv x S x D` cache
//! per layer). Column `c` of the cache holds row `b`'s token at position
//! `c - left_padding[b]`; padding columns are masked out of every real
//! query. The alternative (right padding) puts each row's next token in a
//! different column, which a shared cache offset cannot express.
//!
//! Reference: mlx-lm `models/cache.py` (`BatchKVCache`, left padding) and
//! `models/base.py` (`create_causal_mask(N, offset, left_padding=...)`).
//!
//! Hints: Check your work with `cargo xtask check day13`. Day 3's
//! `causal_mask` and day 2's `RoPE::forward` are the one-row versions of
//! what you write here.

#[allow(unused_imports)]
use mlx_rs::ops::indexing::{Ellipsis, TryIndexOp};
#[allow(unused_imports)]
use mlx_rs::ops::{arange, concatenate, select, stack};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::RopeView;
// `Error` is named by the doc comments.
#[allow(unused_imports)]
use tiny_llm_common::{shape_error, Error, Result};

/// A batch of token sequences, left-padded to the longest.
#[derive(Debug, Clone)]
pub struct LeftPadded {
    /// `B x L` int32 ids, `L` the longest sequence: row `b` is
    /// `left_padding[b]` zeros (a valid id, never attended to) then
    /// sequence `b`.
    pub ids: Array,
    /// How many padding tokens start each row (`L - len_b`).
    pub left_padding: Vec<i32>,
}

/// Left-pads `seqs` into one `B x L` batch (`L` the longest length), the
/// padding id being 0.
///
/// - `seqs`: `B >= 1` sequences of token ids, each at least one token long.
/// - returns: [`LeftPadded`] (ids `B x L` int32, and each row's padding).
///
/// Errors: [`Error::Invalid`] when `seqs` is empty, a sequence is empty
/// (naming its index), or an id does not fit an int32.
///
/// Reference: the `BatchKVCache` docstring of mlx-lm `models/cache.py`.
///
/// Hints: build the ids in a `Vec<i32>` on the host (`i32::try_from` each
/// id), then one `Array::from_slice(&ids, &[B, L])`.
pub fn left_pad(seqs: &[&[u32]]) -> Result<LeftPadded> {
    let _ = seqs;
    todo!("day 13: left_pad")
}

/// The additive causal mask of a left-padded batch: `B x 1 x L x S`, with
/// `S = offset + L`, `0` where a query may see a key and `-inf` elsewhere.
///
/// The `L` new queries are columns `offset..offset + L` of the cache (the
/// last `L` of the `S`). Query column `q` of row `b` sees key column `k`
/// when `k <= q` (causal) and `k >= left_padding[b]` (not padding), and
/// always sees itself: a padding query would otherwise see no key at all,
/// its softmax would be `0/0 = NaN`, and that NaN would reach every row
/// through the next layer's values (`0 * NaN = NaN`). Real queries never
/// see a padding key. For `L = 3`, `offset = 0`, `left_padding = [0, 2]`:
///
/// ```text
/// row 0: [[0, -inf, -inf],     row 1: [[0,    -inf, -inf],
///         [0,    0, -inf],             [-inf,    0, -inf],
///         [0,    0,    0]]             [-inf, -inf,    0]]
/// ```
///
/// With no padding every row is day 3's `causal_mask(L, S)`.
///
/// - `l`: new tokens, `>= 1`; `offset`: columns already cached, `>= 0`.
/// - `left_padding`: `B >= 1` counts, each `>= 0` (a count past `S` means
///   the row has no real token yet).
/// - `dtype`: a float dtype.
/// - returns: `B x 1 x L x S` in `dtype` (broadcasts over the heads).
///
/// Errors: [`Error::Invalid`] when `l < 1`, `offset < 0`, `left_padding`
/// is empty or has a negative count (naming its row), or `dtype` is not a
/// float dtype.
///
/// Reference: `mlx_lm.models.base.create_causal_mask(N, offset,
/// left_padding=...)` (a boolean mask; the padding queries' diagonal is this
/// kit's addition).
///
/// Hints: three broadcasting int32 arrays: query columns
/// `arange(offset, S)` as `1 x 1 x L x 1`, key columns `arange(0, S)` as
/// `1 x 1 x 1 x S`, the paddings as `B x 1 x 1 x 1`. Then
/// `keys.le(&queries)? AND (keys.ge(&pads)? OR keys.eq(&queries)?)`
/// (`logical_and`, `logical_or`) and `select(keep, 0, -inf)` in `dtype`.
pub fn batch_causal_mask(l: i32, offset: i32, left_padding: &[i32], dtype: Dtype) -> Result<Array> {
    let _ = (l, offset, left_padding, dtype);
    todo!("day 13: batch_causal_mask")
}

/// The RoPE position of each row's first new token in a left-padded batch:
/// `offset - left_padding[b]` (negative while the row is still in its
/// padding).
///
/// - `offset`: columns already cached; `left_padding`: one count per row.
/// - returns: one offset per row, for [`rope_rows`].
pub fn row_offsets(offset: i32, left_padding: &[i32]) -> Vec<i32> {
    let _ = (offset, left_padding);
    todo!("day 13: row_offsets")
}

/// RoPE with one offset per batch row: token `i` of row `b` of `x` is
/// rotated at position `offsets[b] + i`.
///
/// Rotation as day 2's [`RoPE::forward`] (same tables, halves or
/// interleaved pairs per `rope.traditional`); with all offsets equal it is
/// `rope.forward(x, offset)`. A position below 0 is a left-padding token
/// (see [`row_offsets`]): it is rotated as position 0, since no real query
/// ever sees it.
///
/// - `x`: `B x L x H x D` (the sequence before the heads), any float dtype;
///   `D == rope.dims`.
/// - `offsets`: `B` offsets; `offsets[b] + L <= rope.seq_len`.
/// - returns: `B x L x H x D` in `x`'s dtype (computed in f32).
///
/// Errors: [`Error::Shape`] when `x` is not 4-D or its last axis is not
/// `rope.dims`; [`Error::Invalid`] when `offsets` has not one entry per row
/// (naming both counts) or a row's positions pass `rope.seq_len` (naming
/// the row).
///
/// Reference: `mx.fast.rope(x, dims, traditional, base, scale, offset)` with
/// an array `offset` (one per batch row), as mlx-lm's Qwen2 attention calls
/// it with a `BatchKVCache`'s offsets.
///
/// Hints: compute the `B * L` positions on the host (`(o + i).max(0)`),
/// gather the rows of `rope.cos` and `rope.sin` with `take_axis(.., 0)`
/// and reshape them to `B x L x 1 x D/2`; then rotate as day 2 does, in
/// f32.
pub fn rope_rows(x: &Array, rope: RopeView<'_>, offsets: &[i32]) -> Result<Array> {
    let _ = (x, rope, offsets);
    todo!("day 13: rope_rows")
}
