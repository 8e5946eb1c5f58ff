//! Day 12: the tile loop of `flash_attention` (a private part of
//! `flash_attention_cpu`): per query tile, key tiles folded into a running
//! max, sum and accumulator (FlashAttention-2's inner loop), the
//! flash-decoding split, and the choice of vector operations.

use super::{AttentionDims, KvElement, Mask};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Queries per tile.
pub(super) const BR: usize = 32;
/// Keys per tile.
pub(super) const BC: usize = 64;
/// The shortest chunk of keys a decode split gives a task.
pub(super) const SPLIT_MIN: usize = 256;
/// Multiply-adds below which a call stays on the calling thread.
pub(super) const MIN_PARALLEL_WORK: usize = 1 << 18;

/// One call's inputs.
pub(super) struct Ctx<'a, K, V> {
    pub(super) q: &'a [f32],
    pub(super) k: &'a [K],
    pub(super) v: &'a [V],
    pub(super) dims: AttentionDims,
    pub(super) scale: f32,
    pub(super) mask: Mask<'a>,
    pub(super) isa: Isa,
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
pub(super) fn prefill_head<K: KvElement, V: KvElement>(
    ctx: &Ctx<'_, K, V>,
    b: usize,
    head: &mut [f32],
) {
    for (t, o) in head.chunks_mut(BR * ctx.dims.dv).enumerate() {
        query_tile(ctx, b, t * BR, o);
    }
}

/// Query rows `i0..i0 + o.len() / D_v` of head `b` over every key they
/// see, written to `o`.
pub(super) fn query_tile<K: KvElement, V: KvElement>(
    ctx: &Ctx<'_, K, V>,
    b: usize,
    i0: usize,
    o: &mut [f32],
) {
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
/// chunk (all `L <= BR` query rows), then the chunks merged per row.
pub(super) fn decode_split<K: KvElement, V: KvElement>(
    ctx: &Ctx<'_, K, V>,
    out: &mut [f32],
    threads: usize,
) {
    let AttentionDims {
        n, h_q, l, s, dv, ..
    } = ctx.dims;
    let heads = n * h_q;
    let chunks = (threads * 4).div_ceil(heads).clamp(1, s / SPLIT_MIN);
    let len = s.div_ceil(chunks);
    let parts: Vec<RowState> = (0..heads * chunks)
        .into_par_iter()
        .map(|t| {
            let (b, c) = (t / chunks, t % chunks);
            let mut st = RowState::new(l, dv);
            let j0 = (c * len).min(s);
            run_keys(ctx, b, 0, l, j0, (j0 + len).min(s), &mut st);
            st
        })
        .collect();
    for (i, o) in out.chunks_exact_mut(dv).enumerate() {
        let (b, r) = (i / l, i % l);
        let parts = &parts[b * chunks..(b + 1) * chunks];
        let m = parts
            .iter()
            .map(|p| p.m[r])
            .fold(f32::NEG_INFINITY, f32::max);
        if m == f32::NEG_INFINITY {
            o.fill(f32::NAN);
            continue;
        }
        o.fill(0.0);
        let mut sum = 0.0f32;
        for p in parts.iter().filter(|p| p.m[r] > f32::NEG_INFINITY) {
            let w = (p.m[r] - m).exp();
            sum += w * p.l[r];
            for (oc, a) in o.iter_mut().zip(&p.acc[r * dv..(r + 1) * dv]) {
                *oc += w * a;
            }
        }
        for oc in o.iter_mut() {
            *oc /= sum;
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
    tiles::<super::avx2::Avx2, K, V>(ctx, b, i0, rows, j_lo, j_hi, st)
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
            let sum = S::exp_sub(row, m_new);
            st.l[r] = st.l[r] * alpha + sum;
            st.m[r] = m_new;
            let acc = &mut st.acc[r * dv..(r + 1) * dv];
            if alpha != 1.0 {
                S::scale(acc, alpha);
            }
            S::pv(acc, row, vt);
        }
        j0 += nc;
    }
}

/// The vector operations of the tile loop.
pub(super) trait VecOps {
    /// `out[c] = a . keys[c * d..(c + 1) * d]` for each `c`.
    fn dots(a: &[f32], keys: &[f32], d: usize, out: &mut [f32]);
    /// `y += a * x`.
    fn axpy(y: &mut [f32], a: f32, x: &[f32]);
    /// `y *= a`.
    fn scale(y: &mut [f32], a: f32);
    /// `acc += sum_c p[c] * v[c * D_v..(c + 1) * D_v]` (`D_v = acc.len()`).
    fn pv(acc: &mut [f32], p: &[f32], v: &[f32]);
    /// `x = exp(x - m)` for each `x` (0 where `x = -inf`); returns the sum.
    fn exp_sub(x: &mut [f32], m: f32) -> f32;
}

/// Portable loops (the compiler may vectorize them).
pub(super) struct Portable;

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
    fn pv(acc: &mut [f32], p: &[f32], v: &[f32]) {
        let dv = acc.len();
        for (c, pc) in p.iter().enumerate() {
            if *pc != 0.0 {
                Self::axpy(acc, *pc, &v[c * dv..(c + 1) * dv]);
            }
        }
    }
    #[inline(always)]
    fn scale(y: &mut [f32], a: f32) {
        y.iter_mut().for_each(|v| *v *= a);
    }
    #[inline(always)]
    fn exp_sub(x: &mut [f32], m: f32) -> f32 {
        let mut sum = 0.0f32;
        for v in x.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        sum
    }
}

/// The instruction set the kernel uses on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// Detected once per process.
pub(super) fn isa() -> Isa {
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
