//! Beyond the course (given code, off by default): `out = x W^T` over MLX's
//! packed affine weights with the activations quantized to int8 per group,
//! as llama.cpp's Q4_0 x Q8_0 dot products do. No MLX in this module
//! ([`crate::linear_q8`] meets MLX); selected by
//! [`crate::Week2Kernels::int8_activations`].
//!
//! The algorithm, for each row `i` of `x` and each group `G` of
//! `group_size` inputs:
//!
//! - `amax = max_{k in G} |x_k|`, `dx = amax / 127`, and
//!   `xq_k = round_half_even(x_k * (127 / amax))` (an int8 in `-127..=127`;
//!   all zeros when `amax = 0`);
//! - per output `r`: the exact integer dot product
//!   `n = sum_{k in G} q[r][k] * xq_k` (4- or 8-bit unsigned codes);
//! - `out[i][r] = sum_G (s[r][G] * dx) * n + b[r][G] * sum_{k in G} x_k`,
//!   the bias term with the exact f32 sum of `x` (not of `xq`).
//!
//! [`qmatmul_q8_scalar`] is that algorithm in plain loops (the oracle);
//! [`qmatmul_q8`] computes the same integers with SIMD and threads, so the
//! two differ only by the order of the f32 additions.
//!
//! Error against the exact product (day 9's oracle, f32 activations): each
//! `xq_k * dx` is within `dx / 2` of `x_k`, so
//! `|out_q8 - out_exact| <= sum_G |s[r][G]| * dx_G / 2 * sum_{k in G} q[r][k]`
//! plus f32 rounding ([`q8_error_bound`]). On Qwen2.5-0.5B that moves the
//! logits by about 1e-2, which is why grading keeps the exact path.
//!
//! Reference: llama.cpp `ggml-cpu` (`quantize_row_q8_0`, the AVX2
//! `ggml_vec_dot_q4_0_q8_0`: `maddubs` of unsigned 4-bit codes by signed
//! int8, `madd` by ones, a float scale per block); MLX's affine packing
//! (`mlx/backend/cpu/quantized.cpp`).
//!
//! Implementation: 4-bit AVX2 path per 32 codes: one 16-byte load, a shift
//! and a mask give the 32 nibbles (even inputs from the low nibbles, odd
//! from the high: the activations are stored in that order once per call),
//! `vpmaddubsw` multiplies them by 32 int8 activations into 16-bit pair
//! sums (at most 2 * 15 * 127 = 3810, so a group of up to 128 codes adds
//! its 4 blocks in 16 bits without overflow), then one `vpmaddwd` by ones
//! and one int-to-float conversion per group. Four rows share each
//! activation load. 8 bits: codes and activations widened to 16 bits and
//! `vpmaddwd` (`vpmaddubsw` would saturate at 255 * 127 * 2).

use crate::qmatrix::{check_matmul, KernelError, QuantizedMatrix, Scale};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;

/// `x` quantized to int8 per group, with what the kernels need per group.
#[derive(Debug, Default, Clone)]
pub struct Q8Activations {
    /// `m x I` int8 codes; for the 4-bit SIMD layout each block of 32 holds
    /// its 16 even inputs, then its 16 odd inputs.
    pub q: Vec<i8>,
    /// `m x groups`: `dx = max |x| / 127` of each group.
    pub scale: Vec<f32>,
    /// `m x groups`: the exact f32 sum of each group of `x`.
    pub sum: Vec<f32>,
}

impl Q8Activations {
    /// Quantizes `x` (`m x cols`, `cols` a multiple of `group_size`, itself a
    /// multiple of 32) per group into `self`; `interleave` stores each block
    /// of 32 as its even then its odd inputs.
    pub fn quantize(&mut self, x: &[f32], cols: usize, group_size: usize, interleave: bool) {
        self.q.clear();
        self.scale.clear();
        self.sum.clear();
        let mut tmp = [0i8; 32];
        for row in x.chunks_exact(cols) {
            for group in row.chunks_exact(group_size) {
                let amax = group.iter().fold(0f32, |a, v| a.max(v.abs()));
                let (dx, inv) = group_step(amax);
                self.scale.push(dx);
                self.sum.push(group.iter().sum());
                for block in group.chunks_exact(32) {
                    for (t, v) in tmp.iter_mut().zip(block) {
                        *t = quantize_one(*v, inv);
                    }
                    if interleave {
                        self.q.extend(tmp.iter().step_by(2));
                        self.q.extend(tmp.iter().skip(1).step_by(2));
                    } else {
                        self.q.extend_from_slice(&tmp);
                    }
                }
            }
        }
    }
}

/// `(dx, 1 / dx)` for a group whose largest magnitude is `amax`: `dx =
/// amax / 127`; `(0, 0)` for an all-zero group (every code 0).
#[inline]
pub fn group_step(amax: f32) -> (f32, f32) {
    if amax > 0.0 {
        (amax / 127.0, 127.0 / amax)
    } else {
        (0.0, 0.0)
    }
}

/// `round_half_even(v * inv)` as int8 (within `-127..=127` when `|v| <=
/// amax`; clamped there against rounding of `inv`).
///
/// Implementation: adding and subtracting `1.5 * 2^23` rounds an f32 of
/// magnitude below `2^22` to the nearest integer, ties to even (IEEE
/// round-to-nearest), as `f32::round_ties_even` does; it compiles to two
/// additions where `round_ties_even` is a call to `rintf` without SSE4.1.
#[inline]
pub fn quantize_one(v: f32, inv: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let y = (v * inv).clamp(-127.0, 127.0);
    ((y + MAGIC) - MAGIC) as i8
}

/// The oracle: the module's algorithm in plain scalar loops.
///
/// - `x`: `m x w.cols` f32, row-major; `w`: the packed `O x I` weight (4 or
///   8 bits, groups of 32, 64 or 128); `out`: `m x w.rows` f32, overwritten.
///
/// Errors: [`KernelError::Length`] naming `"x"` or `"out"`.
pub fn qmatmul_q8_scalar<S: Scale>(
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_matmul(x, m, w, out)?;
    let (k, g, gpr) = (w.cols, w.group_size, w.groups_per_row());
    let (per, mask) = (w.codes_per_word(), (1u32 << w.bits) - 1);
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for r in 0..w.rows {
            let mut acc = 0f32;
            for gi in 0..gpr {
                let xg = &xr[gi * g..(gi + 1) * g];
                let amax = xg.iter().fold(0f32, |a, v| a.max(v.abs()));
                let (dx, inv) = group_step(amax);
                let mut n = 0i32;
                for (j, v) in xg.iter().enumerate() {
                    let c = gi * g + j;
                    let word = w.packed[r * w.words_per_row() + c / per];
                    let q = (word >> (w.bits as usize * (c % per))) & mask;
                    n += q as i32 * quantize_one(*v, inv) as i32;
                }
                let s = w.scales[r * gpr + gi].to_f32();
                let b = w.biases[r * gpr + gi].to_f32();
                acc += (s * dx) * n as f32 + b * xg.iter().sum::<f32>();
            }
            out[i * w.rows + r] = acc;
        }
    }
    Ok(())
}

/// A bound on `|q8 - exact|` for output `r` of the row `x` (`w.cols` f32):
/// `sum_G |s[r][G]| * dx_G / 2 * sum_{k in G} q[r][k]` (the activation
/// rounding; see the module docs) plus `rel * sum_k |x_k * w[r][k]|` for
/// the f32 rounding of either side.
pub fn q8_error_bound<S: Scale>(x: &[f32], w: &QuantizedMatrix<'_, S>, r: usize, rel: f32) -> f32 {
    let (g, gpr) = (w.group_size, w.groups_per_row());
    let (per, mask) = (w.codes_per_word(), (1u32 << w.bits) - 1);
    let mut bound = 0f32;
    let mut mag = 0f32;
    for gi in 0..gpr {
        let xg = &x[gi * g..(gi + 1) * g];
        let dx = group_step(xg.iter().fold(0f32, |a, v| a.max(v.abs()))).0;
        let s = w.scales[r * gpr + gi].to_f32();
        let b = w.biases[r * gpr + gi].to_f32();
        let mut qsum = 0f32;
        for (j, v) in xg.iter().enumerate() {
            let c = gi * g + j;
            let word = w.packed[r * w.words_per_row() + c / per];
            let q = ((word >> (w.bits as usize * (c % per))) & mask) as f32;
            qsum += q;
            mag += (v * (s * q + b)).abs() + (v * s * q).abs() + (v * b).abs();
        }
        bound += s.abs() * dx / 2.0 * qsum;
    }
    bound + rel * mag
}

/// [`qmatmul_q8_scalar`]'s result, fast: SIMD chosen at run time (AVX2 on
/// x86_64, otherwise portable loops), threads over output rows.
///
/// Same arguments and errors as [`qmatmul_q8_scalar`]; results equal it up
/// to the order of f32 additions (the integer dot products are identical).
pub fn qmatmul_q8<S: Scale>(
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    qmatmul_q8_on(isa(), x, m, w, out)
}

/// [`qmatmul_q8`] with the instruction set given (the tests run each).
fn qmatmul_q8_on<S: Scale>(
    isa: Isa,
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_matmul(x, m, w, out)?;
    if m == 0 || w.rows == 0 {
        return Ok(());
    }
    PREP.with(|cell| match cell.try_borrow_mut() {
        Ok(mut prep) => compute(isa, &mut prep, x, m, w, out),
        Err(_) => compute(isa, &mut Q8Activations::default(), x, m, w, out),
    });
    Ok(())
}

thread_local! {
    /// The quantized activations of the calling thread's last call (reused:
    /// a decode step allocates nothing after the first).
    static PREP: RefCell<Q8Activations> = RefCell::new(Q8Activations::default());
}

fn compute<S: Scale>(
    isa: Isa,
    prep: &mut Q8Activations,
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) {
    let interleave = w.bits == 4 && isa != Isa::Portable;
    prep.quantize(x, w.cols, w.group_size, interleave);
    let prep = &*prep;
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let tiles = w.rows.div_ceil(4);
    let chunks = chunk_count(tiles, w.bytes() * m.min(8));
    let per_chunk = tiles.div_ceil(chunks) * 4;
    let run = |c: usize| {
        let out = out_ptr; // the whole (Sync) wrapper, not its raw field
        let (r0, r1) = (c * per_chunk, ((c + 1) * per_chunk).min(w.rows));
        for r in (r0..r1).step_by(4) {
            let nr = (r1 - r).min(4);
            let mut i = 0;
            while i < m {
                // two rows of x at a time where they share each unpack
                let mut eight = [0f32; 8];
                let xs = if i + 1 < m && nr == 4 && dot_pair(isa, prep, i, w, r, &mut eight) {
                    2
                } else {
                    dot_rows(isa, prep, i, w, r, &mut eight[..nr]);
                    1
                };
                for a in 0..xs {
                    for (j, v) in eight[a * 4..a * 4 + nr].iter().enumerate() {
                        // SAFETY: chunks own disjoint rows [r0, r1) of the
                        // output's columns; `out` (m x rows) outlives the call.
                        unsafe { *out.0.add((i + a) * w.rows + r + j) = *v };
                    }
                }
                i += xs;
            }
        }
    };
    if chunks == 1 {
        run(0);
    } else {
        (0..chunks).into_par_iter().for_each(run);
    }
}

/// Below this many weight bytes (times `min(m, 8)`) a call stays on the
/// calling thread (a rayon call costs a few microseconds).
const MIN_PARALLEL_BYTES: usize = 96 * 1024;

fn chunk_count(tiles: usize, work_bytes: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads <= 1 || work_bytes < MIN_PARALLEL_BYTES {
        return 1;
    }
    let by_size = (work_bytes / (MIN_PARALLEL_BYTES / 2)).max(1);
    (threads * 4).min(by_size).min(tiles).max(1)
}

/// A raw output pointer that chunks on other threads write through.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: only used for disjoint writes (see `compute`).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// AVX2 when the CPU has it (checked once); `TINY_LLM_QMATMUL=scalar`
/// forces the portable loops, as for day 10's kernel.
fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var("TINY_LLM_QMATMUL").is_ok_and(|v| v == "scalar") {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
        Isa::Portable
    })
}

/// `out[j]` = row `r + j` of `W` times row `i` of `x`, `j < out.len() <= 4`.
fn dot_rows<S: Scale>(
    isa: Isa,
    p: &Q8Activations,
    i: usize,
    w: &QuantizedMatrix<'_, S>,
    r: usize,
    out: &mut [f32],
) {
    let (k, gpr) = (w.cols, w.groups_per_row());
    let xq = &p.q[i * k..(i + 1) * k];
    let (dx, sx) = (
        &p.scale[i * gpr..(i + 1) * gpr],
        &p.sum[i * gpr..(i + 1) * gpr],
    );
    match isa {
        Isa::Portable => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = portable_row(xq, dx, sx, w, r + j);
            }
        }
        // SAFETY: AVX2 and FMA were detected; `r + out.len() <= w.rows`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe {
            match (out.len(), w.bits) {
                (4, 4) => avx2::rows4::<S, 4>(xq, dx, sx, w, r, out),
                (n, 4) => {
                    for j in 0..n {
                        avx2::rows4::<S, 1>(xq, dx, sx, w, r + j, &mut out[j..j + 1]);
                    }
                }
                _ => {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = avx2::row8(xq, dx, sx, w, r + j);
                    }
                }
            }
        },
    }
}

/// Rows `r..r + 4` of `W` times rows `i` and `i + 1` of `x` into `out`
/// (`[x row][w row]`), when the 4-bit AVX2 kernel applies; `false` (and
/// nothing written) otherwise.
fn dot_pair<S: Scale>(
    isa: Isa,
    p: &Q8Activations,
    i: usize,
    w: &QuantizedMatrix<'_, S>,
    r: usize,
    out: &mut [f32; 8],
) -> bool {
    match isa {
        Isa::Portable => false,
        // SAFETY: AVX2 and FMA were detected; `r + 4 <= w.rows`, `i + 1 < m`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if w.bits == 4 => {
            unsafe { avx2::rows4x2(p, i, w, r, out) };
            true
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => false,
    }
}

/// One output, plain loops over the natural-order codes.
fn portable_row<S: Scale>(
    xq: &[i8],
    dx: &[f32],
    sx: &[f32],
    w: &QuantizedMatrix<'_, S>,
    r: usize,
) -> f32 {
    let (g, gpr, bits) = (w.group_size, w.groups_per_row(), w.bits as usize);
    let row = &w.packed[r * w.words_per_row()..(r + 1) * w.words_per_row()];
    let (per, mask) = (w.codes_per_word(), (1u32 << bits) - 1);
    let mut acc = 0f32;
    for gi in 0..gpr {
        let mut n = 0i32;
        for (wi, word) in row[gi * g / per..(gi + 1) * g / per].iter().enumerate() {
            let base = gi * g + wi * per;
            for j in 0..per {
                let q = (word >> (bits * j)) & mask;
                n += q as i32 * xq[base + j] as i32;
            }
        }
        let at = r * gpr + gi;
        acc += (w.scales[at].to_f32() * dx[gi]) * n as f32 + w.biases[at].to_f32() * sx[gi];
    }
    acc
}

/// `s` as f32, exactly; bf16 by a shift (its bits are an f32's top half).
#[inline(always)]
fn to_f32<S: Scale>(s: S) -> f32 {
    if std::any::TypeId::of::<S>() == std::any::TypeId::of::<half::bf16>() {
        // SAFETY: S is bf16, a 2-byte plain value.
        let bits: u16 = unsafe { std::mem::transmute_copy(&s) };
        f32::from_bits((bits as u32) << 16)
    } else {
        s.to_f32()
    }
}

// Register blocks are indexed by row and column: index loops read best.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
#[path = "qmatmul_q8_avx2.rs"]
mod avx2;

#[cfg(test)]
#[path = "qmatmul_q8_tests.rs"]
mod tests;
