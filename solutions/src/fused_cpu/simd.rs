//! The fast kernels' inner loops (day 11, [`super`]): AVX2 + FMA where
//! the CPU has them, else portable loops over blocks of 8 that the
//! compiler vectorizes. The polynomial `exp` is Cephes' `expf` (module
//! docs of [`super`]).

use super::Isa;

pub(super) fn sum_squares(isa: Isa, x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2(isa) {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { x86::sum_squares(x) };
    }
    let _ = avx2(isa);
    let mut acc = [0f32; 8];
    let mut blocks = x.chunks_exact(8);
    for b in &mut blocks {
        for (a, v) in acc.iter_mut().zip(b) {
            *a += v * v;
        }
    }
    let tail: f32 = blocks.remainder().iter().map(|v| v * v).sum();
    acc.iter().sum::<f32>() + tail
}

/// `out = x * r * w` (the oracle's order of products).
pub(super) fn scale_mul(isa: Isa, x: &[f32], r: f32, w: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2(isa) {
        // SAFETY: as above; the slices have the same length.
        return unsafe { x86::scale_mul(x, r, w, out) };
    }
    let _ = isa;
    for ((o, v), w) in out.iter_mut().zip(x).zip(w) {
        *o = v * r * w;
    }
}

/// One head of RoPE: `x` and `out` of `D`, `c` and `s` of `D/2`.
pub(super) fn rotate(isa: Isa, x: &[f32], c: &[f32], s: &[f32], trad: bool, out: &mut [f32]) {
    let half = c.len();
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if avx2(isa) && !trad {
        // SAFETY: as above; x and out hold 2 * half, c and s half.
        i = unsafe { x86::rotate_halves(x, c, s, out) };
    }
    let _ = isa;
    for i in i..half {
        let (a, b) = if trad {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        };
        out[a] = x[a] * c[i] - x[b] * s[i];
        out[b] = x[a] * s[i] + x[b] * c[i];
    }
}

pub(super) fn swiglu(isa: Isa, g: &[f32], u: &[f32], out: &mut [f32]) {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if avx2(isa) {
        // SAFETY: as above; the slices have the same length.
        i = unsafe { x86::swiglu(g, u, out) };
    }
    let _ = isa;
    for ((o, g), u) in out[i..].iter_mut().zip(&g[i..]).zip(&u[i..]) {
        *o = g / (1.0 + exp_poly(-g)) * u;
    }
}

pub(super) fn softmax_row(isa: Isa, x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2(isa) {
        // SAFETY: as above; the slices have the same length.
        return unsafe { x86::softmax_row(x, out) };
    }
    let _ = isa;
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let mut acc = [0f32; 8];
    for (ob, xb) in out.chunks_mut(8).zip(x.chunks(8)) {
        for ((o, v), a) in ob.iter_mut().zip(xb).zip(acc.iter_mut()) {
            *o = exp_poly(v - m);
            *a += *o;
        }
    }
    let inv = 1.0 / acc.iter().sum::<f32>();
    out.iter_mut().for_each(|o| *o *= inv);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{exp_poly, C1, C2, EXP_HI, EXP_LO, LOG2E, P};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// `exp` of 8 lanes (module docs): clamp (NaN kept: it is the
    /// second operand of min/max), `n = floor(x log2 e + 1/2)`,
    /// `r = x - n ln 2`, the polynomial, times `2^n`.
    #[inline(always)]
    unsafe fn exp(x: __m256) -> __m256 {
        let (lo, hi) = (_mm256_set1_ps(EXP_LO), _mm256_set1_ps(EXP_HI));
        let xc = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
        let n = _mm256_floor_ps(_mm256_fmadd_ps(
            xc,
            _mm256_set1_ps(LOG2E),
            _mm256_set1_ps(0.5),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C1), xc);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C2), r);
        let mut p = _mm256_set1_ps(P[0]);
        for c in &P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
        let y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
        let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        let y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
        let y = _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);
        let big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
        _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), big)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sum_squares(x: &[f32]) -> f32 {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let p = x.as_ptr();
        let mut i = 0;
        while i + 16 <= x.len() {
            let (v0, v1) = (_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(p.add(i + 8)));
            a0 = _mm256_fmadd_ps(v0, v0, a0);
            a1 = _mm256_fmadd_ps(v1, v1, a1);
            i += 16;
        }
        if i + 8 <= x.len() {
            let v = _mm256_loadu_ps(p.add(i));
            a0 = _mm256_fmadd_ps(v, v, a0);
            i += 8;
        }
        hsum(_mm256_add_ps(a0, a1)) + x[i..].iter().map(|v| v * v).sum::<f32>()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scale_mul(x: &[f32], r: f32, w: &[f32], out: &mut [f32]) {
        let (rv, n) = (_mm256_set1_ps(r), out.len());
        let mut i = 0;
        while i + 8 <= n {
            let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), rv);
            let v = _mm256_mul_ps(v, _mm256_loadu_ps(w.as_ptr().add(i)));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
            i += 8;
        }
        for j in i..n {
            out[j] = x[j] * r * w[j];
        }
    }

    /// Pairs `0..8k` of the halves layout; returns `8k`, where the
    /// caller's loop goes on.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rotate_halves(x: &[f32], c: &[f32], s: &[f32], out: &mut [f32]) -> usize {
        let half = c.len();
        let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        while i + 8 <= half {
            let (x1, x2) = (
                _mm256_loadu_ps(xp.add(i)),
                _mm256_loadu_ps(xp.add(half + i)),
            );
            let (cv, sv) = (
                _mm256_loadu_ps(c.as_ptr().add(i)),
                _mm256_loadu_ps(s.as_ptr().add(i)),
            );
            let o1 = _mm256_sub_ps(_mm256_mul_ps(x1, cv), _mm256_mul_ps(x2, sv));
            let o2 = _mm256_add_ps(_mm256_mul_ps(x1, sv), _mm256_mul_ps(x2, cv));
            _mm256_storeu_ps(op.add(i), o1);
            _mm256_storeu_ps(op.add(half + i), o2);
            i += 8;
        }
        i
    }

    /// Elements `0..8k`; returns `8k`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) -> usize {
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i + 8 <= out.len() {
            let gv = _mm256_loadu_ps(g.as_ptr().add(i));
            let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), gv));
            let v = _mm256_div_ps(gv, _mm256_add_ps(one, e));
            let v = _mm256_mul_ps(v, _mm256_loadu_ps(u.as_ptr().add(i)));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
            i += 8;
        }
        i
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_row(x: &[f32], out: &mut [f32]) {
        let (n, xp, op) = (x.len(), x.as_ptr(), out.as_mut_ptr());
        let mut m8 = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i + 8 <= n {
            m8 = _mm256_max_ps(m8, _mm256_loadu_ps(xp.add(i)));
            i += 8;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m8);
        let m = lanes
            .iter()
            .chain(&x[i..])
            .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let (mv, mut acc) = (_mm256_set1_ps(m), _mm256_setzero_ps());
        i = 0;
        while i + 8 <= n {
            let e = exp(_mm256_sub_ps(_mm256_loadu_ps(xp.add(i)), mv));
            _mm256_storeu_ps(op.add(i), e);
            acc = _mm256_add_ps(acc, e);
            i += 8;
        }
        let mut sum = hsum(acc);
        for j in i..n {
            out[j] = exp_poly(x[j] - m);
            sum += out[j];
        }
        let inv = _mm256_set1_ps(1.0 / sum);
        i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(op.add(i), _mm256_mul_ps(_mm256_loadu_ps(op.add(i)), inv));
            i += 8;
        }
        for o in &mut out[i..] {
            *o *= 1.0 / sum;
        }
    }
}

/// Whether the AVX2 + FMA loops may run for `isa` on this CPU.
fn avx2(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2Fma {
        return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    }
    let _ = isa;
    false
}

/// Cephes `expf`'s constants: the range, `log2(e)`, `ln 2 = C1 + C2`, and
/// the polynomial (highest degree first).
const EXP_LO: f32 = -87.336_55;
const EXP_HI: f32 = 88.376_26;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes: 5.0000001201e-1, which is 0.5 in f32
];

/// `exp(x)` by the polynomial (module docs), without FMA: the portable
/// loops' and the AVX2 loops' tails.
#[inline(always)]
fn exp_poly(x: f32) -> f32 {
    if x.is_nan() || x > EXP_HI {
        return x + f32::INFINITY;
    }
    if x < EXP_LO {
        return 0.0;
    }
    let t = x * LOG2E + 0.5;
    let mut n = t as i32; // toward zero, then down to the floor
    if n as f32 > t {
        n -= 1;
    }
    let nf = n as f32;
    let r = (x - nf * C1) - nf * C2;
    let p = P[1..].iter().fold(P[0], |p, c| p * r + c);
    (p * r * r + r + 1.0) * f32::from_bits(((n + 127) as u32) << 23)
}
