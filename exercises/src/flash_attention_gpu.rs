//! Day 12 on a GPU: flash attention as a CUDA source run through MLX's
//! custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]); its Metal twin
//! is `metal/flash_attention.metal` (macOS; it cannot run on the Linux
//! machines the kit is tested on).
//!
//! Same function, signature and contract as `crate::flash_attention` (the
//! CPU kernel of day 12), with two kernels behind it: a prefill kernel for
//! `L > 1` (a thread block per `(query tile, query head, batch row)`, K/V
//! tiles staged in shared memory, an online softmax, key tiles wholly in a
//! causal tile's future skipped) and a decode kernel for `L = 1` (the `S`
//! keys split over blocks, each writing a partial `(max, sum, output)`),
//! followed by a small kernel that merges the partials. GQA: query head `h`
//! reads kv head `h / (H_q / H_kv)`; nothing is copied. No `L x S` buffer
//! exists on the device (an explicit mask is the caller's own array, read in
//! place). MLX wraps and launches the bodies as `crate::fused_gpu`'s module
//! doc describes.
//!
//! Reference: Dao et al. 2022, "FlashAttention"; Dao 2023,
//! "FlashAttention-2" (online softmax, work per query tile); the split-S
//! decode of "Flash-Decoding" (Dao et al. 2023).

use mlx_rs::Array;
use tiny_llm_common::{AttentionMask, Result};

/// Largest head width `D` / `D_v` the kernels accept (their shared-memory
/// tiles are sized for it: 16 x 128 + 32 x 129 + 32 x 128 floats, 41 KB).
pub const MAX_HEAD_DIM: i32 = 128;

/// `softmax(q k^T * scale + mask) v` per query head on the GPU, query head
/// `h` reading kv head `h / (H_q / H_kv)` (same contract as
/// `crate::flash_attention::flash_attention`).
///
/// - `q`: `N x H_q x L x D`, float (computed in f32).
/// - `k`: `N x H_kv x S x D`, `v`: `N x H_kv x S x D_v`, f32, bf16 or f16;
///   `D, D_v <= 128` ([`MAX_HEAD_DIM`]).
/// - `scale`: usually `1 / sqrt(D)`.
/// - `mask`: [`AttentionMask::None`], [`AttentionMask::Causal`] (query `i`
///   sees keys `0..=i + S - L`; key tiles wholly in a query tile's future
///   are skipped), or [`AttentionMask::Array`], additive, broadcastable to
///   `N x H_q x L x S`.
/// - returns: `N x H_q x L x D_v` in `q`'s dtype. A query that sees no key
///   gives NaN, as MLX's does.
///
/// Errors: [`tiny_llm_common::Error::Shape`] naming the argument when the arrays are not
/// 4-D, disagree on `N`, `D`, `S` or `H_kv`, `H_q` is not a multiple of
/// `H_kv`, or the mask does not broadcast; [`tiny_llm_common::Error::Invalid`] for a
/// non-float array, `L > S` with a causal mask, a head wider than 128, or
/// no usable CUDA GPU.
///
/// Hints: check the shapes on the host (as day 12's CPU version), turn an
/// array mask into a row-contiguous f32 4-D array (prepend 1s: each dim is 1
/// or full, so the kernel computes its index with a 0 stride for the 1s),
/// and pass `L, S, H_q, H_kv` and the mask's dims as one int32 input. Prefill:
/// `grid = (ceil(L / BQ) * threads, H_q, N)`, so `blockIdx` is (tile, head,
/// batch); stage the tile's `BQ x D` queries times `scale`, then for each
/// tile of 32 keys stage K (`32 x (D + 1)` floats: the padding avoids bank
/// conflicts when 32 lanes read 32 different rows) and V, `__syncthreads()`,
/// and let lane `j` score key `j`; per query row keep `m`, `l` and the
/// accumulator in registers: `m' = max(m, max_j s_j)`, `p_j = e^(s_j - m')`,
/// `l = l e^(m - m') + sum_j p_j`, `acc = acc e^(m - m') + sum_j p_j v_j`
/// (`__shfl_sync(.., p, j)` hands `p_j` to every lane). Guard `m' = -inf`
/// (no key seen yet): `-inf - -inf` is NaN. Causal: stop at key
/// `q0 + BQ + S - L`. Decode: one block per (chunk of keys, head, batch)
/// writes `(m, l, acc)` as three f32 outputs; a second kernel merges them.
/// Template arguments: the dtypes of q and k/v, `D`, `D_v`, the mask kind.
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
