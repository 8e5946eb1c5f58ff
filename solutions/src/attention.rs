//! Day 1: scaled dot-product attention and a plain multi-head attention layer.
//!
//! Shapes follow the course: `Q: N.. x L x D`, `K, V: N.. x S x D` for the
//! function; hidden states `N x L x E` with `E = H x D` for the layer.

use crate::basics::{linear, softmax};
use mlx_rs::Array;
use tiny_llm_common::{expect_min_ndim, shape_error, Result};

/// Scaled dot-product attention: `softmax(Q K^T * scale + mask) V`.
///
/// - `query`: `N.. x L x D`; `key`, `value`: `N.. x S x D` (same batch dims).
/// - `scale`: multiplies the scores; `None` means `1 / sqrt(D)`.
/// - `mask`: optional additive mask broadcastable to `N.. x L x S`
///   (0 to keep, a large negative number or `-inf` to drop).
/// - returns: `N.. x L x D`, in `query`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when the head dims of Q and K,
/// or the sequence lengths of K and V, differ.
///
/// Reference: Vaswani et al. 2017, "Attention Is All You Need", eq. 1;
/// `mx.fast.scaled_dot_product_attention`.
pub fn scaled_dot_product_attention_simple(
    query: &Array,
    key: &Array,
    value: &Array,
    scale: Option<f32>,
    mask: Option<&Array>,
) -> Result<Array> {
    expect_min_ndim("query", query, 2, "[N.., L, D]")?;
    expect_min_ndim("key", key, 2, "[N.., S, D]")?;
    expect_min_ndim("value", value, 2, "[N.., S, D]")?;
    if key.dim(-1) != query.dim(-1) {
        return Err(shape_error(
            "key",
            key,
            &format!("[N.., S, {}] (D of query)", query.dim(-1)),
        ));
    }
    if value.dim(-2) != key.dim(-2) {
        return Err(shape_error(
            "value",
            value,
            &format!("[N.., {}, D] (S of key)", key.dim(-2)),
        ));
    }
    let scale = scale.unwrap_or(1.0 / (query.dim(-1) as f32).sqrt());
    let scale = Array::from_f32(scale).as_dtype(query.dtype())?;
    let mut scores = query.matmul(key.swap_axes(-2, -1)?)?.multiply(scale)?;
    if let Some(mask) = mask {
        scores = scores.add(mask)?;
    }
    Ok(softmax(&scores, -1)?.matmul(value)?)
}

/// Multi-head attention with no biases, as `mlx.nn.MultiHeadAttention(E, H)`.
///
/// Weights are `E x E` in checkpoint layout (`out x in`); heads are split
/// from the projected `N x L x E` into `N x H x L x D`.
///
/// Reference: Vaswani et al. 2017, section 3.2.2; `mlx.nn.MultiHeadAttention`.
#[derive(Debug, Clone)]
pub struct SimpleMultiHeadAttention {
    /// `E`, the model width.
    pub hidden_size: i32,
    /// `H`, the number of heads; `D = E / H`.
    pub num_heads: i32,
    /// Query projection, `E x E`.
    pub wq: Array,
    /// Key projection, `E x E`.
    pub wk: Array,
    /// Value projection, `E x E`.
    pub wv: Array,
    /// Output projection, `E x E`.
    pub wo: Array,
}

impl SimpleMultiHeadAttention {
    /// Builds the layer, checking that `H` divides `E` and every weight is
    /// `E x E`.
    pub fn new(
        hidden_size: i32,
        num_heads: i32,
        wq: Array,
        wk: Array,
        wv: Array,
        wo: Array,
    ) -> Result<Self> {
        if num_heads <= 0 || hidden_size % num_heads != 0 {
            return Err(tiny_llm_common::Error::Invalid(format!(
                "num_heads ({num_heads}) must be positive and divide hidden_size ({hidden_size})"
            )));
        }
        for (name, w) in [("wq", &wq), ("wk", &wk), ("wv", &wv), ("wo", &wo)] {
            if w.shape() != [hidden_size, hidden_size] {
                return Err(shape_error(
                    name,
                    w,
                    &format!("[{hidden_size}, {hidden_size}]"),
                ));
            }
        }
        Ok(Self {
            hidden_size,
            num_heads,
            wq,
            wk,
            wv,
            wo,
        })
    }

    /// `N x L x E` -> `N x H x L x D`.
    fn split_heads(&self, x: &Array) -> Result<Array> {
        let (n, l) = (x.dim(0), x.dim(1));
        let d = self.hidden_size / self.num_heads;
        Ok(x.reshape(&[n, l, self.num_heads, d])?
            .transpose_axes(&[0, 2, 1, 3])?)
    }

    /// Attention of `query` over `key`/`value`.
    ///
    /// Project with `wq`/`wk`/`wv`, split `N x L x E` into `N x H x L x D`,
    /// attend with [`scaled_dot_product_attention_simple`] (default scale),
    /// merge the heads back to `N x L x E`, project with `wo`.
    ///
    /// - `query`: `N x L x E`; `key`, `value`: `N x S x E`.
    /// - `mask`: optional additive mask broadcastable to `N x H x L x S`.
    /// - returns: `N x L x E`.
    pub fn forward(
        &self,
        query: &Array,
        key: &Array,
        value: &Array,
        mask: Option<&Array>,
    ) -> Result<Array> {
        let e = self.hidden_size;
        for (name, x) in [("query", query), ("key", key), ("value", value)] {
            if x.ndim() != 3 || x.dim(-1) != e {
                return Err(shape_error(name, x, &format!("[N, L, {e}]")));
            }
        }
        let q = self.split_heads(&linear(query, &self.wq, None)?)?;
        let k = self.split_heads(&linear(key, &self.wk, None)?)?;
        let v = self.split_heads(&linear(value, &self.wv, None)?)?;
        let o = scaled_dot_product_attention_simple(&q, &k, &v, None, mask)?;
        let (n, l) = (query.dim(0), query.dim(1));
        let o = o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[n, l, e])?;
        linear(&o, &self.wo, None)
    }
}
