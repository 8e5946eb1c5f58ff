//! Day 12: the AVX2 + FMA vector operations of `flash_attention` (a private
//! part of `flash_attention_cpu`; x86_64, chosen at run time when the CPU
//! has them).

use super::tiles::VecOps;
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

/// `exp(x)` for 8 lanes, Cephes' `expf` (range reduction by `ln 2` in
/// two parts, a degree-5 polynomial; about 2 ulp on `[-87, 88]`); lanes
/// below -87 (`-inf` included) give 0.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    let tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0), _CMP_GE_OQ);
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let fx = _mm256_floor_ps(_mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(0.5),
    ));
    let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
    let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), x);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(c));
    }
    let y = _mm256_fmadd_ps(
        y,
        _mm256_mul_ps(x, x),
        _mm256_add_ps(x, _mm256_set1_ps(1.0)),
    );
    let pow2 = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)),
        23,
    );
    _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(pow2)), tiny)
}

impl VecOps for Avx2 {
    #[inline(always)]
    fn pv(acc: &mut [f32], p: &[f32], v: &[f32]) {
        let dv = acc.len();
        let (ap, vp) = (acc.as_mut_ptr(), v.as_ptr());
        // SAFETY: `v` holds p.len() rows of dv; indices stay below; AVX2 +
        // FMA as above.
        unsafe {
            // up to 64 outputs at a time stay in 8 registers over every key
            let mut x0 = 0;
            while x0 + 8 <= dv {
                let w = ((dv - x0) / 8).min(8);
                let mut r = [_mm256_setzero_ps(); 8];
                for (b, rb) in r.iter_mut().enumerate().take(w) {
                    *rb = _mm256_loadu_ps(ap.add(x0 + b * 8));
                }
                for (c, pc) in p.iter().enumerate() {
                    let pv = _mm256_set1_ps(*pc);
                    let row = vp.add(c * dv + x0);
                    for (b, rb) in r.iter_mut().enumerate().take(w) {
                        *rb = _mm256_fmadd_ps(pv, _mm256_loadu_ps(row.add(b * 8)), *rb);
                    }
                }
                for (b, rb) in r.iter().enumerate().take(w) {
                    _mm256_storeu_ps(ap.add(x0 + b * 8), *rb);
                }
                x0 += w * 8;
            }
            for x in x0..dv {
                let mut t = *ap.add(x);
                for (c, pc) in p.iter().enumerate() {
                    t += pc * *vp.add(c * dv + x);
                }
                *ap.add(x) = t;
            }
        }
    }

    #[inline(always)]
    fn exp_sub(x: &mut [f32], m: f32) -> f32 {
        let n = x.len();
        let p = x.as_mut_ptr();
        // SAFETY: indices < n; AVX2 + FMA as above.
        unsafe {
            let (mv, mut acc) = (_mm256_set1_ps(m), _mm256_setzero_ps());
            let mut i = 0;
            while i + 8 <= n {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
                _mm256_storeu_ps(p.add(i), e);
                acc = _mm256_add_ps(acc, e);
                i += 8;
            }
            let mut sum = hsum(acc);
            for t in i..n {
                *p.add(t) = (*p.add(t) - m).exp();
                sum += *p.add(t);
            }
            sum
        }
    }

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
                let r = _mm256_fmadd_ps(av, _mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(yp.add(i)));
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

#[cfg(test)]
mod tests {
    use super::super::tiles::{isa, Isa, Portable, VecOps};
    use super::Avx2;

    /// The AVX2 and portable vector ops agree on odd lengths.
    #[test]
    fn vector_ops_agree() {
        let a: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
        let keys: Vec<f32> = (0..19 * 7).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut p, mut y) = (vec![0f32; 7], vec![0f32; 7]);
        Portable::dots(&a, &keys, 19, &mut p);
        #[cfg(target_arch = "x86_64")]
        if isa() == Isa::Avx2 {
            Avx2::dots(&a, &keys, 19, &mut y);
            for (x, z) in p.iter().zip(&y) {
                assert!((x - z).abs() < 1e-5, "{p:?} {y:?}");
            }
            let (mut u, mut w) = (a.clone(), a.clone());
            Portable::axpy(&mut u, 0.5, &keys[..19]);
            Avx2::axpy(&mut w, 0.5, &keys[..19]);
            let (mut u2, mut w2) = (a.clone(), a.clone());
            Portable::pv(&mut u2, &p, &keys);
            Avx2::pv(&mut w2, &p, &keys);
            for (x, z) in u2.iter().zip(&w2) {
                assert!((x - z).abs() < 1e-4, "{u2:?} {w2:?}");
            }
            Portable::scale(&mut u, 0.25);
            Avx2::scale(&mut w, 0.25);
            assert_eq!(u, w);
        }
        let _ = &mut y;
    }

    /// The AVX2 exp is within a few ulp of `f32::exp`, and 0 at `-inf`.
    #[test]
    fn vector_exp_agrees() {
        #[cfg(target_arch = "x86_64")]
        if isa() == Isa::Avx2 {
            let mut x: Vec<f32> = (0..2000).map(|i| -100.0 + i as f32 * 0.0531).collect();
            x.extend([f32::NEG_INFINITY, 0.0, -0.0, 1e-8]);
            let mut y = x.clone();
            let sum = Avx2::exp_sub(&mut y, 0.0);
            for (a, b) in x.iter().zip(&y) {
                let want = a.exp();
                // below -87 the exact value is under 2e-38: flushed to 0
                let ok = if *a < -87.0 {
                    *b == 0.0
                } else {
                    (b - want).abs() <= 4e-7 * want
                };
                assert!(ok, "exp({a}) = {b}, want {want}");
            }
            let want: f32 = x.iter().map(|a| a.exp()).sum();
            assert!((sum - want).abs() <= 1e-5 * want);
        }
    }
}
