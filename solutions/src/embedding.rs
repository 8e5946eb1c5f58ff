//! Day 5: token embeddings, and the same matrix as the output layer.
//!
//! Week-1 rule: array ops only (`take_axis`, ...) and your
//! day-1 `crate::basics::linear`. No `mlx_rs::nn::Embedding`.

use crate::basics::linear;
use mlx_rs::{Array, Dtype};
use tiny_llm_common::{shape_error, Error, Result};

/// A lookup table from token ids to vectors: row `t` of `weight` is the
/// embedding of token `t`.
///
/// Reference: `mlx.nn.Embedding` (`__call__` and `as_linear`); Press & Wolf
/// 2017, "Using the Output Embedding to Improve Language Models" (tied
/// input and output embeddings).
#[derive(Debug, Clone)]
pub struct Embedding {
    /// `vocab x E` (the checkpoint's `model.embed_tokens.weight`).
    pub weight: Array,
}

fn is_integer(d: Dtype) -> bool {
    use Dtype::*;
    matches!(
        d,
        Int8 | Int16 | Int32 | Int64 | Uint8 | Uint16 | Uint32 | Uint64
    )
}

impl Embedding {
    /// Wraps a `vocab x E` table.
    ///
    /// Errors: [`Error::Shape`] when `weight` is not 2-D (use
    /// [`shape_error`]).
    pub fn new(weight: Array) -> Result<Self> {
        if weight.ndim() != 2 {
            return Err(shape_error("embedding weight", &weight, "[vocab, E]"));
        }
        Ok(Self { weight })
    }

    /// `vocab`, the number of rows.
    pub fn vocab_size(&self) -> i32 {
        self.weight.dim(0)
    }

    /// Looks up the rows of `ids`: `out[n, l] = weight[ids[n, l]]`.
    ///
    /// - `ids`: `N x L` (any shape) integer token ids in `0..vocab`.
    /// - returns: `ids`' shape followed by `E`, in `weight`'s dtype.
    ///
    /// Errors: [`Error::Invalid`] when `ids` is not an integer array. The
    /// range `0..vocab` is NOT checked here: that would read the ids back
    /// from the device (a host sync) on every forward pass. The caller checks
    /// them on the host, where they are still `u32`s
    /// ([`tiny_llm_common::check_token_ids`], as the generation loops do);
    /// MLX's gather does not check, and an id outside the table reads
    /// garbage.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        if !is_integer(ids.dtype()) {
            return Err(Error::Invalid(format!(
                "embedding ids must be integers, got {:?}",
                ids.dtype()
            )));
        }
        Ok(self.weight.take_axis(ids, 0)?)
    }

    /// The table as an output layer (tied `lm_head`): `x @ weight^T`, the
    /// score of every token.
    ///
    /// - `x`: `N.. x E`.
    /// - returns: `N.. x vocab`, in `x`'s dtype.
    ///
    /// Errors: [`Error::Shape`] when `x`'s last dimension is not `E`.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        linear(x, &self.weight, None)
    }
}
