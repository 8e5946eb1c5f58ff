//! Day 11: the fused kernels on slices (no MLX): RMSNorm, RoPE, SwiGLU and
//! softmax, each a scalar version that is obviously right (the oracle) and
//! a fast one (SIMD chosen at run time, threads over rows).
//!
//! Every kernel reads f32 row-major slices and overwrites an f32 `out` of
//! the same length, computing in f32. Each fast kernel makes one pass over
//! its input (softmax: over a row that stays in L1), so all four are
//! memory-bound: their speed is the bytes each element moves (noted per
//! kernel), not arithmetic.
//!
//! Errors: [`KernelError::Length`] naming the slice whose length does not
//! follow from the others; [`KernelError::Unsupported`] for a bad width or
//! a position past RoPE's tables. Nothing is written then.
//!
//! Reference: Zhang & Sennrich 2019 (RMSNorm); Su et al. 2021 (RoPE);
//! Shazeer 2020 (SwiGLU); `mlx.core.fast.rms_norm`, `mlx.core.fast.rope`,
//! `mlx.core.softmax`; the vectorized `exp` is Cephes' `expf` (S. Moshier).
//!
//! Implementation: `exp` (softmax, SwiGLU) is a degree-6 polynomial after
//! the reduction `x = n ln 2 + r`, `|r| <= ln 2 / 2` (Cephes `expf`, ln 2
//! split in two constants): within 1 ulp of the exact value for
//! `-87.3 <= x <= 88.3` (measured 2026-12-02: at most 0.97 ulp for the
//! portable version, every 37th f32 of that range against f64 `exp`; the
//! AVX2 version's FMAs round less); below, 0 (the true value is a
//! subnormal under 1.2e-38), above, `+inf`; NaN stays NaN. Threads: rows are split into a
//! few chunks per rayon thread once a call has 32K elements or more (a
//! rayon call costs a few microseconds, the time to stream ~64 KB).

use rayon::prelude::*;
use std::sync::OnceLock;
pub use tiny_llm_common::qmatrix::KernelError;

/// The instruction set a fast kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust in blocks of 8 lanes (the compiler vectorizes it for
    /// the target's baseline: SSE2 on x86_64, NEON on aarch64).
    Portable,
    /// x86_64 AVX2 + FMA, 8 f32 lanes; on a CPU without them (or another
    /// architecture) the kernels run [`Isa::Portable`] instead.
    Avx2Fma,
}

/// The best instruction set of this CPU, detected once
/// (`is_x86_feature_detected!`); `TINY_LLM_FUSED=portable` forces
/// [`Isa::Portable`].
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var("TINY_LLM_FUSED").is_ok_and(|v| v == "portable") {
            return Isa::Portable;
        }
        *available_isas().last().unwrap_or(&Isa::Portable)
    })
}

/// Every instruction set this CPU runs, [`Isa::Portable`] first.
pub fn available_isas() -> Vec<Isa> {
    let mut v = vec![Isa::Portable];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        v.push(Isa::Avx2Fma);
    }
    v
}

/// RoPE's tables, borrowed from day 2's `RoPE`.
#[derive(Debug, Clone, Copy)]
pub struct RopeTables<'a> {
    /// `cos(p * theta_i)`, `positions x D/2`, row-major.
    pub cos: &'a [f32],
    /// `sin(p * theta_i)`, `positions x D/2`, row-major.
    pub sin: &'a [f32],
    /// `D`, the head width (even).
    pub dims: usize,
    /// Interleaved pairs `(x[2i], x[2i+1])` (`true`) or halves
    /// `(x[i], x[i + D/2])` (`false`).
    pub traditional: bool,
}

fn len_err(what: &'static str, expected: usize, why: String, got: usize) -> KernelError {
    KernelError::Length {
        what,
        expected,
        why,
        got,
    }
}

fn check_same(what: &'static str, s: &[f32], n: usize, why: &str) -> Result<(), KernelError> {
    if s.len() != n {
        return Err(len_err(what, n, why.to_string(), s.len()));
    }
    Ok(())
}

/// Checks `x` is whole rows of `width` and `out` as long as `x`.
fn check_rows(x: &[f32], width: usize, out: &[f32], name: &str) -> Result<(), KernelError> {
    if width == 0 || !x.len().is_multiple_of(width) {
        return Err(KernelError::Unsupported(format!(
            "x: {} elements are not whole rows of {name} = {width} (expected {name} >= 1 dividing the length)",
            x.len()
        )));
    }
    check_same("out", out, x.len(), "the length of x")
}

/// Checks RoPE's arguments; returns the first position of each batch row.
fn check_rope(
    x: &[f32],
    [n, l, h]: [usize; 3],
    t: &RopeTables<'_>,
    offsets: &[usize],
    out: &[f32],
) -> Result<Vec<usize>, KernelError> {
    let d = t.dims;
    if d == 0 || !d.is_multiple_of(2) {
        return Err(KernelError::Unsupported(format!(
            "dims must be positive and even, got {d}"
        )));
    }
    let half = d / 2;
    if !t.cos.len().is_multiple_of(half) {
        return Err(KernelError::Unsupported(format!(
            "cos: {} elements are not whole rows of D/2 = {half}",
            t.cos.len()
        )));
    }
    check_same("sin", t.sin, t.cos.len(), "the length of cos")?;
    let why = format!("N x L x H x D = {n} x {l} x {h} x {d}");
    check_same("x", x, n * l * h * d, &why)?;
    check_same("out", out, n * l * h * d, &why)?;
    if offsets.len() != 1 && offsets.len() != n {
        return Err(len_err(
            "offsets",
            n,
            "one per batch row, or 1".into(),
            offsets.len(),
        ));
    }
    let positions = t.cos.len() / half;
    (0..n)
        .map(|b| {
            let o = if offsets.len() == 1 {
                offsets[0]
            } else {
                offsets[b]
            };
            if o + l > positions {
                return Err(KernelError::Unsupported(format!(
                    "row {b}: positions {o}..{} pass the tables' {positions} positions",
                    o + l
                )));
            }
            Ok(o)
        })
        .collect()
}

/// The scalar RMSNorm: each row of `E = weight.len()` elements,
/// `out = x / sqrt(sum(x^2) / E + eps) * weight`, the sum in input order.
///
/// Errors: `x` not whole rows of `E`, `out` not as long as `x`.
pub fn rms_norm_scalar(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let e = weight.len();
    check_rows(x, e, out, "E")?;
    for (xr, or) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
        let ss: f32 = xr.iter().map(|v| v * v).sum();
        let r = 1.0 / (ss / e as f32 + eps).sqrt();
        for ((o, v), w) in or.iter_mut().zip(xr).zip(weight) {
            *o = v * r * w;
        }
    }
    Ok(())
}

/// RMSNorm, as [`rms_norm_scalar`], fast: 8 lanes of sums of squares (the
/// only change: the order of the additions, so the two differ by about
/// `E` f32 roundings of `sum(x^2)`, relative), threads over rows.
///
/// Speed: memory-bound, 12 bytes an element (read `x` twice, the second
/// time from cache when a row fits in L1/L2, write `out`) plus the weight,
/// which stays in cache.
///
/// Errors: as [`rms_norm_scalar`].
pub fn rms_norm(
    isa: Isa,
    x: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let e = weight.len();
    check_rows(x, e, out, "E")?;
    par_rows(out, e, |r0, block| {
        for (i, or) in block.chunks_exact_mut(e).enumerate() {
            let xr = &x[(r0 + i) * e..(r0 + i + 1) * e];
            let ss = simd::sum_squares(isa, xr);
            let r = 1.0 / (ss / e as f32 + eps).sqrt();
            simd::scale_mul(isa, xr, r, weight, or);
        }
    });
    Ok(())
}

/// The scalar RoPE on `x`, `N x L x H x D` (`shape = [N, L, H]`, `D =
/// t.dims`): token `s` of batch row `b` is at position `offsets[b] + s`
/// (`offsets`: `N` values, or one for every row), and each pair
/// `(x1, x2)` with frequency `i` becomes `(x1 c - x2 s, x1 s + x2 c)`,
/// `c, s` = `t.cos`, `t.sin` at `[position, i]`.
///
/// Errors: [`KernelError::Length`] for `x`, `out`, `sin` or `offsets`;
/// [`KernelError::Unsupported`] for an odd `D`, tables that are not whole
/// rows of `D/2`, or a position past the tables (naming the row).
pub fn rope_scalar(
    x: &[f32],
    shape: [usize; 3],
    t: &RopeTables<'_>,
    offsets: &[usize],
    out: &mut [f32],
) -> Result<(), KernelError> {
    let starts = check_rope(x, shape, t, offsets, out)?;
    let [_, l, h] = shape;
    let (d, half) = (t.dims, t.dims / 2);
    for (tok, (xr, or)) in x
        .chunks_exact(h * d)
        .zip(out.chunks_exact_mut(h * d))
        .enumerate()
    {
        let p = starts[tok / l.max(1)] + tok % l.max(1);
        for (xh, oh) in xr.chunks_exact(d).zip(or.chunks_exact_mut(d)) {
            for i in 0..half {
                let (c, s) = (t.cos[p * half + i], t.sin[p * half + i]);
                let (a, b) = if t.traditional {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + half)
                };
                oh[a] = xh[a] * c - xh[b] * s;
                oh[b] = xh[a] * s + xh[b] * c;
            }
        }
    }
    Ok(())
}

/// RoPE, as [`rope_scalar`], fast: the same products and sums in the same
/// order (no FMA), so the result equals the oracle's bit for bit; 8 pairs
/// at a time for the halves layout (the interleaved one runs the portable
/// loop), threads over tokens.
///
/// Speed: memory-bound, 8 bytes an element (read `x`, write `out`); the
/// table row of a position (`D` floats) is read once per token and stays
/// in L1 for all `H` heads.
///
/// Errors: as [`rope_scalar`].
pub fn rope(
    isa: Isa,
    x: &[f32],
    shape: [usize; 3],
    t: &RopeTables<'_>,
    offsets: &[usize],
    out: &mut [f32],
) -> Result<(), KernelError> {
    let starts = check_rope(x, shape, t, offsets, out)?;
    let [_, l, h] = shape;
    let (d, half) = (t.dims, t.dims / 2);
    if out.is_empty() {
        return Ok(());
    }
    par_rows(out, h * d, |tok0, block| {
        for (i, or) in block.chunks_exact_mut(h * d).enumerate() {
            let tok = tok0 + i;
            let p = starts[tok / l] + tok % l;
            let (c, s) = (
                &t.cos[p * half..(p + 1) * half],
                &t.sin[p * half..(p + 1) * half],
            );
            let xr = &x[tok * h * d..(tok + 1) * h * d];
            for (xh, oh) in xr.chunks_exact(d).zip(or.chunks_exact_mut(d)) {
                simd::rotate(isa, xh, c, s, t.traditional, oh);
            }
        }
    });
    Ok(())
}

/// The scalar SwiGLU gate: `out = gate / (1 + exp(-gate)) * up`,
/// elementwise, with the standard library's `exp`.
///
/// Errors: `up` or `out` not as long as `gate`.
pub fn swiglu_scalar(gate: &[f32], up: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    check_same("up", up, gate.len(), "the length of gate")?;
    check_same("out", out, gate.len(), "the length of gate")?;
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
    Ok(())
}

/// SwiGLU, as [`swiglu_scalar`], fast: 8 lanes with the polynomial `exp`
/// (module docs), so within a few f32 roundings of the oracle, relative.
/// Where `gate < -88.3` the result is `-0` or `+0`, where the exact value is
/// below 4e-37 in size.
///
/// Speed: memory-bound, 12 bytes an element (read `gate` and `up`, write
/// `out`); the `exp` costs about 15 vector instructions per 8 elements.
///
/// Errors: as [`swiglu_scalar`].
pub fn swiglu(isa: Isa, gate: &[f32], up: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    check_same("up", up, gate.len(), "the length of gate")?;
    check_same("out", out, gate.len(), "the length of gate")?;
    par_rows(out, 1, |i0, block| {
        let n = block.len();
        simd::swiglu(isa, &gate[i0..i0 + n], &up[i0..i0 + n], block);
    });
    Ok(())
}

/// The scalar softmax of each row of `s` elements: `m = max(row)`,
/// `e_j = exp(x_j - m)` (standard library), `out_j = e_j / sum(e)`, the sum
/// in input order. A row of all `-inf` gives NaN (`-inf - -inf`), as MLX's
/// does; a NaN in a row makes the whole row NaN.
///
/// Errors: `x` not whole rows of `s`, `out` not as long as `x`.
pub fn softmax_scalar(x: &[f32], s: usize, out: &mut [f32]) -> Result<(), KernelError> {
    check_rows(x, s, out, "S")?;
    for (xr, or) in x.chunks_exact(s).zip(out.chunks_exact_mut(s)) {
        let m = xr.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        for (o, v) in or.iter_mut().zip(xr) {
            *o = (v - m).exp();
        }
        let sum: f32 = or.iter().sum();
        for o in or.iter_mut() {
            *o /= sum;
        }
    }
    Ok(())
}

/// Softmax, as [`softmax_scalar`], fast: the maximum, then `exp(x - m)`
/// (the polynomial `exp`) written to `out` and summed in 8 lanes, then
/// `out *= 1 / sum`; threads over rows. Each `out_j` is within
/// `(9 s / 8 + 10)` f32 roundings of the oracle's, relative (the two sums
/// of `s` positive terms in different orders, the `exp`s, the reciprocal).
///
/// Speed: memory-bound, 8 bytes an element from memory (read `x`, write
/// `out`; the second and third passes run over a row in L1/L2: `s = 4096`
/// is 16 KB).
///
/// Errors: as [`softmax_scalar`].
pub fn softmax(isa: Isa, x: &[f32], s: usize, out: &mut [f32]) -> Result<(), KernelError> {
    check_rows(x, s, out, "S")?;
    par_rows(out, s, |r0, block| {
        for (i, or) in block.chunks_exact_mut(s).enumerate() {
            simd::softmax_row(isa, &x[(r0 + i) * s..(r0 + i + 1) * s], or);
        }
    });
    Ok(())
}

/// Below this many elements a call stays on the calling thread.
const MIN_PARALLEL: usize = 32 * 1024;

/// Runs `f(first_row, rows)` over `out`, rows of `width`: on the calling
/// thread for a small call, else in a few chunks of whole rows per thread.
fn par_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len() / width.max(1);
    let threads = rayon::current_num_threads();
    if threads <= 1 || out.len() < MIN_PARALLEL || rows < 2 {
        f(0, out);
        return;
    }
    let chunks = (threads * 4).min(rows).min(out.len() / (MIN_PARALLEL / 4));
    let per = rows.div_ceil(chunks.max(1));
    out.par_chunks_mut(per * width)
        .enumerate()
        .for_each(|(c, block)| f(c * per, block));
}

mod simd;
