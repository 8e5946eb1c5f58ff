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

use mlx_rs::ops::indexing::{Ellipsis, TryIndexOp};
use mlx_rs::ops::{arange, concatenate, select, stack};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::RopeView;
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
pub fn left_pad(seqs: &[&[u32]]) -> Result<LeftPadded> {
    if seqs.is_empty() {
        return Err(Error::Invalid(
            "left_pad: the batch is empty, expected at least one sequence".into(),
        ));
    }
    if let Some(b) = seqs.iter().position(|s| s.is_empty()) {
        return Err(Error::Invalid(format!(
            "left_pad: sequence {b} is empty, expected at least one token"
        )));
    }
    let l = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * l);
    let mut left_padding = Vec::with_capacity(seqs.len());
    for (b, s) in seqs.iter().enumerate() {
        let pad = l - s.len();
        left_padding.push(pad as i32);
        ids.extend(std::iter::repeat_n(0i32, pad));
        for (i, &id) in s.iter().enumerate() {
            let id = i32::try_from(id).map_err(|_| {
                Error::Invalid(format!(
                    "left_pad: sequence {b} token {i} is id {id}, which does not fit an int32"
                ))
            })?;
            ids.push(id);
        }
    }
    Ok(LeftPadded {
        ids: Array::from_slice(&ids, &[seqs.len() as i32, l as i32]),
        left_padding,
    })
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
pub fn batch_causal_mask(l: i32, offset: i32, left_padding: &[i32], dtype: Dtype) -> Result<Array> {
    if l < 1 || offset < 0 {
        return Err(Error::Invalid(format!(
            "batch_causal_mask needs L >= 1 and offset >= 0, got L = {l}, offset = {offset}"
        )));
    }
    if left_padding.is_empty() {
        return Err(Error::Invalid(
            "batch_causal_mask: left_padding is empty, expected one count per row".into(),
        ));
    }
    if let Some(b) = left_padding.iter().position(|&p| p < 0) {
        return Err(Error::Invalid(format!(
            "batch_causal_mask: left_padding[{b}] is {}, expected a count >= 0",
            left_padding[b]
        )));
    }
    if !dtype.is_float() {
        return Err(Error::Invalid(format!(
            "batch_causal_mask needs a float dtype, got {dtype:?}"
        )));
    }
    let s = offset + l;
    let b = left_padding.len() as i32;
    let queries = arange::<_, i32>(offset, s, 1)?.reshape(&[1, 1, l, 1])?;
    let keys = arange::<_, i32>(0, s, 1)?.reshape(&[1, 1, 1, s])?;
    let pads = Array::from_slice(left_padding, &[b, 1, 1, 1]);
    let causal = keys.le(&queries)?;
    let real = keys.ge(&pads)?.logical_or(keys.eq(&queries)?)?;
    let keep = causal.logical_and(&real)?;
    let zero = Array::from_f32(0.0).as_dtype(dtype)?;
    let neg_inf = Array::from_f32(f32::NEG_INFINITY).as_dtype(dtype)?;
    Ok(select(&keep, &zero, &neg_inf)?)
}

/// The RoPE position of each row's first new token in a left-padded batch:
/// `offset - left_padding[b]` (negative while the row is still in its
/// padding).
///
/// - `offset`: columns already cached; `left_padding`: one count per row.
/// - returns: one offset per row, for [`rope_rows`].
pub fn row_offsets(offset: i32, left_padding: &[i32]) -> Vec<i32> {
    left_padding.iter().map(|&p| offset - p).collect()
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
pub fn rope_rows(x: &Array, rope: RopeView<'_>, offsets: &[i32]) -> Result<Array> {
    if x.ndim() != 4 || x.dim(3) != rope.dims {
        return Err(shape_error(
            "rope_rows input",
            x,
            &format!("[B, L, H, {}]", rope.dims),
        ));
    }
    let (b, l) = (x.dim(0), x.dim(1));
    if offsets.len() != b as usize {
        return Err(Error::Invalid(format!(
            "rope_rows: got {} offsets for a batch of {b} rows, expected one per row",
            offsets.len()
        )));
    }
    if let Some(row) = offsets.iter().position(|&o| o + l > rope.seq_len) {
        return Err(Error::Invalid(format!(
            "rope_rows: row {row}'s positions {}..{} pass the RoPE table's seq_len {}",
            offsets[row],
            offsets[row] + l,
            rope.seq_len
        )));
    }
    let positions: Vec<i32> = offsets
        .iter()
        .flat_map(|&o| (0..l).map(move |i| (o + i).max(0)))
        .collect();
    let positions = Array::from_slice(&positions, &[b * l]);
    let half = rope.dims / 2;
    // B x L x 1 x D/2: broadcasts over the heads.
    let cos = rope
        .cos
        .take_axis(&positions, 0)?
        .reshape(&[b, l, 1, half])?;
    let sin = rope
        .sin
        .take_axis(&positions, 0)?
        .reshape(&[b, l, 1, half])?;
    let xf = x.as_dtype(Dtype::Float32)?;
    let rotate = |x1: &Array, x2: &Array| -> Result<(Array, Array)> {
        Ok((
            x1.multiply(&cos)?.subtract(x2.multiply(&sin)?)?,
            x1.multiply(&sin)?.add(x2.multiply(&cos)?)?,
        ))
    };
    let out = if rope.traditional {
        let (h, d) = (x.dim(2), x.dim(3));
        let pairs = xf.reshape(&[b, l, h, half, 2])?;
        let (r1, r2) = rotate(
            &pairs.try_index((Ellipsis, 0))?,
            &pairs.try_index((Ellipsis, 1))?,
        )?;
        stack(&[r1, r2], -1)?.reshape(&[b, l, h, d])?
    } else {
        let (r1, r2) = rotate(
            &xf.try_index((Ellipsis, 0..half))?,
            &xf.try_index((Ellipsis, half..rope.dims))?,
        )?;
        concatenate(&[r1, r2], -1)?
    };
    Ok(out.as_dtype(x.dtype())?)
}
