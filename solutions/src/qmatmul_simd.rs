//! Day 10: the fast CPU kernel for `out = x W^T` over MLX's packed affine
//! weights: SIMD chosen at run time, threads over output rows, a matvec path
//! for decode (`M = 1`) and a tiled path for prefill (`M > 1`). No MLX in
//! this module: it works on the slices of a
//! [`QuantizedMatrix`](tiny_llm_common::qmatrix::QuantizedMatrix).
//!
//! The math is the scalar oracle's (day 9,
//! [`crate::qmatmul_scalar::qmatmul_scalar`]): `w = s * q + b` per group of
//! `group_size` inputs, f32 products and sums. Only the order of the
//! additions differs, so results agree with the oracle to f32 rounding
//! (about `K * 1e-7` relative to `sum |x_i w_i|`).
//!
//! Reference: the affine format of MLX (`mlx/backend/cpu/quantized.cpp`);
//! the "group dot product, then scale" split of llama.cpp's `ggml-cpu`
//! quantized dot products (`quants.c`), here with f32 activations.
//!
//! Implementation: measured on the kit's 2-core AMD EPYC (Zen 3, AVX2 + FMA,
//! no AVX-512 on this VM), release build, 4 bits, group 64, bf16 scales,
//! `solutions/examples/qmatmul_bench.rs` and a kernel-only harness,
//! 2026-12-02, with the machine shared by other builds (load 12-17 on 2
//! cores), so per-core figures are CPU time (`perf stat -e task-clock`),
//! not wall time:
//! - decode (`M = 1`): 6.1 GB/s of packed weights per core from L2
//!   (256 x 896) and 5.6 GB/s from L3/DRAM (4864 x 896): the same speed
//!   whether the weights are in cache or not, so this path is
//!   compute-bound, not memory-bound. Per 32 codes it runs 2 widening
//!   loads, 2 ands, 2 shifts, 4 int-to-float conversions and 4 FMAs, plus
//!   per group a scale, a bias and their bf16 conversion. Two cores give about 12 GB/s, 29% of the 42 GB/s read
//!   bandwidth: Qwen2.5-0.5B's 278 MB of 4-bit weights (the tied 151936 x
//!   896 lm_head is 27% of them) take at least 23 ms a token, about 43
//!   tok/s at best for the kernels alone, short of llama.cpp's 87 (Q4_0).
//!   The portable loop runs 0.19 GB/s per core: AVX2 is 32x faster.
//! - prefill (`M = 128`): 29 GFLOP/s per core (CPU time), about 30% of the
//!   FMA peak. Against dequantizing to f32 with MLX and multiplying with
//!   MLX's matmul (OpenBLAS sgemm), wall time on 2 threads (load 6): 896 x
//!   896: 6.8 ms vs 8.8 ms; 128 x 896: 1.1 vs 1.0 ms; 4864 x 896: 35 vs
//!   116 ms; 896 x 4864: 34 vs 102 ms; 151936 x 896: 1.2 vs 5.6 s. The
//!   tiled kernel is kept (MLX's CPU dequantize costs more than the sgemm
//!   saves). MLX's own `quantized_matmul` is 9-19x slower than this kernel
//!   at both M = 1 and M = 128 on this CPU.
//! - wall time at M = 1 with 2 threads under that load: 3.7 GB/s (896 x
//!   896), 4.3 (128 x 896, one thread), 6.9 (4864 x 896), 4.9 (896 x 4864),
//!   5.0 (151936 x 896, 15.4 ms); the same run's 2-thread read test gave
//!   5.6 GB/s (42 GB/s on an idle machine): rerun
//!   `cargo run --release -p tiny-llm-ref --example qmatmul_bench` on an
//!   idle machine for wall-clock figures.
//! - Toward the memory roofline: llama.cpp's trick, activations quantized to
//!   int8 per group and integer dot products (`vpmaddubsw` + `vpmaddwd`,
//!   one int-to-float conversion per group instead of one per code), is
//!   `tiny_llm_common::qmatmul_q8`, beyond the course and off by default
//!   (`Week2Kernels::int8_activations`: it changes the numerics, so day 10
//!   keeps the oracle's math exactly). Same run of `qmatmul_bench`
//!   (2026-12-02, load 5-6 on the 2 cores, wall time, 2 threads), int8 vs
//!   this kernel: M = 1: 1.5x (896 x 896), 1.6x (4864 x 896 and 896 x
//!   4864), 1.2x (151936 x 896, from DRAM); M = 128: 1.3-1.9x.

use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;
use tiny_llm_common::qmatrix::{check_matmul, KernelError, QuantizedMatrix, Scale};

/// `out = x W^T`, as [`crate::qmatmul_scalar::qmatmul_scalar`], fast.
///
/// - `x`: `m x w.cols` f32, row-major.
/// - `w`: the packed `O x I` weight (`O = w.rows`, `I = w.cols`), 4 or 8
///   bits, groups of 32, 64 or 128, scales and biases in f32, f16 or bf16.
/// - `out`: `m x w.rows` f32, row-major, overwritten.
///
/// Results equal the scalar oracle's up to the order of f32 additions.
///
/// Errors: [`KernelError::Length`] naming `"x"` or `"out"` when a slice does
/// not have `m x I` or `m x O` elements.
///
/// Implementation: per call, the activations are rearranged once (for 4
/// bits, each block of 32 inputs as its 16 even then its 16 odd inputs,
/// the order in which the low and high nibbles of 16 packed bytes come out
/// of a SIMD unpack) and summed per group (`sum_x`). Then:
/// - `M = 1` (decode, a matrix-vector product): four rows at a time, each
///   block of 32 codes is widened to f32 and multiplied into per-group
///   accumulators; per group `s * dot(x, q) + b * sum_x`. Every weight byte
///   is read once; on the kit's Zen 3 this path is compute-bound (about
///   12 GB/s on two cores, see the module docs), not memory-bound.
/// - `M > 1` (prefill): a tile of 16 to 64 rows (256 KB of f32) is
///   dequantized to f32 once (`s * q + b`) into a per-thread buffer, then
///   multiplied with the `M` rows of `x`, three rows of `x` by four of the
///   tile at a time (twelve register accumulators).
/// - Threads: the output rows are split into chunks of whole 4-row tiles
///   for rayon's pool; a small matrix runs on the calling thread (a rayon
///   call costs a few microseconds, as much as reading 64 KB).
/// - SIMD: AVX2 + FMA on x86_64 when the CPU has them
///   (`is_x86_feature_detected!`, checked once), otherwise portable Rust.
///   `TINY_LLM_QMATMUL=scalar` forces the portable code (for measurements).
pub fn qmatmul<S: Scale>(
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_matmul(x, m, w, out)?;
    if m == 0 || w.rows == 0 {
        return Ok(());
    }
    if w.cols == 0 {
        out.fill(0.0);
        return Ok(());
    }
    PREP.with(|cell| match cell.try_borrow_mut() {
        Ok(mut prep) => compute(&mut prep, x, m, w, out),
        // re-entered on this thread (a caller's own rayon task waiting
        // here ran another call): use a buffer of its own
        Err(_) => compute(&mut Prepared::default(), x, m, w, out),
    });
    Ok(())
}

/// [`qmatmul`] after the checks, with `prep` as the activations' buffer.
fn compute<S: Scale>(
    prep: &mut Prepared,
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &mut [f32],
) {
    let isa = isa();
    prep.prepare(isa, x, w);
    let prep = &*prep;
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let tiles = w.rows.div_ceil(TILE);
    let chunks = chunk_count(tiles, w.bytes() * m.min(8));
    let tiles_per_chunk = tiles.div_ceil(chunks);
    let run = |c: usize| {
        let r0 = c * tiles_per_chunk * TILE;
        let r1 = (r0 + tiles_per_chunk * TILE).min(w.rows);
        if r0 < r1 {
            // SAFETY: chunks own disjoint row ranges [r0, r1), so each
            // writes only columns r0..r1 of `out` (m x rows), which the
            // caller holds until every chunk is done.
            unsafe { rows(isa, prep, m, w, r0, r1, out_ptr) }
        }
    };
    if chunks == 1 {
        run(0);
    } else {
        (0..chunks).into_par_iter().for_each(run);
    }
}

/// Output rows a tile covers: the matvec kernel reads four weight rows at a
/// time, the tiled kernel dequantizes four.
const TILE: usize = 4;

/// Rows the tiled path dequantizes at a time for `cols` inputs: as many
/// as fill [`TILE_BYTES`] of f32 (a multiple of 4, 16 to 64: 64 for
/// Qwen2.5-0.5B's 896 inputs, 16 for its 4864), so each row of `x` is read
/// once per that many rows of `W` (x of a 512-token prefill, 1.8 MB at 896
/// inputs, does not fit in L2 and streams from L3 once per tile).
fn dequant_rows(cols: usize) -> usize {
    (TILE_BYTES / (4 * cols.max(1))).clamp(16, 64) / 4 * 4
}

/// The f32 tile the prefill path keeps per thread: within a core's 512 KB
/// L2 (Zen 3), with room for the rows of `x` being multiplied.
const TILE_BYTES: usize = 256 * 1024;

/// Below this many weight bytes (times `min(m, 8)`) a call stays on the
/// calling thread.
const MIN_PARALLEL_BYTES: usize = 96 * 1024;

/// How many chunks to split `tiles` tiles into: one for a small matrix,
/// else a few per thread (so a thread slowed by another process does not
/// hold up the call).
fn chunk_count(tiles: usize, work_bytes: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads <= 1 || work_bytes < MIN_PARALLEL_BYTES {
        return 1;
    }
    let by_size = (work_bytes / (MIN_PARALLEL_BYTES / 2)).max(1);
    (threads * 4).min(by_size).min(tiles).max(1)
}

/// The instruction set the kernels use on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// Portable Rust (the compiler may still vectorize it).
    Portable,
    /// x86_64 AVX2 + FMA, 8 f32 lanes.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// Detected once per process.
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

/// The activations, prepared once per call (kept per calling thread, so a
/// decode step allocates nothing after the first).
#[derive(Default)]
struct Prepared {
    /// `m x I`: `x`, each 32-input block of a 4-bit call as its even then its
    /// odd inputs ([`Isa::Portable`] keeps the natural order).
    xp: Vec<f32>,
    /// `m x groups`: the sum of each group of `x`.
    xsum: Vec<f32>,
    /// Input features.
    cols: usize,
    /// Groups per row.
    groups: usize,
}

thread_local! {
    static PREP: RefCell<Prepared> = RefCell::new(Prepared::default());
}

impl Prepared {
    fn prepare<S: Scale>(&mut self, isa: Isa, x: &[f32], w: &QuantizedMatrix<'_, S>) {
        let (k, g) = (w.cols, w.group_size);
        self.cols = k;
        self.groups = k / g;
        self.xp.clear();
        self.xsum.clear();
        let permute = w.bits == 4 && isa != Isa::Portable;
        for row in x.chunks_exact(k) {
            for group in row.chunks_exact(g) {
                self.xsum.push(group.iter().sum());
            }
            if permute {
                for block in row.chunks_exact(32) {
                    self.xp.extend(block.iter().step_by(2));
                    self.xp.extend(block.iter().skip(1).step_by(2));
                }
            } else {
                self.xp.extend_from_slice(row);
            }
        }
    }

    fn x(&self, i: usize) -> &[f32] {
        &self.xp[i * self.cols..(i + 1) * self.cols]
    }

    fn sums(&self, i: usize) -> &[f32] {
        &self.xsum[i * self.groups..(i + 1) * self.groups]
    }
}

/// A raw output pointer that chunks on other threads write through.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: only used for disjoint writes (see `qmatmul`).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

/// Output columns `r0..r1` of all `m` rows.
///
/// # Safety
/// `out` points to `m x w.rows` f32 that no one else writes in columns
/// `r0..r1` meanwhile.
unsafe fn rows<S: Scale>(
    isa: Isa,
    prep: &Prepared,
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    r0: usize,
    r1: usize,
    out: SyncPtr,
) {
    let n = w.rows;
    let put = |i: usize, r: usize, v: f32| unsafe { *out.0.add(i * n + r) = v };
    match isa {
        Isa::Portable => {
            for i in 0..m {
                for r in r0..r1 {
                    put(i, r, portable::row_dot(prep.x(i), prep.sums(i), w, r));
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            if m == 1 {
                let mut r = r0;
                let mut four = [0f32; 4];
                while r + 4 <= r1 {
                    avx2::matvec::<S, 4>(prep.x(0), prep.sums(0), w, r, &mut four);
                    for (j, v) in four.iter().enumerate() {
                        put(0, r + j, *v);
                    }
                    r += 4;
                }
                while r < r1 {
                    avx2::matvec::<S, 1>(prep.x(0), prep.sums(0), w, r, &mut four[..1]);
                    put(0, r, four[0]);
                    r += 1;
                }
            } else {
                TILE_BUF.with(|buf| {
                    let mut buf = buf.borrow_mut();
                    let tile_rows = dequant_rows(w.cols);
                    buf.resize(tile_rows * w.cols, 0.0);
                    let mut r = r0;
                    while r < r1 {
                        let nr = (r1 - r).min(tile_rows);
                        avx2::dequantize_rows(w, r, nr, &mut buf);
                        avx2::tile_matmul(prep, m, &buf, nr, |i, j, v| put(i, r + j, v));
                        r += nr;
                    }
                });
            }
        }
    }
}

thread_local! {
    /// Per-thread buffer for dequantized rows (`dequant_rows(I) x I` f32).
    static TILE_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `s` as f32, exactly as [`Scale::to_f32`]; bf16 by a shift (its bits are
/// the top half of an f32's; `half`'s conversion also quiets NaNs, a branch
/// per group that the decode loop notices). Monomorphized: the type test
/// is a constant.
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

/// Decodes code `i` of row `r` (the packing of [`QuantizedMatrix`]).
#[inline(always)]
fn code<S: Scale>(w: &QuantizedMatrix<'_, S>, r: usize, i: usize) -> u32 {
    let per = w.codes_per_word();
    let word = w.packed[r * w.words_per_row() + i / per];
    (word >> (w.bits as usize * (i % per))) & ((1u32 << w.bits) - 1)
}

/// The portable kernel: plain loops, one output at a time.
mod portable {
    use super::*;

    /// `sum_g s_g * dot(x_g, q_g) + b_g * sum(x_g)` for row `r`.
    pub(super) fn row_dot<S: Scale>(
        x: &[f32],
        xsum: &[f32],
        w: &QuantizedMatrix<'_, S>,
        r: usize,
    ) -> f32 {
        let g = w.group_size;
        let gpr = w.groups_per_row();
        let mut acc = 0.0f32;
        for (gi, (xg, sx)) in x.chunks_exact(g).zip(xsum).enumerate() {
            let mut dot = 0.0f32;
            for (j, xv) in xg.iter().enumerate() {
                dot += xv * code(w, r, gi * g + j) as f32;
            }
            let s = w.scales[r * gpr + gi].to_f32();
            let b = w.biases[r * gpr + gi].to_f32();
            acc += s * dot + b * sx;
        }
        acc
    }
}

// Register blocks are indexed by row and column: index loops read best.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// Horizontal sum of 8 lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// The 32 codes of one block as four vectors of 8 f32, in the order of
    /// [`Prepared::xp`]: 4 bits: even inputs 0..14, 16..30, then odd inputs
    /// 1..15, 17..31; 8 bits: inputs 0..8, 8..16, 16..24, 24..32.
    #[inline(always)]
    unsafe fn block_codes(p: *const u8, bits: u32) -> [__m256; 4] {
        let widen = |q: *const u8| _mm256_cvtepu8_epi32(_mm_loadl_epi64(q as *const __m128i));
        if bits == 4 {
            let mask = _mm256_set1_epi32(0xF);
            let (b0, b1) = (widen(p), widen(p.add(8)));
            [
                _mm256_cvtepi32_ps(_mm256_and_si256(b0, mask)),
                _mm256_cvtepi32_ps(_mm256_and_si256(b1, mask)),
                _mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4)),
                _mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4)),
            ]
        } else {
            [
                _mm256_cvtepi32_ps(widen(p)),
                _mm256_cvtepi32_ps(widen(p.add(8))),
                _mm256_cvtepi32_ps(widen(p.add(16))),
                _mm256_cvtepi32_ps(widen(p.add(24))),
            ]
        }
    }

    /// `out[j] = row r + j of W times x`, for `R` rows starting at `r`
    /// (decode).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn matvec<S: Scale, const R: usize>(
        x: &[f32],
        xsum: &[f32],
        w: &QuantizedMatrix<'_, S>,
        r: usize,
        out: &mut [f32],
    ) {
        let gpr = w.groups_per_row();
        let row_bytes = w.words_per_row() * 4;
        let block_bytes = 4 * w.bits as usize;
        let blocks = w.group_size / 32;
        let base = w.packed.as_ptr() as *const u8;
        let rows: [*const u8; R] = std::array::from_fn(|j| base.add((r + j) * row_bytes));
        let xp = x.as_ptr();
        let mut acc = [_mm256_setzero_ps(); R];
        let mut bias = [0f32; R];
        for g in 0..gpr {
            // one accumulator a row: 4 rows give 4 independent FMA chains
            // and leave registers for the unpacking (16 ymm in all)
            let mut d = [_mm256_setzero_ps(); R];
            for b in 0..blocks {
                let blk = g * blocks + b;
                let xb = xp.add(blk * 32);
                for j in 0..R {
                    let q = block_codes(rows[j].add(blk * block_bytes), w.bits);
                    d[j] = _mm256_fmadd_ps(q[0], _mm256_loadu_ps(xb), d[j]);
                    d[j] = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xb.add(8)), d[j]);
                    d[j] = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xb.add(16)), d[j]);
                    d[j] = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xb.add(24)), d[j]);
                }
            }
            for j in 0..R {
                let at = (r + j) * gpr + g;
                let s = _mm256_set1_ps(to_f32(*w.scales.get_unchecked(at)));
                acc[j] = _mm256_fmadd_ps(s, d[j], acc[j]);
                bias[j] += to_f32(*w.biases.get_unchecked(at)) * xsum[g];
            }
        }
        for j in 0..R {
            out[j] = hsum(acc[j]) + bias[j];
        }
    }

    /// Rows `r..r + nr` of W as f32 (`s * q + b`) into `buf` (`nr x I`,
    /// each row in the order of [`Prepared::xp`]).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dequantize_rows<S: Scale>(
        w: &QuantizedMatrix<'_, S>,
        r: usize,
        nr: usize,
        buf: &mut [f32],
    ) {
        let (k, gpr) = (w.cols, w.groups_per_row());
        let row_bytes = w.words_per_row() * 4;
        let block_bytes = 4 * w.bits as usize;
        let blocks = w.group_size / 32;
        let base = w.packed.as_ptr() as *const u8;
        for j in 0..nr {
            let row = base.add((r + j) * row_bytes);
            let dst = buf[j * k..(j + 1) * k].as_mut_ptr();
            for g in 0..gpr {
                let at = (r + j) * gpr + g;
                let s = _mm256_set1_ps(to_f32(w.scales[at]));
                let b = _mm256_set1_ps(to_f32(w.biases[at]));
                for bl in g * blocks..(g + 1) * blocks {
                    let q = block_codes(row.add(bl * block_bytes), w.bits);
                    for (v, qv) in q.iter().enumerate() {
                        _mm256_storeu_ps(dst.add(bl * 32 + v * 8), _mm256_fmadd_ps(*qv, s, b));
                    }
                }
            }
        }
    }

    /// `put(i, j, dot(x_i, tile_j))` for the `m` rows of `x` and the `nr`
    /// dequantized rows of `tile`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_matmul(
        prep: &Prepared,
        m: usize,
        tile: &[f32],
        nr: usize,
        mut put: impl FnMut(usize, usize, f32),
    ) {
        let k = prep.cols;
        let mut i = 0;
        while i < m {
            // three rows of x (in L1) against every 4-row slice of the tile
            let mr = (m - i).min(3);
            let mut b0 = 0;
            while b0 < nr {
                let nb = (nr - b0).min(4);
                let sub = &tile[b0 * k..];
                let put = &mut |a: usize, b: usize, v: f32| put(a, b0 + b, v);
                match (mr, nb) {
                    (3, 4) => micro::<3, 4>(prep, i, sub, k, put),
                    (2, 4) => micro::<2, 4>(prep, i, sub, k, put),
                    (1, 4) => micro::<1, 4>(prep, i, sub, k, put),
                    _ => {
                        for a in 0..mr {
                            for b in 0..nb {
                                let dot = micro_one(prep.x(i + a), &sub[b * k..(b + 1) * k]);
                                put(i + a, b, dot);
                            }
                        }
                    }
                }
                b0 += nb;
            }
            i += mr;
        }
    }

    /// `MR x NR` dot products over `k` (a multiple of 32), in registers.
    #[inline(always)]
    unsafe fn micro<const MR: usize, const NR: usize>(
        prep: &Prepared,
        i: usize,
        tile: &[f32],
        k: usize,
        put: &mut impl FnMut(usize, usize, f32),
    ) {
        let xs: [*const f32; MR] = std::array::from_fn(|a| prep.x(i + a).as_ptr());
        let ws: [*const f32; NR] = std::array::from_fn(|b| tile.as_ptr().add(b * k));
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let mut c = 0;
        while c < k {
            let wv: [__m256; NR] = std::array::from_fn(|b| _mm256_loadu_ps(ws[b].add(c)));
            for a in 0..MR {
                let xv = _mm256_loadu_ps(xs[a].add(c));
                for b in 0..NR {
                    acc[a][b] = _mm256_fmadd_ps(xv, wv[b], acc[a][b]);
                }
            }
            c += 8;
        }
        for a in 0..MR {
            for b in 0..NR {
                put(i + a, b, hsum(acc[a][b]));
            }
        }
    }

    #[inline(always)]
    unsafe fn micro_one(x: &[f32], w: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for c in (0..x.len()).step_by(8) {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(x.as_ptr().add(c)),
                _mm256_loadu_ps(w.as_ptr().add(c)),
                acc,
            );
        }
        hsum(acc)
    }
}
