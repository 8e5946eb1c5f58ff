//! Day 16 on a GPU: paged decode attention as a CUDA source run through
//! MLX's custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]); its Metal
//! twin is `metal/paged_attention.metal` (macOS; it cannot be compiled or run
//! on the Linux machines the kit is tested on).
//!
//! The same arithmetic as `crate::paged_attention_cpu::paged_attention`, for
//! a whole batch of sequences at once, on MLX arrays: one query token per
//! sequence attends over the first `context_lens[b]` tokens of sequence `b`,
//! whose keys and values live in two pools shaped `[num_blocks, block_size,
//! H_kv, D]` and are found through the sequence's row of `block_tables`
//! (token `t` in block `block_tables[b][t / block_size]`, slot
//! `t % block_size`). GQA: query head `h` reads kv head `h / (H / H_kv)`.
//! Nothing is gathered into a contiguous copy: the kernel follows the table.
//!
//! Reference: Kwon et al. 2023, "Efficient Memory Management for Large
//! Language Model Serving with PagedAttention" (section 4.1); the online
//! softmax of Milakov and Gimelshein 2018 / FlashAttention-2.

use mlx_rs::Array;
// `Error` is named by the doc comments.
#[allow(unused_imports)]
use tiny_llm_common::{Error, Result};

/// Largest head width `D` the kernel accepts (each lane keeps `D / 32`
/// query and accumulator values in registers).
pub const MAX_HEAD_DIM: i32 = 256;

/// Decode attention of one query token per sequence over paged keys and
/// values, on the GPU: for sequence `b` and query head `h` (kv head
/// `g = h / (H / H_kv)`),
/// `out[b, h] = sum_t softmax_t(scale * query[b, h] . k[t]) * v[t]` over
/// `t in 0..context_lens[b]`, where token `t`'s key is
/// `key_pool[block_tables[b, t / block_size], t % block_size, g]` (value
/// likewise): what `crate::paged_attention_cpu::paged_attention` computes
/// for one sequence, for a batch.
///
/// - `query`: `[B, H, D]`, f32, f16 or bf16 (computed in f32).
/// - `key_pool`, `value_pool`: `[num_blocks, block_size, H_kv, D]`, f32,
///   f16 or bf16 (`value_pool` is read in `key_pool`'s dtype); `H` a
///   multiple of `H_kv`; `D <= 256` ([`MAX_HEAD_DIM`]).
/// - `block_tables`: int32 `[B, max_blocks]`, each row the sequence's
///   blocks in token order (ids past its context are not read).
/// - `context_lens`: int32 `[B]`, each in `1..=max_blocks * block_size`.
/// - `scale`: multiplies the scores (usually `1 / sqrt(D)`).
/// - returns: `[B, H, D]` in `query`'s dtype.
///
/// The tables and lengths are read on the host to check them (one sync on
/// two small arrays) before the kernel is launched.
///
/// Errors: [`Error::Shape`] naming the argument when an array has the wrong
/// rank or disagrees with the others (`D`, `B`, the pools' shapes, `H_kv`
/// not dividing `H`); [`Error::Invalid`] for a wrong dtype (float for the
/// query and pools, int32 for the tables and lengths), a size of 0, `D >
/// 256`, a context length outside `1..=max_blocks * block_size`, a block id
/// the context uses outside the pool, or no usable CUDA GPU. Every check is
/// made before the kernel is built.
///
/// Hints: check every shape and dtype on the host first (rank, `B`, `D`, the
/// pools' shapes, `H % H_kv`), then read `block_tables` and `context_lens`
/// with `cpu_bridge::host(.., Dtype::Int32)` and check the values a context
/// uses, so the kernel can trust them. One block of 128 threads per
/// `(head, sequence)`: `grid = (128, H, B)`, so `blockIdx.y` is the head and
/// `blockIdx.z` the sequence. Warp `w` walks tiles of 32 tokens (`w * 32`,
/// then every 128th); token `t` is row
/// `(table[t / BS] * BS + t % BS) * H_kv + g` of a pool. A key's score is a warp-wide dot product (lane `i` owns
/// columns `i, i + 32, ..`; `__shfl_xor_sync` sums), kept by lane `j` for
/// token `j`; per tile `m' = max(m, max_j s_j)`, `p_j = e^(s_j - m')`,
/// `l = l e^(m - m') + sum_j p_j`, `acc = acc e^(m - m') + sum_j p_j v_j`
/// (guard `m' = -inf`: `-inf - -inf` is NaN). Merge the 4 warps through
/// shared memory by `e^(m_w - max_w m_w)`, write `acc / l`. Pass `H`,
/// `H_kv`, `max_blocks`, `block_size` in one int32 input (a new block size
/// compiles no new kernel); template arguments: the two dtypes and `D`.
pub fn paged_attention(
    query: &Array,
    key_pool: &Array,
    value_pool: &Array,
    block_tables: &Array,
    context_lens: &Array,
    scale: f32,
) -> Result<Array> {
    let _ = (
        query,
        key_pool,
        value_pool,
        block_tables,
        context_lens,
        scale,
    );
    todo!("day 16: paged_attention (GPU)")
}
