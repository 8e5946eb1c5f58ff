//! The AVX-512 VNNI kernel of [`super`] (x86_64, 4 bits): `vpdpbusd`
//! multiplies 64 unsigned 4-bit codes by 64 signed int8 activations and adds
//! each 4 adjacent products into one of 16 i32 lanes, so one instruction
//! does what `vpmaddubsw` + `vpmaddwd` + `vpaddd` do on AVX2, with no 16-bit
//! intermediate (no saturation: 4 * 15 * 127 per lane and step).
//! Reference: Intel's intrinsics guide and SDM (`VPDPBUSD`: u8 x i8, four
//! adjacent products summed into each i32 lane, no saturation).
//!
//! Layout, per chunk of 128 inputs (64 packed bytes of a weight row; MLX
//! packs input `2b` in the low nibble of byte `b`, `2b + 1` in the high):
//!
//! - weights: one 64-byte load `z`; `lo = z & 0x0F` holds the codes of the
//!   even inputs `0, 2, .., 126`, `hi = (z >> 4) & 0x0F` the odd ones, in
//!   byte order. Lane `l` (bytes `4l..4l+3`) of both covers inputs
//!   `8l..8l+7`, all in group `(128 c + 8l) / group_size` (groups are
//!   multiples of 32);
//! - activations ([`Layout::Chunks128`]): the chunk's 64 even inputs, then
//!   its 64 odd ones, each row zero-padded to whole chunks; with each chunk
//!   the 16 lanes' `dx` ([`Q8Activations::lane_dx`]).
//!
//! Per chunk, weight row `r` and activation row `i`: `n = dpbusd(dpbusd(0,
//! lo, x_even), hi, x_odd)` (16 lanes of exact partial dot products, each
//! inside one group), then `acc += f32(n) * (s_lanes * dx_lanes)`, the
//! lanes' scales gathered from the chunk's 1, 2 or 4 groups. `R` weight
//! rows are unpacked once per chunk and feed `X` activation rows from
//! registers (`X * R` accumulators). The bias term `sum_G b[r][G] *
//! sum_{k in G} x_k` is a dot product over groups, 16 at a time, after the
//! chunks; one horizontal sum per output at the end.
//!
//! Operation count per chunk (128 inputs) for `R` rows and `X` activation
//! rows: `R` loads and `3 R` integer ops (unpack), about `3 R` for the
//! scales, and `5 X R` (2 `vpdpbusd`, convert, multiply, FMA).

use super::*;
use half::{bf16, f16};
use std::any::TypeId;
use std::arch::x86_64::*;

/// Inputs per chunk (one 64-byte load of 4-bit codes).
pub(super) const CHUNK: usize = 128;

/// Up to 16 consecutive scales or biases at `p` as f32 (the lanes of `mask`
/// set; the others 0 and not read). Exact: bf16 by a 16-bit shift, f16 by
/// `vcvtph2ps`.
#[inline(always)]
unsafe fn load16<S: Scale>(p: *const S, mask: u16) -> __m512 {
    let t = TypeId::of::<S>();
    if t == TypeId::of::<f32>() {
        _mm512_maskz_loadu_ps(mask, p as *const f32)
    } else if t == TypeId::of::<bf16>() {
        let h = _mm256_maskz_loadu_epi16(mask, p as *const i16);
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
    } else if t == TypeId::of::<f16>() {
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p as *const i16))
    } else {
        let mut v = [0f32; 16];
        for (k, o) in v.iter_mut().enumerate() {
            if mask >> k & 1 == 1 {
                *o = (*p.add(k)).to_f32();
            }
        }
        _mm512_loadu_ps(v.as_ptr())
    }
}

/// `R` rows `r..r + R` of `W` (4 bits) times `X` activation rows
/// `i..i + X` of `p` (quantized with [`Layout::Chunks128`]):
/// `out[a][j]` = output `r + j` of activation row `i + a`.
///
/// Safety: AVX-512 F/BW/VL/VNNI present; `r + R <= w.rows`, `i + X <= m`;
/// `w.bits == 4`; `p` quantized from `w.cols` columns and `w.group_size`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile<S: Scale, const R: usize, const X: usize>(
    p: &Q8Activations,
    i: usize,
    w: &QuantizedMatrix<'_, S>,
    r: usize,
) -> [[f32; R]; X] {
    let (k, gpr, gs) = (w.cols, w.groups_per_row(), w.group_size);
    let chunks = k.div_ceil(CHUNK);
    let gpc = CHUNK / gs; // groups per chunk: 4, 2 or 1
    let row_bytes = w.words_per_row() * 4;
    let base = w.packed.as_ptr() as *const u8;
    let rows: [*const u8; R] = std::array::from_fn(|j| base.add((r + j) * row_bytes));
    let scales: [*const S; R] = std::array::from_fn(|j| w.scales.as_ptr().add((r + j) * gpr));
    let xq: [*const i8; X] = std::array::from_fn(|a| p.q.as_ptr().add((i + a) * p.row_len));
    let xd: [*const f32; X] =
        std::array::from_fn(|a| p.lane_dx.as_ptr().add((i + a) * chunks * 16));
    let nib = _mm512_set1_epi8(0x0F);
    // lane l -> its group within the chunk: 8 l / gs
    let lane_group = _mm512_srlv_epi32(
        _mm512_setr_epi32(
            0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120,
        ),
        _mm512_set1_epi32(gs.trailing_zeros() as i32),
    );
    // the same as 16-bit indices, in the upper half of each 32-bit lane
    let lane_group16 = _mm512_slli_epi32(lane_group, 16);
    let mut acc = [[_mm512_setzero_ps(); R]; X];
    for c in 0..chunks {
        let bytes = ((k - c * CHUNK) / 2).min(64);
        let bmask = if bytes == 64 {
            !0u64
        } else {
            (1u64 << bytes) - 1
        };
        let g0 = c * gpc;
        let smask = (1u16 << gpc.min(gpr - g0)) - 1;
        let mut lo = [_mm512_setzero_si512(); R];
        let mut hi = [_mm512_setzero_si512(); R];
        let mut sl = [_mm512_setzero_ps(); R];
        for j in 0..R {
            // the next tile's rows, same chunk: one tile ahead of the loads
            _mm_prefetch::<_MM_HINT_T0>(rows[j].add(R * row_bytes + c * 64) as *const i8);
            let z = _mm512_maskz_loadu_epi8(bmask, rows[j].add(c * 64) as *const i8);
            lo[j] = _mm512_and_si512(z, nib);
            hi[j] = _mm512_and_si512(_mm512_srli_epi16(z, 4), nib);
            sl[j] = if TypeId::of::<S>() == TypeId::of::<bf16>() {
                // bf16 bits into the top half of each f32 lane, zeros below
                let h = _mm_maskz_loadu_epi16(smask as u8, scales[j].add(g0) as *const i16);
                _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(
                    0xAAAA_AAAA,
                    lane_group16,
                    _mm512_castsi128_si512(h),
                ))
            } else {
                _mm512_permutexvar_ps(lane_group, load16(scales[j].add(g0), smask))
            };
        }
        for a in 0..X {
            let xe = _mm512_loadu_si512(xq[a].add(c * CHUNK) as *const _);
            let xo = _mm512_loadu_si512(xq[a].add(c * CHUNK + 64) as *const _);
            let d = _mm512_loadu_ps(xd[a].add(c * 16));
            for j in 0..R {
                let n = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[j], xe);
                let n = _mm512_dpbusd_epi32(n, hi[j], xo);
                let sd = _mm512_mul_ps(sl[j], d);
                acc[a][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(n), sd, acc[a][j]);
            }
        }
    }
    // bias: sum_G b[r][G] * sum_{k in G} x_k, 16 groups at a time
    for g0 in (0..gpr).step_by(16) {
        let mask = if gpr - g0 >= 16 {
            0xFFFF
        } else {
            (1u16 << (gpr - g0)) - 1
        };
        let b: [__m512; R] =
            std::array::from_fn(|j| load16(w.biases.as_ptr().add((r + j) * gpr + g0), mask));
        for a in 0..X {
            let sx = _mm512_maskz_loadu_ps(mask, p.sum.as_ptr().add((i + a) * gpr + g0));
            for j in 0..R {
                acc[a][j] = _mm512_fmadd_ps(b[j], sx, acc[a][j]);
            }
        }
    }
    let mut out = [[0f32; R]; X];
    for a in 0..X {
        for j in 0..R {
            out[a][j] = _mm512_reduce_add_ps(acc[a][j]);
        }
    }
    out
}

/// [`Q8Activations::quantize`] with [`Layout::Chunks128`], 16 inputs at a
/// time: the same codes and steps (`amax` is exact in any order; rounding
/// by `vrndscaleps` is round-half-even, as [`quantize_one`]), the group
/// sums in another f32 addition order.
///
/// Safety: AVX-512 F/BW/VL present; `x.len()` a multiple of `cols`, `cols`
/// a multiple of `group_size`, itself 32, 64 or 128.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn quantize_chunks(
    p: &mut Q8Activations,
    x: &[f32],
    cols: usize,
    group_size: usize,
) {
    let m = x.len() / cols;
    let chunks = cols.div_ceil(CHUNK);
    p.layout = Layout::Chunks128;
    p.row_len = chunks * CHUNK;
    p.q.clear();
    p.q.resize(m * p.row_len, 0);
    p.scale.clear();
    p.sum.clear();
    p.lane_dx.clear();
    let gpr = cols / group_size;
    // 32 inputs (two vectors of 16) -> their 16 even, their 16 odd
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let (lo, hi) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
    for (row, xr) in x.chunks_exact(cols).enumerate() {
        let q = p.q.as_mut_ptr().add(row * p.row_len);
        for (gi, g) in xr.chunks_exact(group_size).enumerate() {
            let mut amax = _mm512_setzero_ps();
            let mut sum = _mm512_setzero_ps();
            for v in g.chunks_exact(16) {
                let v = _mm512_loadu_ps(v.as_ptr());
                amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
                sum = _mm512_add_ps(sum, v);
            }
            let (dx, inv) = group_step(_mm512_reduce_max_ps(amax));
            p.scale.push(dx);
            p.sum.push(_mm512_reduce_add_ps(sum));
            let inv = _mm512_set1_ps(inv);
            for (bi, b) in g.chunks_exact(32).enumerate() {
                let code = |v: *const f32| {
                    let y = _mm512_min_ps(
                        _mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(v), inv), lo),
                        hi,
                    );
                    _mm512_cvtps_epi32(_mm512_roundscale_ps::<
                        { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                    >(y))
                };
                let (a, c) = (code(b.as_ptr()), code(b.as_ptr().add(16)));
                let e = _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(a, even, c));
                let o = _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(a, odd, c));
                // input k = 128 ch + t sits at 128 ch + (t % 2) * 64 + t / 2
                let k0 = gi * group_size + bi * 32;
                let at = q.add(k0 / CHUNK * CHUNK + k0 % CHUNK / 2);
                _mm_storeu_si128(at as *mut __m128i, e);
                _mm_storeu_si128(at.add(64) as *mut __m128i, o);
            }
        }
        let dx = &p.scale[row * gpr..];
        for lane in 0..chunks * 16 {
            let k = lane * 8;
            p.lane_dx
                .push(if k < cols { dx[k / group_size] } else { 0.0 });
        }
    }
}
