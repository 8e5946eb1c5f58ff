//! Day 10: the kernel meets MLX: a quantized linear layer and a quantized
//! embedding table, computed by [`crate::qmatmul_simd::qmatmul`] on the
//! host slices of MLX's buffers (through the given
//! [`tiny_llm_common::cpu_bridge`]).
//!
//! Reference: mlx-lm / `mlx.nn.QuantizedLinear` and
//! `mlx.nn.QuantizedEmbedding` (`__call__` gathers the packed rows, their
//! scales and biases, then `mx.dequantize`; `as_linear` is
//! `mx.quantized_matmul` with the table).

use crate::qmatmul_simd::qmatmul;
use crate::quantize::dequantize_affine;
use half::{bf16, f16};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::cpu_bridge::{crossing, from_vec, host, host_f32};
use tiny_llm_common::qmatrix::{QuantizedMatrix, Scale};
use tiny_llm_common::{shape_error, Error, Linear, LinearWeight, Result};

/// `x W^T + b` for a quantized [`Linear`], through [`crate::qmatmul_simd::qmatmul`].
///
/// - `x`: `N.. x I` f32; returns `N.. x O` f32.
/// - `layer`: a quantized `O x I` layer (4 or 8 bits, groups of 32, 64 or
///   128, scales and biases f32, f16 or bf16), with or without a bias.
///
/// `x` (another float dtype is cast to f32), the packed weight, the scales
/// and the biases are read in place through the bridge (one sync for `x`;
/// the weights are evaluated once, on their first call); the output buffer
/// becomes the result array (`cpu_bridge::from_vec`: MLX's CPU allocator
/// copies it once); the bias is added by MLX.
///
/// Errors: [`Error::Invalid`] for a dense layer, a non-float `x`, or scales
/// and biases of different dtypes; [`Error::Shape`] when `x`'s last
/// dimension is not `I`.
///
/// Implementation: one crossing costs a sync of `x` (it ends MLX's lazy
/// graph there: whatever `x` depends on is computed now), four borrows and
/// one wrap: no copy of the weights, one of the output (the bridge counts them:
/// `cpu_bridge::stats`). Measured with `solutions/examples/qmatmul_bench.rs`
/// (release, 2-core EPYC, 2026-12-02): 11.0 us for the whole call on a
/// 1 x 896 by 128 x 896 layer, 9.5 us for the kernel alone: 1.5 us a
/// crossing, about 0.25 ms a decoded token at ~170 crossings.
pub fn quantized_linear(x: &Array, layer: &Linear) -> Result<Array> {
    let LinearWeight::Quantized {
        w,
        scales,
        biases,
        group_size,
        bits,
    } = &layer.weight
    else {
        return Err(Error::Invalid(
            "quantized_linear needs a quantized layer (packed weight, scales, biases); this one is dense"
                .into(),
        ));
    };
    let (o, i) = (layer.out_features(), layer.in_features());
    if x.ndim() < 1 || x.dim(-1) != i {
        return Err(shape_error("x", x, &format!("[N.., {i}]")));
    }
    if scales.dtype() != biases.dtype() {
        return Err(Error::Invalid(format!(
            "scales ({:?}) and biases ({:?}) must have the same dtype",
            scales.dtype(),
            biases.dtype()
        )));
    }
    let m = x.size() / i.max(1) as usize;
    let xh = host_f32(x, "x")?;
    let wh = host(w, "weight", Dtype::Uint32)?;
    let sh = host(scales, "scales", scales.dtype())?;
    let bh = host(biases, "biases", biases.dtype())?;
    let mut out = vec![0f32; m * o as usize];
    let dims = (o as usize, i as usize, *group_size as usize, *bits as u32);
    crossing();
    let (xs, ws) = (xh.slice::<f32>()?, wh.slice::<u32>()?);
    match scales.dtype() {
        Dtype::Float32 => run::<f32>(xs, m, ws, sh.slice()?, bh.slice()?, dims, &mut out),
        Dtype::Bfloat16 => run::<bf16>(xs, m, ws, sh.slice()?, bh.slice()?, dims, &mut out),
        Dtype::Float16 => run::<f16>(xs, m, ws, sh.slice()?, bh.slice()?, dims, &mut out),
        d => Err(Error::Invalid(format!(
            "scales must be f32, f16 or bf16, got {d:?}"
        ))),
    }?;
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("ndim >= 1") = o;
    let y = from_vec(out, &shape)?;
    Ok(match &layer.bias {
        Some(b) => y.add(b)?,
        None => y,
    })
}

/// The kernel on borrowed slices; `dims` = `(O, I, group_size, bits)`.
fn run<S: Scale>(
    x: &[f32],
    m: usize,
    packed: &[u32],
    scales: &[S],
    biases: &[S],
    (o, i, group_size, bits): (usize, usize, usize, u32),
    out: &mut [f32],
) -> Result<()> {
    let kernel = |e: tiny_llm_common::qmatrix::KernelError| Error::Invalid(e.to_string());
    let w = QuantizedMatrix::new(packed, scales, biases, o, i, group_size, bits).map_err(kernel)?;
    qmatmul(x, m, &w, out).map_err(kernel)
}

/// An embedding table stored quantized (a tied model's `embed_tokens`, also
/// its `lm_head`).
#[derive(Debug, Clone)]
pub struct QuantizedEmbedding {
    /// The table as a quantized `vocab x E` layer (no bias).
    pub table: Linear,
}

impl QuantizedEmbedding {
    /// Wraps a quantized `vocab x E` [`Linear`] (Errors: a dense one, or
    /// one with a bias).
    pub fn new(table: Linear) -> Result<Self> {
        if !table.is_quantized() {
            return Err(Error::Invalid(
                "QuantizedEmbedding needs a quantized table; use day 5's Embedding for a dense one"
                    .into(),
            ));
        }
        if table.bias.is_some() {
            return Err(Error::Invalid(
                "an embedding table has no bias, but this quantized table has one".into(),
            ));
        }
        Ok(Self { table })
    }

    /// Gathers and dequantizes the rows of `ids` (`N x L` int32):
    /// `N x L x E`, f32.
    ///
    /// The packed rows, scales and biases of `ids` are gathered (MLX `take`
    /// on axis 0) and dequantized with day 6's `dequantize_affine`, the
    /// scales and biases cast to f32 first (exact for f16 and bf16), so the
    /// rows are `s * q + b` in f32, not rounded to the scales' dtype (mlx-lm
    /// with its parameters in f32). Any shape of integer ids works; ids
    /// outside `0..vocab` are not checked (as day 5).
    ///
    /// Errors: [`Error::Invalid`] when `ids` is not an integer array.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        use Dtype::*;
        if !matches!(
            ids.dtype(),
            Int8 | Int16 | Int32 | Int64 | Uint8 | Uint16 | Uint32 | Uint64
        ) {
            return Err(Error::Invalid(format!(
                "embedding ids must be integers, got {:?}",
                ids.dtype()
            )));
        }
        let LinearWeight::Quantized {
            w,
            scales,
            biases,
            group_size,
            bits,
        } = &self.table.weight
        else {
            unreachable!("QuantizedEmbedding::new checks the table is quantized")
        };
        let flat = ids.reshape(&[-1])?;
        let rows = dequantize_affine(
            &w.take_axis(&flat, 0)?,
            &scales.take_axis(&flat, 0)?.as_dtype(Float32)?,
            &biases.take_axis(&flat, 0)?.as_dtype(Float32)?,
            *group_size,
            *bits,
        )?;
        let mut shape = ids.shape().to_vec();
        shape.push(self.table.in_features());
        Ok(rows.reshape(&shape)?)
    }

    /// The tied output layer: `x` `N.. x E` -> `N.. x vocab`, the table as a
    /// quantized matmul.
    ///
    /// Errors: those of [`quantized_linear`].
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        quantized_linear(x, &self.table)
    }
}
