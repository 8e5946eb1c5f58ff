//! Day 12: flash attention on slices (no MLX): the scalar oracle and the
//! tiled kernel with an online softmax, split over threads.
//!
//! Both compute, per batch row `n`, query head `h` and query `i`,
//! `out = softmax(scale * q_i . k_j + mask_ij over j) v`, query head `h`
//! reading kv head `h / G` (`G = H_q / H_kv`, GQA). The oracle
//! ([`attention_scalar`]) does it the obvious way, one query row of `S`
//! scores at a time; the kernel ([`flash_attention`]) never holds more than
//! a `BR x BC` tile of scores: per query row it keeps a running maximum
//! `m`, a running sum `l` and an output accumulator, and rescales them by
//! `exp(m_old - m_new)` when a later key tile raises the maximum. Results
//! agree with the oracle up to the order of f32 additions.
//!
//! Reference: Milakov and Gimelshein 2018, "Online normalizer calculation
//! for softmax"; Dao et al. 2022, "FlashAttention"; Dao 2023,
//! "FlashAttention-2" (Algorithm 1: queries in the outer loop); Dao et al.
//! 2023, "Flash-Decoding for long-context inference" (the split over `S`).

use half::{bf16, f16};
use tiny_llm_common::qmatrix::KernelError;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod tiles;

/// The sizes of one attention call (given). Row-major layouts: `q`
/// `N x H_q x L x D`, `k` `N x H_kv x S x D`, `v` `N x H_kv x S x D_v`,
/// `out` `N x H_q x L x D_v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    /// Batch rows `N`.
    pub n: usize,
    /// Query heads `H_q` (a multiple of `h_kv`).
    pub h_q: usize,
    /// Key/value heads `H_kv`.
    pub h_kv: usize,
    /// Queries per head `L` (the last `L` of the `S` positions).
    pub l: usize,
    /// Keys per head `S`.
    pub s: usize,
    /// Query/key width `D`.
    pub d: usize,
    /// Value width `D_v`.
    pub dv: usize,
}

/// The mask of a kernel call (given).
#[derive(Debug, Clone, Copy)]
pub enum Mask<'a> {
    /// Every query sees every key.
    None,
    /// Query `i` sees keys `0..=i + S - L` (needs `L <= S`).
    Causal,
    /// Additive: `data[n * st[0] + h * st[1] + i * st[2] + j * st[3]]` is
    /// added to the score of query `i` and key `j` of batch row `n`, query
    /// head `h` (f32; a stride of 0 broadcasts an axis).
    Additive {
        /// The mask's elements.
        data: &'a [f32],
        /// Element strides over `N`, `H_q`, `L`, `S`.
        strides: [usize; 4],
    },
}

/// A key/value element type: f32, bf16 or f16, read as f32 (given).
pub trait KvElement: Copy + Send + Sync + 'static {
    /// `src` as f32: `src` itself for f32, else converted into `buf`
    /// (`buf.len() >= src.len()`).
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];
}

impl KvElement for f32 {
    fn as_f32<'a>(src: &'a [f32], _buf: &'a mut [f32]) -> &'a [f32] {
        src
    }
}

impl KvElement for bf16 {
    fn as_f32<'a>(src: &'a [bf16], buf: &'a mut [f32]) -> &'a [f32] {
        let buf = &mut buf[..src.len()];
        // bf16 is the top half of an f32: a shift, exact
        for (o, x) in buf.iter_mut().zip(src) {
            *o = f32::from_bits((x.to_bits() as u32) << 16);
        }
        buf
    }
}

impl KvElement for f16 {
    fn as_f32<'a>(src: &'a [f16], buf: &'a mut [f32]) -> &'a [f32] {
        let buf = &mut buf[..src.len()];
        for (o, x) in buf.iter_mut().zip(src) {
            *o = x.to_f32();
        }
        buf
    }
}

/// Checks the slices against `dims` and the mask.
///
/// Errors: [`KernelError::Unsupported`] when `H_kv` is 0 or does not divide
/// `H_q`, or the mask is causal with `L > S`; [`KernelError::Length`]
/// naming `"q"`, `"k"`, `"v"`, `"out"` or `"mask"` when a slice is too
/// short or long for `dims`.
///
/// Hints: compare each length with the product of its dims and return
/// `KernelError::Length { what: "q", expected, why: "N x H_q x L x D = ..."
/// .into(), got }`; for the mask, the largest index it will be read at is
/// `sum over axes of (dim - 1) * stride`.
pub fn check_attention<K, V>(
    q: &[f32],
    k: &[K],
    v: &[V],
    dims: &AttentionDims,
    mask: &Mask<'_>,
    out: &[f32],
) -> Result<(), KernelError> {
    let _ = (q, k, v, dims, mask, out);
    todo!("day 12: check_attention")
}

/// The oracle: plain two-pass attention, one query row at a time (`S`
/// scores, their maximum, `exp`, the sum, then `sum_j p_j v_j / sum`).
///
/// Same arguments, layouts and errors as [`flash_attention`]; slow and
/// obviously right. A row that sees no key gives NaN.
///
/// Hints: for each (n, h, i): kv head `n * H_kv + h / G`; scores
/// `s_j = (scale * q_i) . k_j`, then `-inf` for a causal `j > i + S - L`
/// or `+ mask` for an additive one; `m = max_j s_j`, `p_j = exp(s_j - m)`,
/// `out = sum_j p_j v_j / sum_j p_j`. `KvElement::as_f32` converts a whole
/// head of K or V once.
pub fn attention_scalar<K: KvElement, V: KvElement>(
    q: &[f32],
    k: &[K],
    v: &[V],
    dims: &AttentionDims,
    scale: f32,
    mask: Mask<'_>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let _ = (q, k, v, dims, scale, mask, out);
    todo!("day 12: attention_scalar")
}

/// Attention as [`attention_scalar`], tiled, with an online softmax.
///
/// - `q`: `N x H_q x L x D` f32; `k`: `N x H_kv x S x D`, `v`:
///   `N x H_kv x S x D_v`, f32, bf16 or f16 each; row-major.
/// - `scale`: multiplies the queries (usually `1 / sqrt(D)`).
/// - `mask`: [`Mask`].
/// - `out`: `N x H_q x L x D_v` f32, overwritten. A query row that sees no
///   key (every score `-inf`) gives NaN, as MLX's attention does.
///
/// Memory: scratch of one `BR x BC` score tile, one `BR x D` query tile,
/// one `BC x D` key and `BC x D_v` value tile (bf16/f16 converted there),
/// per task, whatever `L` and `S` are; the decode split adds `D_v + 2`
/// floats per query row and chunk. No `L x S` buffer.
///
/// Errors: as [`check_attention`].
///
/// Hints: start from the oracle and keep the property test green
/// (`cargo xtask check day12`):
/// 1. Tiles: for a tile of up to 32 query rows, walk the keys 64 at a
///    time; per row keep `m` (running max, `-inf` at first), `l` (running
///    sum) and `acc` (`D_v` floats). For a key tile: scores `x_c`,
///    `m_new = max(m, max_c x_c)`, `alpha = exp(m - m_new)`,
///    `p_c = exp(x_c - m_new)`, `l = alpha * l + sum p_c`,
///    `acc = alpha * acc + sum_c p_c v_c`; at the end `out = acc / l`
///    (NaN when `m` is still `-inf`).
/// 2. Causal: row `i` sees keys `j <= i + S - L`; stop the key loop after
///    the last row's last visible key, and mask inside the one tile that
///    straddles the diagonal.
/// 3. Threads: `out.par_chunks_mut(L * D_v)` gives each (n, h) its rows,
///    then `par_chunks_mut(32 * D_v)` each query tile; keep small calls on
///    one thread. Decode (`L = 1`): split the keys into chunks, one task
///    each with its own `(m, l, acc)`, and merge them with weights
///    `exp(m_c - max m)`.
/// 4. SIMD: an AVX2 + FMA dot product (keys x query) and axpy
///    (`acc += p * v`) behind `is_x86_feature_detected!`, the plain loops as
///    the fallback.
pub fn flash_attention<K: KvElement, V: KvElement>(
    q: &[f32],
    k: &[K],
    v: &[V],
    dims: &AttentionDims,
    scale: f32,
    mask: Mask<'_>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let _ = (q, k, v, dims, scale, mask, out);
    todo!("day 12: flash_attention")
}
