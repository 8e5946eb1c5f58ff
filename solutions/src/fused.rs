//! Day 11: fused kernels meet MLX: RMSNorm, RoPE, SwiGLU and softmax, each
//! one pass over the host buffers through `crate::fused_cpu`'s kernels
//! and the given [`tiny_llm_common::cpu_bridge`], in place of the chains of
//! MLX ops of week 1 (each of which reads and writes the whole tensor).
//!
//! Reference: `mlx.core.fast.rms_norm`, `mlx.core.fast.rope`,
//! `mlx.core.softmax`; SwiGLU: Shazeer 2020, "GLU Variants Improve
//! Transformer".
//!
//! Each call is one crossing of the bridge (`cpu_bridge::crossing()` once,
//! so the model's tests can count the fused calls): the inputs are borrowed
//! with `host_f32` (evaluated; cast to f32 first, a copy, when they are
//! f16 or bf16), the kernel writes a new `Vec<f32>`, `from_vec` wraps it in
//! the input's shape, and a non-f32 input gets its output cast back to its
//! dtype. Shapes and dtypes are checked before anything is evaluated.
//!
//! Speed: a sync of the input (it ends MLX's lazy graph there), then the
//! kernel, which is memory-bound (see `crate::fused_cpu`: 8 to 12 bytes an
//! element), then MLX's copy of the output (4 bytes an element more).
//!
//! Implementation: the checks come first so that bad input never reaches
//! MLX or the kernel; the kernels' own length checks then cannot fail
//! (their errors would be a bug here, reported as `Error::Invalid`).

use crate::fused_cpu::{self, isa, KernelError, RopeTables};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::cpu_bridge::{crossing, from_vec, host_f32};
use tiny_llm_common::RopeView;
use tiny_llm_common::{shape_error, Error, Result};

/// A kernel's error (a length that does not follow from the shapes: a bug
/// here, the shapes being checked first) as the crate's error.
fn kernel(e: KernelError) -> Error {
    Error::Invalid(e.to_string())
}

/// Wraps the kernel's f32 output in `like`'s shape, cast to `like`'s dtype.
fn finish(out: Vec<f32>, like: &Array) -> Result<Array> {
    let y = from_vec(out, like.shape())?;
    Ok(if like.dtype() == Dtype::Float32 {
        y
    } else {
        y.as_dtype(like.dtype())?
    })
}

/// `x`'s dtype must be a float one (checked before any MLX call).
fn expect_float(what: &str, x: &Array) -> Result<()> {
    if !x.dtype().is_float() {
        return Err(Error::Invalid(format!(
            "{what}: expected a float array, got {:?}",
            x.dtype()
        )));
    }
    Ok(())
}

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * weight` over the last axis.
///
/// - `x`: `N.. x E`, any float dtype (computed in f32); `weight`: `E`.
/// - returns: `N.. x E` in `x`'s dtype; equal to day 4's `RmsNorm::forward`
///   within f32 rounding.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `weight` is not `E`;
/// [`tiny_llm_common::Error::Invalid`] for a non-float `x` or `eps <= 0`.
pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    expect_float("x", x)?;
    if x.ndim() == 0 || x.dim(-1) == 0 {
        return Err(shape_error("x", x, "[N.., E] with E >= 1"));
    }
    let e = x.dim(-1);
    if weight.ndim() != 1 || weight.dim(0) != e {
        return Err(shape_error(
            "weight",
            weight,
            &format!("[{e}] (x's last dimension)"),
        ));
    }
    expect_float("weight", weight)?;
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::Invalid(format!(
            "eps must be finite and > 0, got {eps}"
        )));
    }
    let (xh, wh) = (host_f32(x, "x")?, host_f32(weight, "weight")?);
    let mut out = vec![0f32; x.size()];
    crossing();
    fused_cpu::rms_norm(isa(), xh.slice()?, wh.slice()?, eps, &mut out).map_err(kernel)?;
    finish(out, x)
}

/// RoPE with one position offset per batch row, from `rope`'s cos/sin
/// tables (day 2's `RoPE` (as a [`RopeView`]): `dims`, `base`, `traditional`).
///
/// - `x`: `N x L x H x D` (`D = rope.dims`), any float dtype (computed in
///   f32); row `b`'s token `t` is at position `offsets[b] + t`.
/// - `offsets`: `N` offsets, or one for every row.
/// - returns: `N x L x H x D` in `x`'s dtype; with one offset, equal to
///   `rope.forward(x, offset)` within f32 rounding.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `x` is not 4-D with
/// `D = rope.dims`; [`tiny_llm_common::Error::Invalid`] when
/// `offsets.len()` is neither 1 nor `N`, or a position passes
/// `rope.seq_len` (naming the row and the position).
pub fn rope(x: &Array, rope: RopeView<'_>, offsets: &[i32]) -> Result<Array> {
    expect_float("x", x)?;
    if x.ndim() != 4 || x.dim(3) != rope.dims {
        return Err(shape_error(
            "rope input x",
            x,
            &format!("[N, L, H, {}]", rope.dims),
        ));
    }
    let (n, l, h) = (x.dim(0), x.dim(1), x.dim(2));
    if offsets.len() != 1 && offsets.len() as i32 != n {
        return Err(Error::Invalid(format!(
            "offsets: expected 1 or N = {n} offsets, got {}",
            offsets.len()
        )));
    }
    let mut starts = Vec::with_capacity(offsets.len());
    for (b, &o) in offsets.iter().enumerate() {
        if o < 0 || o as i64 + l as i64 > rope.seq_len as i64 {
            return Err(Error::Invalid(format!(
                "offsets: row {b} has positions {o}..{} outside RoPE's 0..{} (seq_len)",
                o as i64 + l as i64,
                rope.seq_len
            )));
        }
        starts.push(o as usize);
    }
    let xh = host_f32(x, "x")?;
    let (ch, sh) = (
        host_f32(rope.cos, "rope.cos")?,
        host_f32(rope.sin, "rope.sin")?,
    );
    let tables = RopeTables {
        cos: ch.slice()?,
        sin: sh.slice()?,
        dims: rope.dims as usize,
        traditional: rope.traditional,
    };
    let mut out = vec![0f32; x.size()];
    let shape = [n as usize, l as usize, h as usize];
    crossing();
    fused_cpu::rope(isa(), xh.slice()?, shape, &tables, &starts, &mut out).map_err(kernel)?;
    finish(out, x)
}

/// SwiGLU's gate: `silu(gate) * up`, elementwise, `silu(x) = x / (1 + e^-x)`.
///
/// - `gate`, `up`: the same shape `N.. x I`, float (computed in f32).
/// - returns: `N.. x I` in `gate`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when the shapes differ.
pub fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    expect_float("gate", gate)?;
    expect_float("up", up)?;
    if up.shape() != gate.shape() {
        return Err(shape_error(
            "up",
            up,
            &format!("{:?} (gate's shape)", gate.shape()),
        ));
    }
    let (gh, uh) = (host_f32(gate, "gate")?, host_f32(up, "up")?);
    let mut out = vec![0f32; gate.size()];
    crossing();
    fused_cpu::swiglu(isa(), gh.slice()?, uh.slice()?, &mut out).map_err(kernel)?;
    finish(out, gate)
}

/// Softmax over the last axis, numerically stable (the row maximum is
/// subtracted first; a row of all `-inf` gives NaN, as MLX's does).
///
/// - `x`: `N.. x S`, float (computed in f32).
/// - returns: `N.. x S` in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Invalid`] for a non-float or 0-D `x`.
pub fn softmax(x: &Array) -> Result<Array> {
    expect_float("x", x)?;
    if x.ndim() == 0 {
        return Err(Error::Invalid(
            "softmax: x is 0-D; expected [N.., S] (a last axis to normalise)".into(),
        ));
    }
    if x.size() == 0 {
        return finish(Vec::new(), x);
    }
    let xh = host_f32(x, "x")?;
    let mut out = vec![0f32; x.size()];
    crossing();
    fused_cpu::softmax(isa(), xh.slice()?, x.dim(-1) as usize, &mut out).map_err(kernel)?;
    finish(out, x)
}
