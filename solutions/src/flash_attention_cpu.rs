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
use rayon::prelude::*;
use tiles::{decode_split, isa, prefill_head, query_tile, Ctx, BR, MIN_PARALLEL_WORK, SPLIT_MIN};
use tiny_llm_common::qmatrix::KernelError;

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
pub fn check_attention<K, V>(
    q: &[f32],
    k: &[K],
    v: &[V],
    dims: &AttentionDims,
    mask: &Mask<'_>,
    out: &[f32],
) -> Result<(), KernelError> {
    let AttentionDims {
        n,
        h_q,
        h_kv,
        l,
        s,
        d,
        dv,
    } = *dims;
    if h_kv == 0 || h_q % h_kv != 0 {
        return Err(KernelError::Unsupported(format!(
            "H_q = {h_q} must be a multiple of H_kv = {h_kv} (H_kv > 0)"
        )));
    }
    let len = |what: &'static str, got: usize, dims: [usize; 4], names: &str| {
        let expected = dims.iter().product();
        if got == expected {
            Ok(())
        } else {
            let why = format!("{names} = {dims:?}");
            Err(KernelError::Length {
                what,
                expected,
                why,
                got,
            })
        }
    };
    len("q", q.len(), [n, h_q, l, d], "N x H_q x L x D")?;
    len("k", k.len(), [n, h_kv, s, d], "N x H_kv x S x D")?;
    len("v", v.len(), [n, h_kv, s, dv], "N x H_kv x S x D_v")?;
    len("out", out.len(), [n, h_q, l, dv], "N x H_q x L x D_v")?;
    match mask {
        Mask::Causal if l > s => Err(KernelError::Unsupported(format!(
            "a causal mask needs L <= S, got L = {l}, S = {s}"
        ))),
        Mask::Additive { data, strides } if n * h_q * l * s > 0 => {
            let last: usize = [n, h_q, l, s]
                .iter()
                .zip(strides)
                .map(|(dim, st)| (dim - 1) * st)
                .sum();
            if last < data.len() {
                Ok(())
            } else {
                Err(KernelError::Length {
                    what: "mask",
                    expected: last + 1,
                    why: format!("at least, for strides {strides:?} over N x H_q x L x S"),
                    got: data.len(),
                })
            }
        }
        _ => Ok(()),
    }
}

/// The oracle: plain two-pass attention, one query row at a time (`S`
/// scores, their maximum, `exp`, the sum, then `sum_j p_j v_j / sum`).
///
/// Same arguments, layouts and errors as [`flash_attention`]; slow and
/// obviously right. A row that sees no key gives NaN.
pub fn attention_scalar<K: KvElement, V: KvElement>(
    q: &[f32],
    k: &[K],
    v: &[V],
    dims: &AttentionDims,
    scale: f32,
    mask: Mask<'_>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_attention(q, k, v, dims, &mask, out)?;
    if out.is_empty() {
        return Ok(());
    }
    let AttentionDims {
        h_q,
        h_kv,
        l,
        s,
        d,
        dv,
        ..
    } = *dims;
    let g = h_q / h_kv;
    let (mut kf, mut vf) = (vec![0f32; s * d], vec![0f32; s * dv]);
    let mut scores = vec![0f32; s];
    for (b, out_head) in out.chunks_exact_mut(l * dv).enumerate() {
        let (n, h) = (b / h_q, b % h_q);
        let kv = n * h_kv + h / g;
        let kh = K::as_f32(&k[kv * s * d..(kv + 1) * s * d], &mut kf);
        let vh = V::as_f32(&v[kv * s * dv..(kv + 1) * s * dv], &mut vf);
        for (i, o) in out_head.chunks_exact_mut(dv).enumerate() {
            let qi: Vec<f32> = q[(b * l + i) * d..(b * l + i + 1) * d]
                .iter()
                .map(|x| x * scale)
                .collect();
            for (j, sc) in scores.iter_mut().enumerate() {
                let dot: f32 = qi
                    .iter()
                    .zip(&kh[j * d..(j + 1) * d])
                    .map(|(a, b)| a * b)
                    .sum();
                *sc = match mask {
                    Mask::Causal if j > i + s - l => f32::NEG_INFINITY,
                    Mask::Additive { data, strides: st } => {
                        dot + data[n * st[0] + h * st[1] + i * st[2] + j * st[3]]
                    }
                    _ => dot,
                };
            }
            let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            o.fill(0.0);
            for (j, sc) in scores.iter().enumerate() {
                let p = (sc - m).exp();
                sum += p;
                for (oc, vc) in o.iter_mut().zip(&vh[j * dv..(j + 1) * dv]) {
                    *oc += p * vc;
                }
            }
            for oc in o.iter_mut() {
                *oc = if m == f32::NEG_INFINITY {
                    f32::NAN
                } else {
                    *oc / sum
                };
            }
        }
    }
    Ok(())
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
/// Implementation: tiles of `BR = 32` queries by `BC = 64` keys. Prefill:
/// rayon over (batch row, head, query tile); a call below about 2^18
/// multiply-adds stays on the calling thread. A key tile wholly in a
/// query tile's causal future is never read, the diagonal tile is masked
/// element by element. Decode (`L = 1`): the `G` query heads of a kv head
/// are taken as `G` query rows of one tile, so a key tile is read once for
/// all of them. Few queries (`L <= BR`, after that regrouping) over
/// `S >= 512` keys: `S` is split into chunks (flash-decoding), each with
/// its own `m`, `l` and accumulators, merged at the end by
/// `exp(m_c - max m)`. AVX2 + FMA dot products and
/// axpys and a vectorized `exp` (Cephes' polynomial, about 2 ulp) on
/// x86_64 when the CPU has them (checked once), portable loops and
/// `f32::exp` otherwise (`TINY_LLM_FLASH=portable` forces them).
/// Measured with `solutions/examples/flash_bench.rs` (dev profile, which
/// optimizes the kit's crates; 2-core AMD EPYC shared with other builds at
/// load 5-8, so wall times are rough, 2026-12-02), Qwen2.5-0.5B's shapes
/// (14 query heads, 2 kv heads, D = 64), f32 K/V, against MLX's
/// `fast::scaled_dot_product_attention` in the same run: decode over 128
/// keys 0.05 ms vs 0.12 ms, over 4096 keys 0.76 ms vs 3.0 ms (1.5 ms
/// before the query heads of a kv head were grouped); 128 x 128 causal 2.0
/// vs 4.8 ms; 512 x 512 causal 63 vs 99 ms; 1024 x 4096 causal 1.9 s vs
/// 2.6 s (MLX's CPU path materialises the scores and runs OpenBLAS sgemm;
/// this kernel's scores are dot products of 4 keys at a time, not a
/// register-blocked matmul: the next step for long prefills).
pub fn flash_attention<K: KvElement, V: KvElement>(
    q: &[f32],
    k: &[K],
    v: &[V],
    dims: &AttentionDims,
    scale: f32,
    mask: Mask<'_>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_attention(q, k, v, dims, &mask, out)?;
    if out.is_empty() {
        return Ok(());
    }
    let g = dims.h_q / dims.h_kv;
    if dims.l == 1 && g > 1 {
        // One query per head: the G query heads of a kv head become G
        // query rows of that head (same memory), so each key tile is read
        // once for all of them. L = 1 sees every key: causal is none.
        let rows = AttentionDims {
            h_q: dims.h_kv,
            l: g,
            ..*dims
        };
        let mask = match mask {
            Mask::Additive { data, strides: t } => Mask::Additive {
                data,
                strides: [t[0], t[1] * g, t[1], t[3]],
            },
            _ => Mask::None,
        };
        return flash_attention(q, k, v, &rows, scale, mask, out);
    }
    let ctx = Ctx {
        q,
        k,
        v,
        dims: *dims,
        scale,
        mask,
        isa: isa(),
    };
    let work = dims.n * dims.h_q * dims.l * dims.s * (dims.d + dims.dv);
    let threads = rayon::current_num_threads();
    if dims.l <= BR && dims.s >= 2 * SPLIT_MIN && threads > 1 {
        decode_split(&ctx, out, threads);
    } else if work < MIN_PARALLEL_WORK || threads <= 1 {
        for (b, head) in out.chunks_exact_mut(dims.l * dims.dv).enumerate() {
            prefill_head(&ctx, b, head);
        }
    } else {
        out.par_chunks_exact_mut(dims.l * dims.dv)
            .enumerate()
            .for_each(|(b, head)| {
                head.par_chunks_mut(BR * dims.dv)
                    .enumerate()
                    .for_each(|(t, o)| query_tile(&ctx, b, t * BR, o));
            });
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
mod avx2;
mod tiles;
