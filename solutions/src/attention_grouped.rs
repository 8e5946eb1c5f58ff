//! Day 3: grouped-query attention (GQA) and the causal mask.
//!
//! GQA shares each key/value head among `n_repeats = H_q / H_kv` query heads.
//! Shapes: `Q: N.. x H_q x L x D`, `K, V: N.. x H_kv x S x D`.
//!
//! Week-1 rule: array ops only (`reshape`, `expand_dims`, `matmul`,
//! `broadcast_to`, `arange`, `le`, `select`, ...) and your day-1
//! `crate::basics::softmax`. No `mlx_rs::fast`, no `mlx_rs::nn`.

use crate::basics::softmax;
use mlx_rs::ops::{arange, broadcast_to, select};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::{expect_min_ndim, shape_error, Error, Result};

/// The mask an attention layer applies to its scores (given; defined in
/// `tiny_llm_common` so that every day passes the same type).
pub use tiny_llm_common::AttentionMask;

/// The additive causal mask: `L x S`, `0` where query `i` may see key `j`
/// (`j <= i + S - L`) and `-inf` above that diagonal.
///
/// The diagonal is shifted by `S - L` so that the last query sees every key:
/// the `L` queries are the last `L` of the `S` positions (decoding with a KV
/// cache). `causal_mask(L, S)` is the last `L` rows of `causal_mask(S, S)`.
/// For `L = 2, S = 3`:
///
/// ```text
/// [[0, 0, -inf],
///  [0, 0,    0]]
/// ```
///
/// - `dtype`: a float dtype (f32, f16, bf16, f64).
/// - returns: `L x S` in `dtype`.
///
/// Errors: [`Error::Invalid`] when `L < 1`, `L > S`, or `dtype` is not a
/// float dtype (`dtype.is_float()`).
///
/// Reference: `mlx_lm.models.base.create_causal_mask`; the `"causal"` mask of
/// `mx.fast.scaled_dot_product_attention` (lower-right aligned).
pub fn causal_mask(l: i32, s: i32, dtype: Dtype) -> Result<Array> {
    if l < 1 || l > s {
        return Err(Error::Invalid(format!(
            "causal_mask needs 1 <= L <= S, got L = {l}, S = {s}"
        )));
    }
    if !dtype.is_float() {
        return Err(Error::Invalid(format!(
            "causal_mask needs a float dtype, got {dtype:?}"
        )));
    }
    // query i is position i + (S - L); it may see keys j <= that position.
    let rows = arange::<_, i32>(s - l, s, 1)?.reshape(&[l, 1])?;
    let cols = arange::<_, i32>(0, s, 1)?.reshape(&[1, s])?;
    let zero = Array::from_f32(0.0).as_dtype(dtype)?;
    let neg_inf = Array::from_f32(f32::NEG_INFINITY).as_dtype(dtype)?;
    Ok(select(cols.le(&rows)?, zero, neg_inf)?)
}

/// Scaled dot-product attention with grouped key/value heads:
/// `softmax(Q K^T * scale + mask) V`, query head `h` using kv head
/// `h / n_repeats`.
///
/// Do not copy K and V once per query head (no `repeat`): reshape Q to
/// `N.. x H_kv x n_repeats x L x D` and K, V to `N.. x H_kv x 1 x S x D`
/// (`expand_dims(-3)`), and let `matmul` broadcast over the group axis.
///
/// - `query`: `N.. x H_q x L x D`; `key`: `N.. x H_kv x S x D`;
///   `value`: `N.. x H_kv x S x D_v` (same batch dims `N..`, possibly none).
/// - `scale`: `None` means `1 / sqrt(D)`.
/// - `mask`: optional additive mask broadcastable to `N.. x H_q x L x S`.
/// - returns: `N.. x H_q x L x D_v`, in `query`'s dtype.
///
/// Errors: [`Error::Shape`] when an input has fewer than 3 dims, the ranks or
/// batch dims differ, `D` of Q and K differ, K and V disagree on `H_kv` or
/// `S`, or `H_q` is not a multiple of `H_kv`.
///
/// Reference: Ainslie et al. 2023, "GQA: Training Generalized Multi-Query
/// Transformer Models from Multi-Head Checkpoints";
/// `mx.fast.scaled_dot_product_attention`.
pub fn scaled_dot_product_attention_grouped(
    query: &Array,
    key: &Array,
    value: &Array,
    scale: Option<f32>,
    mask: Option<&Array>,
) -> Result<Array> {
    expect_min_ndim("query", query, 3, "[N.., H_q, L, D]")?;
    let nd = query.ndim();
    let batch = &query.shape()[..nd - 3];
    for (name, t) in [("key", key), ("value", value)] {
        if t.ndim() != nd || &t.shape()[..nd - 3] != batch {
            return Err(shape_error(
                name,
                t,
                &format!("[{batch:?}.., H_kv, S, D] (batch dims of query)"),
            ));
        }
    }
    let (h_q, l, d) = (query.dim(-3), query.dim(-2), query.dim(-1));
    let (h_kv, s) = (key.dim(-3), key.dim(-2));
    if key.dim(-1) != d {
        return Err(shape_error(
            "key",
            key,
            &format!("[N.., H_kv, S, {d}] (D of query)"),
        ));
    }
    if value.dim(-3) != h_kv || value.dim(-2) != s {
        return Err(shape_error(
            "value",
            value,
            &format!("[N.., {h_kv}, {s}, D] (H_kv, S of key)"),
        ));
    }
    if h_kv == 0 || h_q % h_kv != 0 {
        return Err(shape_error(
            "key",
            key,
            &format!("[N.., H_kv, S, D] with H_kv dividing H_q = {h_q}"),
        ));
    }
    let n_rep = h_q / h_kv;
    let dims = |tail: &[i32]| [batch, tail].concat();

    let q = query.reshape(&dims(&[h_kv, n_rep, l, d]))?;
    let k = key.expand_dims(-3)?; // N.. x H_kv x 1 x S x D
    let v = value.expand_dims(-3)?;
    let scale = scale.unwrap_or(1.0 / (d as f32).sqrt());
    let scale = Array::from_f32(scale).as_dtype(query.dtype())?;
    // Scale the queries (L x D) rather than the scores (L x S): one pass
    // less over the largest tensor of attention, as mlx's own sdpa does.
    let mut scores = q.multiply(scale)?.matmul(k.swap_axes(-2, -1)?)?; // N.. x H_kv x n_rep x L x S
    if let Some(mask) = mask {
        let mask = if mask.ndim() <= 2 {
            // L x S (or less) broadcasts over every head as it is.
            mask.clone()
        } else {
            broadcast_to(mask, &dims(&[h_q, l, s]))?.reshape(&dims(&[h_kv, n_rep, l, s]))?
        };
        scores = scores.add(mask)?;
    }
    let out = softmax(&scores, -1)?.matmul(v)?;
    Ok(out
        .reshape(&dims(&[h_q, l, value.dim(-1)]))?
        .as_dtype(query.dtype())?)
}
