//! Day 12: flash attention meets MLX: grouped attention computed tile by
//! tile with an online softmax by `crate::flash_attention_cpu`, on the
//! host buffers of `q`, `k` and `v` (the given
//! [`tiny_llm_common::cpu_bridge`]): the `L x S` score matrix is never
//! materialised.
//!
//! Reference: Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient
//! Exact Attention with IO-Awareness"; Dao 2023, "FlashAttention-2";
//! `mlx.core.fast.scaled_dot_product_attention`.

use mlx_rs::Array;
use tiny_llm_common::{AttentionMask, Result};

/// `softmax(q k^T * scale + mask) v` per query head, query head `h` reading
/// kv head `h / (H_q / H_kv)` (GQA, no copy of K/V per query head).
///
/// - `q`: `N x H_q x L x D`, float (computed in f32).
/// - `k`: `N x H_kv x S x D`, `v`: `N x H_kv x S x D_v`, f32, bf16 or f16.
/// - `scale`: usually `1 / sqrt(D)`.
/// - `mask`: [`AttentionMask::None`], [`AttentionMask::Causal`] (query `i`
///   sees keys `0..=i + S - L`; key tiles wholly in a query tile's future
///   are skipped), or [`AttentionMask::Array`], additive, broadcastable to
///   `N x H_q x L x S`.
/// - returns: `N x H_q x L x D_v` in `q`'s dtype; equal to day 3's
///   `scaled_dot_product_attention_grouped` within f32 rounding. A query
///   that sees no key (a fully masked row) gives NaN, as MLX's does.
///
/// Errors: [`tiny_llm_common::Error::Shape`] naming the argument when the
/// arrays are not 4-D, disagree on `N`, `D`, `S` or `H_kv`, `H_q` is not a
/// multiple of `H_kv`, or the mask does not broadcast;
/// [`tiny_llm_common::Error::Invalid`] for a non-float array or
/// `L > S` with a causal mask.
///
/// Hints: check the shapes first (4-D, matching `N`, `D`, `S`, `H_kv`,
/// `H_q % H_kv == 0`, a causal mask with `L <= S`) with
/// `tiny_llm_common::shape_error`; `cpu_bridge::host_f32(q, "q")`,
/// `cpu_bridge::host(k, "k", k.dtype())` and `host(v, ...)`, then
/// `slice::<f32>()`, `slice::<half::bf16>()` or `slice::<half::f16>()` by
/// dtype; an additive mask read as f32 in its own shape, with stride 0 on
/// the axes it broadcasts; `cpu_bridge::crossing()`; the kernel into a
/// `Vec<f32>`; `cpu_bridge::from_vec(out, &[N, H_q, L, D_v])`, cast to
/// `q.dtype()`.
pub fn flash_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: AttentionMask<'_>,
) -> Result<Array> {
    let _ = (q, k, v, scale, mask);
    todo!("day 12: flash_attention")
}
