//! Day 3: grouped-query attention (GQA) and the causal mask.
//!
//! GQA shares each key/value head among `n_repeats = H_q / H_kv` query heads.
//! Shapes: `Q: N.. x H_q x L x D`, `K, V: N.. x H_kv x S x D`.
//!
//! Week-1 rule: array ops only (`reshape`, `expand_dims`, `matmul`,
//! `broadcast_to`, `arange`, `le`, `select`, ...) and your day-1
//! `crate::basics::softmax`. No `mlx_rs::fast`, no `mlx_rs::nn`.
//!
//! Hints: Check your work with `cargo xtask check day3`.

#[allow(unused_imports)]
use crate::basics::softmax;
use mlx_rs::{Array, Dtype};
#[allow(unused_imports)]
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
///
/// Hints: query row `i` is position `i + S - L`: build it as
/// `arange::<_, i32>(S - L, S, 1)` reshaped to `L x 1`, the key positions as
/// `arange(0, S)` reshaped to `1 x S`; `cols.le(&rows)?` is the "may see"
/// matrix, and `mlx_rs::ops::select(cond, zero, neg_inf)` turns it into the
/// mask (make `zero` and `neg_inf` scalars of `dtype` with `as_dtype`).
pub fn causal_mask(l: i32, s: i32, dtype: Dtype) -> Result<Array> {
    let _ = (l, s, dtype);
    todo!("day 3: causal_mask")
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
///
/// Hints: the batch dims are `&query.shape()[..ndim - 3]`; build shapes with
/// `[batch, &[h_kv, n_rep, l, d]].concat()`. The scores are
/// `N.. x H_kv x n_repeats x L x S`, so a mask with a head axis must be
/// regrouped the same way: `mlx_rs::ops::broadcast_to` it to
/// `N.. x H_q x L x S`, then reshape to `N.. x H_kv x n_repeats x L x S`
/// (an `L x S` mask broadcasts as it is). Softmax over the last axis with
/// your day-1 `softmax`, multiply by V, reshape back to `N.. x H_q x L x D_v`.
pub fn scaled_dot_product_attention_grouped(
    query: &Array,
    key: &Array,
    value: &Array,
    scale: Option<f32>,
    mask: Option<&Array>,
) -> Result<Array> {
    let _ = (query, key, value, scale, mask);
    todo!("day 3: scaled_dot_product_attention_grouped")
}
