//! Day 1: scaled dot-product attention and a plain multi-head attention layer.
//!
//! Shapes follow the course: `Q: N.. x L x D`, `K, V: N.. x S x D` for the
//! function; hidden states `N x L x E` with `E = H x D` for the layer.
//!
//! Hints: Check your work with `cargo xtask check day1`.

#[allow(unused_imports)]
use crate::basics::{linear, softmax};
use mlx_rs::Array;
#[allow(unused_imports)]
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
    let _ = (query, key, value, scale, mask);
    todo!("day 1: scaled_dot_product_attention_simple")
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
    ///
    /// Hints: given code: nothing to implement here.
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
        let _ = (query, key, value, mask);
        todo!("day 1: SimpleMultiHeadAttention::forward")
    }
}
