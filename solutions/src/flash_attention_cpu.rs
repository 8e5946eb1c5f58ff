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
use std::sync::OnceLock;
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
/// floats per chunk. No `L x S` buffer.
///
/// Errors: as [`check_attention`].
///
/// Implementation: tiles of `BR = 32` queries by `BC = 64` keys. Prefill:
/// rayon over (batch row, head, query tile); a call below about 2^18
/// multiply-adds stays on the calling thread. A key tile wholly in a
/// query tile's causal future is never read, the diagonal tile is masked
/// element by element. Decode (`L = 1`, `S >= 512`): `S` is split into
/// chunks (flash-decoding), each with its own `m`, `l` and accumulator,
/// merged at the end by `exp(m_c - max m)`. AVX2 + FMA dot products and
/// axpys on x86_64 when the CPU has them (checked once), portable loops
/// otherwise (`TINY_LLM_FLASH=portable` forces them).
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
    if dims.l == 1 && dims.s >= 2 * SPLIT_MIN && threads > 1 {
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

/// Queries per tile.
const BR: usize = 32;
/// Keys per tile.
const BC: usize = 64;
/// The shortest chunk of keys a decode split gives a task.
const SPLIT_MIN: usize = 256;
/// Multiply-adds below which a call stays on the calling thread.
const MIN_PARALLEL_WORK: usize = 1 << 18;

/// One call's inputs.
struct Ctx<'a, K, V> {
    q: &'a [f32],
    k: &'a [K],
    v: &'a [V],
    dims: AttentionDims,
    scale: f32,
    mask: Mask<'a>,
    isa: Isa,
}

/// The running state of `rows` query rows: `m`, `l` and the accumulators
/// (`rows x D_v`).
struct RowState {
    m: Vec<f32>,
    l: Vec<f32>,
    acc: Vec<f32>,
}

impl RowState {
    fn new(rows: usize, dv: usize) -> RowState {
        RowState {
            m: vec![f32::NEG_INFINITY; rows],
            l: vec![0.0; rows],
            acc: vec![0.0; rows * dv],
        }
    }
}

/// Every query tile of head `b` (`b = n * H_q + h`) on this thread.
fn prefill_head<K: KvElement, V: KvElement>(ctx: &Ctx<'_, K, V>, b: usize, head: &mut [f32]) {
    for (t, o) in head.chunks_mut(BR * ctx.dims.dv).enumerate() {
        query_tile(ctx, b, t * BR, o);
    }
}

/// Query rows `i0..i0 + o.len() / D_v` of head `b` over every key they
/// see, written to `o`.
fn query_tile<K: KvElement, V: KvElement>(ctx: &Ctx<'_, K, V>, b: usize, i0: usize, o: &mut [f32]) {
    let dv = ctx.dims.dv;
    let rows = o.len() / dv;
    let mut st = RowState::new(rows, dv);
    run_keys(ctx, b, i0, rows, 0, ctx.dims.s, &mut st);
    for r in 0..rows {
        let inv = if st.m[r] == f32::NEG_INFINITY {
            f32::NAN
        } else {
            1.0 / st.l[r]
        };
        for (oc, a) in o[r * dv..(r + 1) * dv].iter_mut().zip(&st.acc[r * dv..]) {
            *oc = a * inv;
        }
    }
}

/// Flash-decoding: every head's `S` keys split into chunks, one task a
/// chunk, then the chunks merged per head.
fn decode_split<K: KvElement, V: KvElement>(ctx: &Ctx<'_, K, V>, out: &mut [f32], threads: usize) {
    let AttentionDims { n, h_q, s, dv, .. } = ctx.dims;
    let heads = n * h_q;
    let chunks = (threads * 4).div_ceil(heads).clamp(1, s / SPLIT_MIN);
    let len = s.div_ceil(chunks);
    let parts: Vec<RowState> = (0..heads * chunks)
        .into_par_iter()
        .map(|t| {
            let (b, c) = (t / chunks, t % chunks);
            let mut st = RowState::new(1, dv);
            let j0 = (c * len).min(s);
            run_keys(ctx, b, 0, 1, j0, (j0 + len).min(s), &mut st);
            st
        })
        .collect();
    for (b, o) in out.chunks_exact_mut(dv).enumerate() {
        let parts = &parts[b * chunks..(b + 1) * chunks];
        let m = parts
            .iter()
            .map(|p| p.m[0])
            .fold(f32::NEG_INFINITY, f32::max);
        if m == f32::NEG_INFINITY {
            o.fill(f32::NAN);
            continue;
        }
        o.fill(0.0);
        let mut l = 0.0f32;
        for p in parts.iter().filter(|p| p.m[0] > f32::NEG_INFINITY) {
            let w = (p.m[0] - m).exp();
            l += w * p.l[0];
            for (oc, a) in o.iter_mut().zip(&p.acc) {
                *oc += w * a;
            }
        }
        for oc in o.iter_mut() {
            *oc /= l;
        }
    }
}

/// Query rows `i0..i0 + rows` of head `b` over keys `j_lo..j_hi` (those
/// they may see), tile by tile, folded into `st`.
fn run_keys<K: KvElement, V: KvElement>(
    ctx: &Ctx<'_, K, V>,
    b: usize,
    i0: usize,
    rows: usize,
    j_lo: usize,
    j_hi: usize,
    st: &mut RowState,
) {
    match ctx.isa {
        Isa::Portable => tiles::<Portable, K, V>(ctx, b, i0, rows, j_lo, j_hi, st),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx2 is only chosen when the CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { tiles_avx2(ctx, b, i0, rows, j_lo, j_hi, st) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tiles_avx2<K: KvElement, V: KvElement>(
    ctx: &Ctx<'_, K, V>,
    b: usize,
    i0: usize,
    rows: usize,
    j_lo: usize,
    j_hi: usize,
    st: &mut RowState,
) {
    tiles::<avx2::Avx2, K, V>(ctx, b, i0, rows, j_lo, j_hi, st)
}

/// The tile loop (FlashAttention-2's inner loop) with the vector ops of `S`.
#[inline(always)]
fn tiles<S: VecOps, K: KvElement, V: KvElement>(
    ctx: &Ctx<'_, K, V>,
    b: usize,
    i0: usize,
    rows: usize,
    j_lo: usize,
    j_hi: usize,
    st: &mut RowState,
) {
    let AttentionDims {
        h_q,
        h_kv,
        l,
        s,
        d,
        dv,
        ..
    } = ctx.dims;
    let (n, h) = (b / h_q, b % h_q);
    let kv = n * h_kv + h / (h_q / h_kv);
    let causal = matches!(ctx.mask, Mask::Causal);
    // keys row r may see: j <= i0 + r + shift
    let shift = s - l.min(s);
    let j_hi = if causal {
        j_hi.min(i0 + rows + shift)
    } else {
        j_hi
    };
    let mut qt = vec![0f32; rows * d];
    for (x, y) in qt.iter_mut().zip(&ctx.q[(b * l + i0) * d..]) {
        *x = y * ctx.scale;
    }
    let (mut kbuf, mut vbuf) = (vec![0f32; BC * d], vec![0f32; BC * dv]);
    let mut sc = vec![0f32; rows * BC];
    let mut j0 = j_lo;
    while j0 < j_hi {
        let nc = BC.min(j_hi - j0);
        let kt = K::as_f32(&ctx.k[(kv * s + j0) * d..(kv * s + j0 + nc) * d], &mut kbuf);
        let vt = V::as_f32(
            &ctx.v[(kv * s + j0) * dv..(kv * s + j0 + nc) * dv],
            &mut vbuf,
        );
        for r in 0..rows {
            S::dots(&qt[r * d..(r + 1) * d], kt, d, &mut sc[r * BC..r * BC + nc]);
        }
        match ctx.mask {
            Mask::Causal if j0 + nc > i0 + shift + 1 => {
                for r in 0..rows {
                    let first_hidden = (i0 + r + shift + 1).saturating_sub(j0);
                    for x in sc[r * BC + first_hidden.min(nc)..r * BC + nc].iter_mut() {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            Mask::Additive { data, strides: t } => {
                for r in 0..rows {
                    let at = n * t[0] + h * t[1] + (i0 + r) * t[2] + j0 * t[3];
                    for (c, x) in sc[r * BC..r * BC + nc].iter_mut().enumerate() {
                        *x += data[at + c * t[3]];
                    }
                }
            }
            _ => {}
        }
        for r in 0..rows {
            let row = &mut sc[r * BC..r * BC + nc];
            let m_new = row.iter().copied().fold(st.m[r], f32::max);
            if m_new == f32::NEG_INFINITY {
                continue; // nothing visible yet
            }
            let alpha = (st.m[r] - m_new).exp();
            let mut sum = 0.0f32;
            for x in row.iter_mut() {
                *x = (*x - m_new).exp();
                sum += *x;
            }
            st.l[r] = st.l[r] * alpha + sum;
            st.m[r] = m_new;
            let acc = &mut st.acc[r * dv..(r + 1) * dv];
            if alpha != 1.0 {
                S::scale(acc, alpha);
            }
            for (c, p) in row.iter().enumerate() {
                if *p != 0.0 {
                    S::axpy(acc, *p, &vt[c * dv..(c + 1) * dv]);
                }
            }
        }
        j0 += nc;
    }
}

/// The vector operations of the tile loop.
trait VecOps {
    /// `out[c] = a . keys[c * d..(c + 1) * d]` for each `c`.
    fn dots(a: &[f32], keys: &[f32], d: usize, out: &mut [f32]);
    /// `y += a * x`.
    fn axpy(y: &mut [f32], a: f32, x: &[f32]);
    /// `y *= a`.
    fn scale(y: &mut [f32], a: f32);
}

/// Portable loops (the compiler may vectorize them).
struct Portable;

impl VecOps for Portable {
    #[inline(always)]
    fn dots(a: &[f32], keys: &[f32], d: usize, out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate() {
            *o = a
                .iter()
                .zip(&keys[c * d..(c + 1) * d])
                .map(|(x, y)| x * y)
                .sum();
        }
    }
    #[inline(always)]
    fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi += a * xi;
        }
    }
    #[inline(always)]
    fn scale(y: &mut [f32], a: f32) {
        y.iter_mut().for_each(|v| *v *= a);
    }
}

/// The instruction set the kernel uses on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// Detected once per process.
fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var("TINY_LLM_FLASH").is_ok_and(|v| v == "portable") {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
        Isa::Portable
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::VecOps;
    use std::arch::x86_64::*;

    /// AVX2 + FMA, 8 lanes; only inlined into `#[target_feature]` code.
    pub(super) struct Avx2;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Four dot products of `a` with rows `k[0..4]` (length `d`).
    #[inline(always)]
    unsafe fn dot4(a: *const f32, k: [*const f32; 4], d: usize) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut x = 0;
        while x + 8 <= d {
            let av = _mm256_loadu_ps(a.add(x));
            for (j, kj) in k.iter().enumerate() {
                acc[j] = _mm256_fmadd_ps(av, _mm256_loadu_ps(kj.add(x)), acc[j]);
            }
            x += 8;
        }
        let mut out = acc.map(|v| hsum(v));
        for t in x..d {
            for (j, kj) in k.iter().enumerate() {
                out[j] += *a.add(t) * *kj.add(t);
            }
        }
        out
    }

    impl VecOps for Avx2 {
        #[inline(always)]
        fn dots(a: &[f32], keys: &[f32], d: usize, out: &mut [f32]) {
            let (ap, kp) = (a.as_ptr(), keys.as_ptr());
            let mut c = 0;
            // SAFETY: rows c..c + 4 < out.len() of `keys` (out.len() x d)
            // exist; only called from `tiles_avx2` (AVX2 + FMA).
            unsafe {
                while c + 4 <= out.len() {
                    let r = dot4(ap, std::array::from_fn(|j| kp.add((c + j) * d)), d);
                    out[c..c + 4].copy_from_slice(&r);
                    c += 4;
                }
                while c < out.len() {
                    out[c] = dot4(ap, [kp.add(c * d); 4], d)[0];
                    c += 1;
                }
            }
        }

        #[inline(always)]
        fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
            let n = y.len().min(x.len());
            let (yp, xp) = (y.as_mut_ptr(), x.as_ptr());
            // SAFETY: indices < n; AVX2 + FMA as above.
            unsafe {
                let av = _mm256_set1_ps(a);
                let mut i = 0;
                while i + 8 <= n {
                    let r =
                        _mm256_fmadd_ps(av, _mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(yp.add(i)));
                    _mm256_storeu_ps(yp.add(i), r);
                    i += 8;
                }
                for t in i..n {
                    *yp.add(t) += a * *xp.add(t);
                }
            }
        }

        #[inline(always)]
        fn scale(y: &mut [f32], a: f32) {
            let n = y.len();
            let yp = y.as_mut_ptr();
            // SAFETY: indices < n; AVX2 as above.
            unsafe {
                let av = _mm256_set1_ps(a);
                let mut i = 0;
                while i + 8 <= n {
                    _mm256_storeu_ps(yp.add(i), _mm256_mul_ps(av, _mm256_loadu_ps(yp.add(i))));
                    i += 8;
                }
                for t in i..n {
                    *yp.add(t) *= a;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 and portable vector ops agree on odd lengths.
    #[test]
    fn vector_ops_agree() {
        let a: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
        let keys: Vec<f32> = (0..19 * 7).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut p, mut y) = (vec![0f32; 7], vec![0f32; 7]);
        Portable::dots(&a, &keys, 19, &mut p);
        #[cfg(target_arch = "x86_64")]
        if isa() == Isa::Avx2 {
            avx2::Avx2::dots(&a, &keys, 19, &mut y);
            for (x, z) in p.iter().zip(&y) {
                assert!((x - z).abs() < 1e-5, "{p:?} {y:?}");
            }
            let (mut u, mut w) = (a.clone(), a.clone());
            Portable::axpy(&mut u, 0.5, &keys[..19]);
            avx2::Avx2::axpy(&mut w, 0.5, &keys[..19]);
            Portable::scale(&mut u, 0.25);
            avx2::Avx2::scale(&mut w, 0.25);
            assert_eq!(u, w);
        }
        let _ = &mut y;
    }
}
