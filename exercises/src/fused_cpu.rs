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
//! Hints: write the scalar oracles first (plain loops, the formulas of
//! their docs) and check them with `cargo xtask check day11`; the fast
//! kernels then have something to be compared with. Put the SIMD loops in
//! `fused_cpu/simd.rs`.

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
    todo!("day 11: isa")
}

/// Every instruction set this CPU runs, [`Isa::Portable`] first.
pub fn available_isas() -> Vec<Isa> {
    todo!("day 11: available_isas")
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
    let _ = (x, weight, eps, out);
    todo!("day 11: rms_norm_scalar")
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
    let _ = (isa, x, weight, eps, out);
    todo!("day 11: rms_norm")
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
    let _ = (x, shape, t, offsets, out);
    todo!("day 11: rope_scalar")
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
    let _ = (isa, x, shape, t, offsets, out);
    todo!("day 11: rope")
}

/// The scalar SwiGLU gate: `out = gate / (1 + exp(-gate)) * up`,
/// elementwise, with the standard library's `exp`.
///
/// Errors: `up` or `out` not as long as `gate`.
pub fn swiglu_scalar(gate: &[f32], up: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    let _ = (gate, up, out);
    todo!("day 11: swiglu_scalar")
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
    let _ = (isa, gate, up, out);
    todo!("day 11: swiglu")
}

/// The scalar softmax of each row of `s` elements: `m = max(row)`,
/// `e_j = exp(x_j - m)` (standard library), `out_j = e_j / sum(e)`, the sum
/// in input order. A row of all `-inf` gives NaN (`-inf - -inf`), as MLX's
/// does; a NaN in a row makes the whole row NaN.
///
/// Errors: `x` not whole rows of `s`, `out` not as long as `x`.
pub fn softmax_scalar(x: &[f32], s: usize, out: &mut [f32]) -> Result<(), KernelError> {
    let _ = (x, s, out);
    todo!("day 11: softmax_scalar")
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
    let _ = (isa, x, s, out);
    todo!("day 11: softmax")
}

#[allow(dead_code)]
mod simd;
