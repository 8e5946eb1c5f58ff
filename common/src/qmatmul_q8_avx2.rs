//! The AVX2 kernels of [`super`] (x86_64): 4 bits by `vpmaddubsw`, four
//! weight rows sharing each activation load (decode) or two activation rows
//! sharing each unpacked block (prefill); 8 bits widened to 16 bits.

use super::*;
use std::arch::x86_64::*;

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// 4 bits: `out[j]` = row `r + j` times the interleaved int8 row `xq`,
/// for `R` rows sharing each activation load.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn rows4<S: Scale, const R: usize>(
    xq: &[i8],
    dx: &[f32],
    sx: &[f32],
    w: &QuantizedMatrix<'_, S>,
    r: usize,
    out: &mut [f32],
) {
    let gpr = w.groups_per_row();
    let blocks = w.group_size / 32;
    let row_bytes = w.words_per_row() * 4;
    let base = w.packed.as_ptr() as *const u8;
    let rows: [*const u8; R] = std::array::from_fn(|j| base.add((r + j) * row_bytes));
    let (nib, ones) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
    let xp = xq.as_ptr();
    let mut acc = [_mm256_setzero_ps(); R];
    let mut bias = [0f32; R];
    for g in 0..gpr {
        let mut d = [_mm256_setzero_si256(); R];
        for b in 0..blocks {
            let blk = g * blocks + b;
            let xv = _mm256_loadu_si256(xp.add(blk * 32) as *const __m256i);
            for j in 0..R {
                let raw = _mm_loadu_si128(rows[j].add(blk * 16) as *const __m128i);
                let codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), nib);
                d[j] = _mm256_add_epi16(d[j], _mm256_maddubs_epi16(codes, xv));
            }
        }
        let step = *dx.get_unchecked(g);
        for j in 0..R {
            let at = (r + j) * gpr + g;
            let n = _mm256_cvtepi32_ps(_mm256_madd_epi16(d[j], ones));
            let s = _mm256_set1_ps(to_f32(*w.scales.get_unchecked(at)) * step);
            acc[j] = _mm256_fmadd_ps(n, s, acc[j]);
            bias[j] += to_f32(*w.biases.get_unchecked(at)) * *sx.get_unchecked(g);
        }
    }
    for j in 0..R {
        out[j] = hsum(acc[j]) + bias[j];
    }
}

/// 4 bits, prefill: rows `r..r + 4` of `W` times rows `i`, `i + 1` of
/// `x` (`out[a * 4 + j]`): each unpacked block feeds two activation rows.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn rows4x2<S: Scale>(
    p: &Q8Activations,
    i: usize,
    w: &QuantizedMatrix<'_, S>,
    r: usize,
    out: &mut [f32; 8],
) {
    let (k, gpr) = (w.cols, w.groups_per_row());
    let blocks = w.group_size / 32;
    let row_bytes = w.words_per_row() * 4;
    let base = w.packed.as_ptr() as *const u8;
    let rows: [*const u8; 4] = std::array::from_fn(|j| base.add((r + j) * row_bytes));
    let (nib, ones) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
    let xp: [*const i8; 2] = std::array::from_fn(|a| p.q.as_ptr().add((i + a) * k));
    let mut acc = [[_mm256_setzero_ps(); 4]; 2];
    let mut bias = [[0f32; 4]; 2];
    for g in 0..gpr {
        let mut d = [[_mm256_setzero_si256(); 4]; 2];
        for b in 0..blocks {
            let blk = g * blocks + b;
            let xv: [__m256i; 2] =
                std::array::from_fn(|a| _mm256_loadu_si256(xp[a].add(blk * 32) as *const __m256i));
            for j in 0..4 {
                let raw = _mm_loadu_si128(rows[j].add(blk * 16) as *const __m128i);
                let codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), nib);
                for a in 0..2 {
                    d[a][j] = _mm256_add_epi16(d[a][j], _mm256_maddubs_epi16(codes, xv[a]));
                }
            }
        }
        for j in 0..4 {
            let at = (r + j) * gpr + g;
            let (s, b) = (
                to_f32(*w.scales.get_unchecked(at)),
                to_f32(*w.biases.get_unchecked(at)),
            );
            for a in 0..2 {
                let at_x = (i + a) * gpr + g;
                let n = _mm256_cvtepi32_ps(_mm256_madd_epi16(d[a][j], ones));
                let sd = _mm256_set1_ps(s * *p.scale.get_unchecked(at_x));
                acc[a][j] = _mm256_fmadd_ps(n, sd, acc[a][j]);
                bias[a][j] += b * *p.sum.get_unchecked(at_x);
            }
        }
    }
    for a in 0..2 {
        for j in 0..4 {
            out[a * 4 + j] = hsum(acc[a][j]) + bias[a][j];
        }
    }
}

/// 8 bits: one output, codes and activations widened to 16 bits.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn row8<S: Scale>(
    xq: &[i8],
    dx: &[f32],
    sx: &[f32],
    w: &QuantizedMatrix<'_, S>,
    r: usize,
) -> f32 {
    let (g, gpr) = (w.group_size, w.groups_per_row());
    let row = (w.packed.as_ptr() as *const u8).add(r * w.words_per_row() * 4);
    let xp = xq.as_ptr();
    let mut acc = _mm256_setzero_ps();
    let mut bias = 0f32;
    for gi in 0..gpr {
        let mut n = _mm256_setzero_si256();
        for c in (gi * g..(gi + 1) * g).step_by(16) {
            let q = _mm256_cvtepu8_epi16(_mm_loadu_si128(row.add(c) as *const __m128i));
            let xv = _mm256_cvtepi8_epi16(_mm_loadu_si128(xp.add(c) as *const __m128i));
            n = _mm256_add_epi32(n, _mm256_madd_epi16(q, xv));
        }
        let at = r * gpr + gi;
        let s = _mm256_set1_ps(to_f32(*w.scales.get_unchecked(at)) * dx[gi]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(n), s, acc);
        bias += to_f32(*w.biases.get_unchecked(at)) * sx[gi];
    }
    hsum(acc) + bias
}
