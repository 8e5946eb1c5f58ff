//! Day 16: decode attention that reads keys and values through a block
//! table (a CPU kernel on f32 slices, no MLX).
//!
//! The pool's storage for one layer is two f32 buffers shaped `[num_blocks,
//! block_size, H_kv, D]` (row-major): token `t` of a sequence lives in block
//! `table[t / block_size]`, slot `t % block_size`. The kernel computes, for
//! each query head `h` (KV head `h / (H / H_kv)`, grouped-query attention)
//!
//! `out[h] = sum_t softmax_t(scale * q[h] . k[t]) * v[t]`, `t in 0..context_len`
//!
//! exactly as dense attention over the gathered `[context_len, H_kv, D]`
//! keys and values would (PagedAttention, Kwon et al. 2023, section 4.1),
//! the softmax shifted by each row's maximum so no exponent overflows.
//!
//! Units: tokens (context length, slots), blocks.
//!
//! Hints: Check your work with `cargo xtask check day16`. Day 3's grouped
//! attention and day 12's CPU flash attention did the same arithmetic over
//! contiguous keys; only the address of token `t` changes here.

// `Error` is named by the doc comments.
pub use tiny_llm_common::BlockId;
#[allow(unused_imports)]
use tiny_llm_common::{Error, Result};

/// One layer's paged keys and values: two f32 buffers shaped `[num_blocks,
/// block_size, num_kv_heads, head_dim]`, row-major.
#[derive(Debug, Clone, Copy)]
pub struct PagedKv<'a> {
    /// Keys, `num_blocks * block_size * num_kv_heads * head_dim` values.
    pub keys: &'a [f32],
    /// Values, same shape as `keys`.
    pub values: &'a [f32],
    /// Blocks in the pool.
    pub num_blocks: usize,
    /// Tokens per block.
    pub block_size: usize,
    /// `H_kv`.
    pub num_kv_heads: usize,
    /// `D`.
    pub head_dim: usize,
}

impl PagedKv<'_> {
    /// Index of element `[block, slot, kv_head, 0]` in `keys` / `values`.
    pub fn offset(&self, block: usize, slot: usize, kv_head: usize) -> usize {
        let _ = (block, slot, kv_head);
        todo!("day 16: PagedKv::offset")
    }
}

/// Attention of one query token (`H x D`, `num_heads` heads) over the first
/// `context_len` tokens of a sequence stored in `kv` through `table`.
///
/// - `query`: `num_heads * head_dim` f32, head-major (`[H, D]`).
/// - `kv`: the pool's keys and values (see [`PagedKv`]).
/// - `table`: the sequence's blocks in token order; at least
///   `ceil(context_len / block_size)` of them (later ones are not read).
/// - `context_len`: tokens attended over, `>= 1`.
/// - `scale`: multiplies the scores (usually `1 / sqrt(D)`).
/// - returns: `[H, D]` f32, head-major.
///
/// Errors: [`Error::Invalid`] (naming the numbers) when a buffer's length
/// disagrees with the shape, a size is 0, `num_heads` is not a multiple of
/// `num_kv_heads`, `context_len` is 0 or needs more blocks than `table`
/// has, or a block id is outside the pool; all checked before any
/// arithmetic.
///
/// Hints: per head, one pass for the scores (`kv.offset(table[t /
/// block_size], t % block_size, h / group)`) and their maximum, then
/// `exp(score - max)`, their sum, and the weighted sum of the values.
pub fn paged_attention(
    query: &[f32],
    num_heads: usize,
    kv: &PagedKv<'_>,
    table: &[BlockId],
    context_len: usize,
    scale: f32,
) -> Result<Vec<f32>> {
    let _ = (query, num_heads, kv, table, context_len, scale);
    todo!("day 16: paged_attention")
}
