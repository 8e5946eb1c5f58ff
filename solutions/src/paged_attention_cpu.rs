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
        ((block * self.block_size + slot) * self.num_kv_heads + kv_head) * self.head_dim
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
pub fn paged_attention(
    query: &[f32],
    num_heads: usize,
    kv: &PagedKv<'_>,
    table: &[BlockId],
    context_len: usize,
    scale: f32,
) -> Result<Vec<f32>> {
    let (bs, hkv, d) = (kv.block_size, kv.num_kv_heads, kv.head_dim);
    if num_heads == 0 || hkv == 0 || d == 0 || bs == 0 || kv.num_blocks == 0 {
        return Err(Error::Invalid(format!(
            "paged_attention: num_heads {num_heads}, num_kv_heads {hkv}, head_dim {d}, \
             block_size {bs}, num_blocks {} must all be >= 1",
            kv.num_blocks
        )));
    }
    if !num_heads.is_multiple_of(hkv) {
        return Err(Error::Invalid(format!(
            "paged_attention: num_heads {num_heads} is not a multiple of num_kv_heads {hkv}"
        )));
    }
    if query.len() != num_heads * d {
        return Err(Error::Invalid(format!(
            "paged_attention: query has {} values, expected num_heads {num_heads} x head_dim \
             {d} = {}",
            query.len(),
            num_heads * d
        )));
    }
    let storage = kv.num_blocks * bs * hkv * d;
    for (name, buf) in [("keys", kv.keys), ("values", kv.values)] {
        if buf.len() != storage {
            return Err(Error::Invalid(format!(
                "paged_attention: {name} has {} values, expected [num_blocks {}, block_size \
                 {bs}, num_kv_heads {hkv}, head_dim {d}] = {storage}",
                buf.len(),
                kv.num_blocks
            )));
        }
    }
    let needed = context_len.div_ceil(bs);
    if context_len == 0 || needed > table.len() {
        return Err(Error::Invalid(format!(
            "paged_attention: context_len {context_len} needs {needed} blocks of {bs} tokens, \
             the table has {} (and context_len must be >= 1)",
            table.len()
        )));
    }
    if let Some(b) = table[..needed].iter().find(|b| b.index() >= kv.num_blocks) {
        return Err(Error::Invalid(format!(
            "paged_attention: {b} is outside the pool of {} blocks",
            kv.num_blocks
        )));
    }
    let group = num_heads / hkv;
    let mut out = vec![0f32; num_heads * d];
    let mut scores = vec![0f32; context_len];
    for h in 0..num_heads {
        let q = &query[h * d..(h + 1) * d];
        let kvh = h / group;
        let mut max = f32::NEG_INFINITY;
        for (t, s) in scores.iter_mut().enumerate() {
            let o = kv.offset(table[t / bs].index(), t % bs, kvh);
            let k = &kv.keys[o..o + d];
            *s = scale * q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>();
            max = max.max(*s);
        }
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let o_h = &mut out[h * d..(h + 1) * d];
        for (t, &w) in scores.iter().enumerate() {
            let o = kv.offset(table[t / bs].index(), t % bs, kvh);
            let v = &kv.values[o..o + d];
            for (acc, &x) in o_h.iter_mut().zip(v) {
                *acc += w * x;
            }
        }
        for acc in o_h.iter_mut() {
            *acc /= sum;
        }
    }
    Ok(out)
}
