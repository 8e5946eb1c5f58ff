//! Day 8 (given code, not an exercise): the layers of the week-2 model, dense
//! or quantized behind one call. A [`Linear`] whose weight is dense goes to
//! day 1's `linear`; a packed one to day 10's `quantized_linear`, so a dense
//! checkpoint never reaches day 9 or 10 code. The token table likewise:
//! day 5's `Embedding` or day 10's `QuantizedEmbedding`.
//!
//! Reference: `mlx_lm.models.qwen2.Model` (`nn.Linear` / `nn.QuantizedLinear`,
//! `nn.Embedding` / `nn.QuantizedEmbedding` after `nn.quantize`).

use crate::basics::linear;
use crate::embedding::Embedding;
use crate::quantized_linear::{quantized_linear, QuantizedEmbedding};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::linear_q8::quantized_linear_q8;
use tiny_llm_common::{
    shape_error, take_weight, Checkpoint, Error, Linear, LinearWeight, Result, Week2Kernels,
};

/// `x W^T + b` for a dense or quantized layer (given): a dense weight goes
/// to day 1's `linear`, a quantized one to day 10's `quantized_linear`
/// (which computes in f32: other dtypes are cast to f32 and back). A dense
/// checkpoint never reaches day 9 or 10 code.
///
/// - `x`: `N.. x I`; returns `N.. x O` in `x`'s dtype.
pub fn project(x: &Array, layer: &Linear) -> Result<Array> {
    match &layer.weight {
        LinearWeight::Dense(w) => linear(x, w, layer.bias.as_ref()),
        LinearWeight::Quantized { .. } if x.dtype() == Dtype::Float32 => quantized_linear(x, layer),
        LinearWeight::Quantized { .. } => {
            let y = quantized_linear(&x.as_dtype(Dtype::Float32)?, layer)?;
            Ok(y.as_dtype(x.dtype())?)
        }
    }
}

/// [`project`] with the model's kernel choice (given): with `kernels.gpu`
/// a quantized layer runs day 10's CUDA kernels
/// (`crate::qmatmul_gpu::quantized_linear`, in `x`'s dtype); else, with
/// `kernels.int8_activations`, the int8-activation kernel
/// (`tiny_llm_common::linear_q8`, beyond the course: `x` quantized to int8
/// per group, not exact); otherwise exactly [`project`]. A dense layer is
/// always day 1's `linear` (MLX's matmul, on MLX's default device).
///
/// - `x`: `N.. x I`; returns `N.. x O` in `x`'s dtype.
pub fn project_with(x: &Array, layer: &Linear, kernels: Week2Kernels) -> Result<Array> {
    match &layer.weight {
        LinearWeight::Quantized { .. } if kernels.gpu => {
            crate::qmatmul_gpu::quantized_linear(x, layer)
        }
        LinearWeight::Quantized { .. } if kernels.int8_activations => {
            let y = quantized_linear_q8(x, layer)?;
            Ok(if x.dtype() == Dtype::Float32 {
                y
            } else {
                y.as_dtype(x.dtype())?
            })
        }
        _ => project(x, layer),
    }
}

/// The token table, dense (day 5's [`Embedding`]) or quantized (day 10's
/// [`QuantizedEmbedding`]) (given).
#[derive(Debug, Clone)]
pub enum TokenTable {
    /// A float `vocab x E` table.
    Dense(Embedding),
    /// A packed `vocab x E` table.
    Quantized(QuantizedEmbedding),
}

impl TokenTable {
    /// `model.embed_tokens` of `checkpoint` (`vocab x E`): quantized when
    /// `model.embed_tokens.scales` is present; a dense table is cast to
    /// `dtype` (given).
    pub fn load(checkpoint: &Checkpoint, vocab: i32, e: i32, dtype: Dtype) -> Result<TokenTable> {
        let prefix = "model.embed_tokens";
        if checkpoint.weights.contains_key(&format!("{prefix}.scales")) {
            let table = load_linear(checkpoint, prefix, [vocab, e], false, dtype)?;
            return Ok(TokenTable::Quantized(QuantizedEmbedding::new(table)?));
        }
        let w = take_weight(
            &checkpoint.weights,
            &format!("{prefix}.weight"),
            &[vocab, e],
        )?;
        Ok(TokenTable::Dense(Embedding::new(w.as_dtype(dtype)?)?))
    }

    /// Rows of `ids` (`N x L` int32): `N x L x E` in `dtype` (given).
    pub fn embed(&self, ids: &Array, dtype: Dtype) -> Result<Array> {
        match self {
            TokenTable::Dense(t) => t.forward(ids),
            TokenTable::Quantized(t) => Ok(t.forward(ids)?.as_dtype(dtype)?),
        }
    }

    /// The tied output layer: `N.. x E` -> `N.. x vocab`, in `x`'s dtype
    /// (given).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        match self {
            TokenTable::Dense(t) => t.as_linear(x),
            TokenTable::Quantized(t) if x.dtype() == Dtype::Float32 => t.as_linear(x),
            TokenTable::Quantized(t) => Ok(t
                .as_linear(&x.as_dtype(Dtype::Float32)?)?
                .as_dtype(x.dtype())?),
        }
    }

    /// [`TokenTable::as_linear`] with the model's kernel choice (given): a
    /// quantized table goes through [`project_with`] when `kernels.gpu` or
    /// `kernels.int8_activations` is on.
    pub fn as_linear_with(&self, x: &Array, kernels: Week2Kernels) -> Result<Array> {
        match self {
            TokenTable::Quantized(t) if kernels.gpu || kernels.int8_activations => {
                project_with(x, &t.table, kernels)
            }
            _ => self.as_linear(x),
        }
    }
}

/// The linear layer `prefix` of `checkpoint`, checked to be `O x I`
/// (`shape`), quantized when `{prefix}.scales` is present (at
/// `checkpoint.quant_of(prefix)`), with `{prefix}.bias` when `bias` (then
/// required; ignored otherwise). A dense weight and every bias are cast to
/// `dtype`; packed codes, scales and biases stay as stored (given).
///
/// Errors: [`Error::Invalid`] or [`Error::Shape`] naming the missing or
/// wrongly shaped tensor.
pub fn load_linear(
    checkpoint: &Checkpoint,
    prefix: &str,
    shape: [i32; 2],
    bias: bool,
    dtype: Dtype,
) -> Result<Linear> {
    let quant = checkpoint.quant_of(prefix).map(|q| (q.group_size, q.bits));
    let key = format!("{prefix}.weight");
    let w = checkpoint
        .weights
        .get(&key)
        .ok_or_else(|| Error::Invalid(format!("missing weight `{key}`")))?;
    let [o, i] = shape;
    let packed = checkpoint.weights.contains_key(&format!("{prefix}.scales"));
    let (want, what) = match quant {
        Some((_, bits)) if packed => (
            [o, i * bits / 32],
            format!(
                "[{o}, {}] (an {o} x {i} matrix packed at {bits} bits)",
                i * bits / 32
            ),
        ),
        _ => ([o, i], format!("[{o}, {i}]")),
    };
    if w.shape() != want {
        return Err(shape_error(&key, w, &what));
    }
    // Name the layer in the errors of its parts (bias, scales, ...).
    let mut layer =
        Linear::from_weights(&checkpoint.weights, prefix, quant).map_err(|e| match e {
            Error::Shape {
                what,
                expected,
                got,
            } => Error::Shape {
                what: format!("{prefix}.{what}"),
                expected,
                got,
            },
            Error::Invalid(m) if !m.contains(prefix) => Error::Invalid(format!("{prefix}: {m}")),
            e => e,
        })?;
    layer.bias = match (bias, layer.bias.take()) {
        (true, Some(b)) => Some(b.as_dtype(dtype)?),
        (true, None) => return Err(Error::Invalid(format!("missing weight `{prefix}.bias`"))),
        (false, _) => None,
    };
    if let LinearWeight::Dense(w) = &layer.weight {
        layer.weight = LinearWeight::Dense(w.as_dtype(dtype)?);
    }
    Ok(layer)
}
