//! Day 2: rotary positional embedding (RoPE).
//!
//! Each pair of features of a head is rotated by an angle proportional to the
//! token's position, so that `q . k` depends on the *relative* position only.
//!
//! Week-1 rule: array ops only (`arange`, `exp`, `cos`, `sin`, `multiply`,
//! `reshape`, `try_index`, `concatenate`, `stack`, ...). No
//! `mlx_rs::fast::rope`, no `mlx_rs::nn`.

use mlx_rs::ops::indexing::{Ellipsis, TryIndexOp};
use mlx_rs::ops::{arange, concatenate, stack};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::{expect_min_ndim, shape_error, Error, Result};

/// The `seq_len x D/2` float32 `cos` and `sin` of `p * theta_i`, as lazy
/// arrays: nothing is computed until a forward pass first reads them, and
/// a table that is never read (a layer's own, replaced by the model's
/// shared one) costs no memory.
fn tables(dims: i32, seq_len: i32, base: f32) -> Result<(Array, Array)> {
    let half = dims / 2;
    // theta_i = base^(-2i/D) = exp(-i * ln(base) / (D/2))
    let inv_freq = arange::<_, f32>(0, half, 1)?
        .multiply(Array::from_f32(-base.ln() / half as f32))?
        .exp()?;
    let positions = arange::<_, f32>(0, seq_len, 1)?.reshape(&[seq_len, 1])?;
    let angles = positions.multiply(inv_freq.reshape(&[1, half])?)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Rotary positional embedding with precomputed `cos`/`sin` tables.
///
/// For the pair `(x1, x2)` with frequency index `i` (`0 <= i < D/2`) at
/// position `p`, with `theta_i = base^(-2i/D)`:
/// `(x1, x2) -> (x1 cos(p theta_i) - x2 sin(p theta_i), x1 sin(p theta_i) + x2 cos(p theta_i))`.
///
/// - `traditional = true`: the pairs are interleaved, `(x[2i], x[2i+1])`
///   (the RoFormer paper, GPT-J).
/// - `traditional = false`: the pairs are the two halves, `(x[i], x[i + D/2])`
///   (GPT-NeoX, Hugging Face Qwen2/Llama: "rotate_half").
///
/// Reference: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary
/// Position Embedding", eq. 34; `mx.fast.rope`.
#[derive(Debug, Clone)]
pub struct RoPE {
    /// `D`, the rotated head width (even).
    pub dims: i32,
    /// The number of positions the tables cover (`0..seq_len`).
    pub seq_len: i32,
    /// `theta`'s base (10000 in the paper, 1e6 for Qwen2).
    pub base: f32,
    /// Interleaved pairs (`true`) or halves (`false`).
    pub traditional: bool,
    /// `cos(p * theta_i)`, `seq_len x D/2`, float32.
    pub cos: Array,
    /// `sin(p * theta_i)`, `seq_len x D/2`, float32.
    pub sin: Array,
}

impl RoPE {
    /// Precomputes the `seq_len x D/2` float32 tables of `cos(p theta_i)`
    /// and `sin(p theta_i)` for `p = 0..seq_len`, `theta_i = base^(-2i/D)`.
    ///
    /// Errors: [`Error::Invalid`] when `dims` is not positive and even,
    /// `seq_len` is not positive, or `base` is not finite and > 0.
    ///
    /// Implementation: the tables stay lazy until the first forward pass reads
    /// them; a clone of the `RoPE` shares them (a clone of an `Array` shares
    /// its buffer), which is how a model keeps one table for all its layers.
    pub fn new(dims: i32, seq_len: i32, base: f32, traditional: bool) -> Result<Self> {
        if dims <= 0 || dims % 2 != 0 {
            return Err(Error::Invalid(format!(
                "RoPE dims must be positive and even, got {dims}"
            )));
        }
        if seq_len <= 0 {
            return Err(Error::Invalid(format!(
                "RoPE seq_len must be positive, got {seq_len}"
            )));
        }
        if !(base.is_finite() && base > 0.0) {
            return Err(Error::Invalid(format!(
                "RoPE base must be finite and > 0, got {base}"
            )));
        }
        let (cos, sin) = tables(dims, seq_len, base)?;
        Ok(Self {
            dims,
            seq_len,
            base,
            traditional,
            cos,
            sin,
        })
    }

    /// Rotates `x` for positions `offset..offset + L`.
    ///
    /// - `x`: `N.. x L x H x D` (batch dims, sequence, heads, head width),
    ///   any float dtype.
    /// - `offset`: the position of the first token (the number of tokens
    ///   before it, e.g. in a KV cache).
    /// - returns: same shape and dtype as `x` (compute in float32 and cast
    ///   back).
    ///
    /// Errors: [`Error::Shape`] when `x` has fewer than 3 dims or
    /// `D != dims`; [`Error::Invalid`] when `offset < 0` or
    /// `offset + L > seq_len`.
    pub fn forward(&self, x: &Array, offset: i32) -> Result<Array> {
        expect_min_ndim("rope input", x, 3, "[N.., L, H, D]")?;
        if x.dim(-1) != self.dims {
            return Err(shape_error(
                "rope input",
                x,
                &format!("[N.., L, H, {}]", self.dims),
            ));
        }
        let l = x.dim(-3);
        if offset < 0 || offset + l > self.seq_len {
            return Err(Error::Invalid(format!(
                "RoPE positions {offset}..{} are outside 0..{} (seq_len)",
                offset + l,
                self.seq_len
            )));
        }
        let half = self.dims / 2;
        // L x 1 x D/2: broadcasts over the heads and the batch dims.
        let cos = self
            .cos
            .try_index(offset..offset + l)?
            .reshape(&[l, 1, half])?;
        let sin = self
            .sin
            .try_index(offset..offset + l)?
            .reshape(&[l, 1, half])?;
        let xf = x.as_dtype(Dtype::Float32)?;
        let out = if self.traditional {
            // [.., D] -> [.., D/2, 2]: pair i is (x[2i], x[2i+1]).
            let mut shape = x.shape().to_vec();
            shape.pop();
            shape.extend([half, 2]);
            let pairs = xf.reshape(&shape)?;
            let x1 = pairs.try_index((Ellipsis, 0))?;
            let x2 = pairs.try_index((Ellipsis, 1))?;
            let r1 = x1.multiply(&cos)?.subtract(x2.multiply(&sin)?)?;
            let r2 = x1.multiply(&sin)?.add(x2.multiply(&cos)?)?;
            stack(&[r1, r2], -1)?.reshape(x.shape())?
        } else {
            // pair i is (x[i], x[i + D/2]).
            let x1 = xf.try_index((Ellipsis, 0..half))?;
            let x2 = xf.try_index((Ellipsis, half..self.dims))?;
            let r1 = x1.multiply(&cos)?.subtract(x2.multiply(&sin)?)?;
            let r2 = x1.multiply(&sin)?.add(x2.multiply(&cos)?)?;
            concatenate(&[r1, r2], -1)?
        };
        Ok(out.as_dtype(x.dtype())?)
    }
}
