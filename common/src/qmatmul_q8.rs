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
//!
//! 4 bits with AVX-512 VNNI (F, BW, VL, VNNI detected at run time; AVX2
//! stays the fallback; `TINY_LLM_QMATMUL=avx2` forces it): `vpdpbusd` on
//! chunks of 128 inputs, one 64-byte load of codes per weight row, 4 weight
//! rows by up to 4 activation rows per tile, the activations laid out per
//! chunk ([`Layout::Chunks128`]) by a vectorised quantizer; see
//! `qmatmul_q8_avx512.rs` for the layout and the operation count. Needs
//! Rust 1.89 (AVX-512 intrinsics and target features).
//!
//! Where the time goes (the kit's 2-core Zen 4 EPYC under KVM, shared;
//! `tiny-llm-bench qmatmul`, Qwen2.5-0.5B's 169 linear layers, 2026-12-03):
//! a decode step reads 278 MB of codes, scales and biases and does
//! `M * 494 M` multiply-adds. Roofs: memory 30-31 GB/s (`tiny-llm-bench
//! bandwidth`, quiet machine), so 9 ms a step; `vpdpbusd zmm` 3.6 G a
//! second per core (a loop of independent ones: 230 G int8 multiply-adds
//! a second), so 1.1 ms per activation row on 2 cores. M = 1 takes 14-26
//! ms (memory-bound within 1.5-3x; the spread is the other load), M = 8
//! 36-64 ms, four times both roofs: bound by the instructions around the
//! multiplies. The tile's inner pattern alone (2 `vpdpbusd`, convert,
//! multiply, FMA per chunk, row and activation row, all in L1) runs at
//! 1.1 G a second per core against 1.8 G for the two `vpdpbusd` alone; the
//! unpack, the scale gathers and the loads take about as long again.

use crate::qmatrix::{check_matmul, KernelError, QuantizedMatrix, Scale};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;

/// How [`Q8Activations::quantize`] orders each row's int8 codes (each
/// kernel reads them in the order its unpacked weight codes come in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Input order (the portable loops, 8 bits).
    #[default]
    Natural,
    /// Each block of 32 inputs as its 16 even inputs, then its 16 odd ones
    /// (the 4-bit AVX2 kernel).
    Pairs32,
    /// Each chunk of 128 inputs as its 64 even inputs, then its 64 odd
    /// ones, every row zero-padded to whole chunks, with the per-lane steps
    /// [`Q8Activations::lane_dx`] (the 4-bit AVX-512 VNNI kernel).
    Chunks128,
}

/// `x` quantized to int8 per group, with what the kernels need per group.
#[derive(Debug, Default, Clone)]
pub struct Q8Activations {
    /// `m x row_len` int8 codes in the order of [`Self::layout`].
    pub q: Vec<i8>,
    /// Codes per row: `cols`, or `cols` rounded up to a multiple of 128
    /// for [`Layout::Chunks128`] (the padding is zeros).
    pub row_len: usize,
    /// `m x groups`: `dx = max |x| / 127` of each group.
    pub scale: Vec<f32>,
    /// `m x groups`: the exact f32 sum of each group of `x`.
    pub sum: Vec<f32>,
    /// [`Layout::Chunks128`] only: `m x (row_len / 128) x 16`, the `dx` of
    /// the group each 32-bit lane of a chunk covers (lane `l` of chunk `c`:
    /// inputs `128 c + 8 l ..+ 8`, group `(128 c + 8 l) / group_size`; 0
    /// past `cols`); empty otherwise.
    pub lane_dx: Vec<f32>,
    /// The order of `q`.
    pub layout: Layout,
}

impl Q8Activations {
    /// Quantizes `x` (`m x cols`, `cols` a multiple of `group_size`, itself a
    /// multiple of 32) per group into `self`, its codes in `layout`'s order.
    pub fn quantize(&mut self, x: &[f32], cols: usize, group_size: usize, layout: Layout) {
        const CHUNK: usize = 128;
        self.q.clear();
        self.scale.clear();
        self.sum.clear();
        self.lane_dx.clear();
        self.layout = layout;
        self.row_len = match layout {
            Layout::Chunks128 => cols.div_ceil(CHUNK) * CHUNK,
            _ => cols,
        };
        let mut tmp = [0i8; 32];
        for row in x.chunks_exact(cols) {
            let start = self.q.len();
            for (gi, group) in row.chunks_exact(group_size).enumerate() {
                let amax = group.iter().fold(0f32, |a, v| a.max(v.abs()));
                let (dx, inv) = group_step(amax);
                self.scale.push(dx);
                self.sum.push(group.iter().sum());
                for (bi, block) in group.chunks_exact(32).enumerate() {
                    for (t, v) in tmp.iter_mut().zip(block) {
                        *t = quantize_one(*v, inv);
                    }
                    match layout {
                        Layout::Natural => self.q.extend_from_slice(&tmp),
                        Layout::Pairs32 => {
                            self.q.extend(tmp.iter().step_by(2));
                            self.q.extend(tmp.iter().skip(1).step_by(2));
                        }
                        Layout::Chunks128 => {
                            if self.q.len() == start {
                                self.q.resize(start + self.row_len, 0);
                            }
                            // input c = 128 ch + o sits at 128 ch + (o % 2) * 64 + o / 2
                            let c0 = gi * group_size + bi * 32;
                            let (ch, o0) = (c0 / CHUNK, c0 % CHUNK);
                            let at = start + ch * CHUNK + o0 / 2;
                            for (e, pair) in tmp.chunks_exact(2).enumerate() {
                                self.q[at + e] = pair[0];
                                self.q[at + 64 + e] = pair[1];
                            }
                        }
                    }
                }
            }
            if layout == Layout::Chunks128 {
                let gpr = cols / group_size;
                let dx = &self.scale[self.scale.len() - gpr..];
                for lane in 0..self.row_len / 8 {
                    let c = lane * 8;
                    self.lane_dx
                        .push(if c < cols { dx[c / group_size] } else { 0.0 });
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
    let layout = match (isa, w.bits) {
        (Isa::Portable, _) | (_, 8) => Layout::Natural,
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, _) => Layout::Chunks128,
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, _) => Layout::Pairs32,
    };
    match layout {
        // SAFETY: Chunks128 only with Isa::Avx512 (detected); `x` is
        // `m x w.cols` (checked), `cols` a multiple of the group size.
        #[cfg(target_arch = "x86_64")]
        Layout::Chunks128 => unsafe { avx512::quantize_chunks(prep, x, w.cols, w.group_size) },
        _ => prep.quantize(x, w.cols, w.group_size, layout),
    }
    let prep = &*prep;
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let tiles = w.rows.div_ceil(4);
    let chunks = chunk_count(tiles, w.bytes() * m.min(8));
    let per_chunk = tiles.div_ceil(chunks) * 4;
    let run = |c: usize| {
        let out = out_ptr; // the whole (Sync) wrapper, not its raw field
        let (r0, r1) = (c * per_chunk, ((c + 1) * per_chunk).min(w.rows));
        #[cfg(target_arch = "x86_64")]
        if layout == Layout::Chunks128 {
            // SAFETY: AVX-512 VNNI was detected (Isa::Avx512), 4 bits, `prep`
            // in Chunks128 from `w`; chunks own disjoint output columns.
            unsafe { avx512_rows(prep, w, r0, r1, m, out) };
            return;
        }
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

/// Rows `r0..r1` of `W` times every row of `x` into `out` (`m x w.rows`)
/// by [`avx512::tile`]: 4 weight rows (then single rows) by 4 activation
/// rows (then 3, 2 or 1).
///
/// Safety: as [`avx512::tile`], `prep` quantized with
/// [`Layout::Chunks128`] from `m` rows; `out` has `m * w.rows` elements and
/// no other thread writes columns `r0..r1`.
#[cfg(target_arch = "x86_64")]
unsafe fn avx512_rows<S: Scale>(
    prep: &Q8Activations,
    w: &QuantizedMatrix<'_, S>,
    r0: usize,
    r1: usize,
    m: usize,
    out: SyncPtr,
) {
    /// Writes a tile's `[x row][w row]` results at rows `i..`, columns `r..`.
    unsafe fn put<const R: usize, const X: usize>(
        t: [[f32; R]; X],
        out: SyncPtr,
        rows: usize,
        i: usize,
        r: usize,
    ) {
        for (a, row) in t.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                *out.0.add((i + a) * rows + r + j) = *v;
            }
        }
    }
    unsafe fn rows_by<S: Scale, const R: usize>(
        p: &Q8Activations,
        w: &QuantizedMatrix<'_, S>,
        r: usize,
        m: usize,
        out: SyncPtr,
    ) {
        let mut i = 0;
        while i + 4 <= m {
            put(avx512::tile::<S, R, 4>(p, i, w, r), out, w.rows, i, r);
            i += 4;
        }
        match m - i {
            3 => put(avx512::tile::<S, R, 3>(p, i, w, r), out, w.rows, i, r),
            2 => put(avx512::tile::<S, R, 2>(p, i, w, r), out, w.rows, i, r),
            1 => put(avx512::tile::<S, R, 1>(p, i, w, r), out, w.rows, i, r),
            _ => {}
        }
    }
    let mut r = r0;
    while r + 4 <= r1 {
        rows_by::<S, 4>(prep, w, r, m, out);
        r += 4;
    }
    while r < r1 {
        rows_by::<S, 1>(prep, w, r, m, out);
        r += 1;
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
    /// AVX-512 F/BW/VL/VNNI for 4 bits (8 bits take the AVX2 kernel, which
    /// these CPUs also have).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The instruction sets this CPU runs, best last: the portable loops, then
/// AVX2 + FMA, then AVX-512 VNNI (each implies the one before here).
fn available() -> Vec<Isa> {
    #[allow(unused_mut)]
    let mut v = vec![Isa::Portable];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        v.push(Isa::Avx2);
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
        {
            v.push(Isa::Avx512);
        }
    }
    v
}

/// The best available instruction set (checked once);
/// `TINY_LLM_QMATMUL=scalar` forces the portable loops, as for day 10's
/// kernel, and `=avx2` the AVX2 kernels (to compare with AVX-512).
fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        choose(
            std::env::var("TINY_LLM_QMATMUL").ok().as_deref(),
            &available(),
        )
    })
}

/// The instruction set `TINY_LLM_QMATMUL=env` picks among `all` (best
/// last): `scalar` the portable loops, `avx2` AVX2 where available,
/// anything else (or nothing) the best.
fn choose(env: Option<&str>, all: &[Isa]) -> Isa {
    let best = *all.last().expect("portable is always there");
    match env {
        Some("scalar") => Isa::Portable,
        #[cfg(target_arch = "x86_64")]
        Some("avx2") if all.contains(&Isa::Avx2) => Isa::Avx2,
        _ => best,
    }
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
        // SAFETY: AVX2 and FMA were detected (AVX-512 implies them here);
        // `r + out.len() <= w.rows`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => unsafe {
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
        Isa::Avx2 | Isa::Avx512 => false,
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

#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
#[path = "qmatmul_q8_avx512.rs"]
mod avx512;

#[cfg(test)]
#[path = "qmatmul_q8_tests.rs"]
mod tests;
