//! Day 4: RMSNorm, the normalisation of every Qwen2/Llama block.
//!
//! Week-1 rule: array ops only (`square`, `mean_axis`, `rsqrt`, `multiply`,
//! `as_dtype`, ...). No `mlx_rs::fast::rms_norm`, no `mlx_rs::nn`.

use mlx_rs::{Array, Dtype};
use tiny_llm_common::{shape_error, Result};

/// Root-mean-square layer normalisation:
/// `y = x / sqrt(mean(x^2) + eps) * weight`, over the last axis.
///
/// Accumulate the mean of squares in float32 whatever `x`'s dtype: in
/// float16, `x^2` overflows to `inf` once `|x| > 256`, and hidden states of
/// real models get there (a test feeds you values around 300..1000).
///
/// Reference: Zhang & Sennrich 2019, "Root Mean Square Layer Normalization",
/// eq. 4; `mx.fast.rms_norm`; Hugging Face `Qwen2RMSNorm`.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// The per-feature gain, `E` (the checkpoint's `*_layernorm.weight`).
    pub weight: Array,
    /// Added to the mean of squares (the config's `rms_norm_eps`).
    pub eps: f32,
}

impl RmsNorm {
    /// Builds the norm.
    ///
    /// Errors: [`tiny_llm_common::Error::Shape`] when `weight` is not 1-D
    /// (build it with [`shape_error`]).
    pub fn new(weight: Array, eps: f32) -> Result<Self> {
        if weight.ndim() != 1 {
            return Err(shape_error("rms_norm weight", &weight, "[E]"));
        }
        Ok(Self { weight, eps })
    }

    /// Normalises `x` over its last axis.
    ///
    /// - `x`: `N.. x E`, any float dtype.
    /// - returns: same shape and dtype as `x` (compute in float32, cast back).
    ///
    /// Errors: [`tiny_llm_common::Error::Shape`] when `x`'s last dimension is
    /// not `E`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let e = self.weight.dim(0);
        if x.ndim() == 0 || x.dim(-1) != e {
            return Err(shape_error("rms_norm input", x, &format!("[N.., {e}]")));
        }
        let xf = x.as_dtype(Dtype::Float32)?;
        let mean_sq = xf.square()?.mean_axis(-1, true)?;
        let eps = Array::from_f32(self.eps);
        let normed = xf.multiply(mean_sq.add(eps)?.rsqrt()?)?;
        let out = normed.multiply(self.weight.as_dtype(Dtype::Float32)?)?;
        Ok(out.as_dtype(x.dtype())?)
    }
}
