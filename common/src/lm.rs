//! `CausalLm`: what text generation needs from a model (given code: not an
//! exercise).
//!
//! Day 7's `simple_generate` is generic over this trait rather than tied to
//! one crate's `Qwen2ModelWeek1`, so that a day taken from the reference
//! (`ref-day7`) still drives the learner's own model, and the reference's
//! generation loop can be tested with a scripted model.

use crate::Result;
use mlx_rs::Array;

/// A causal language model: token ids in, next-token logits out.
pub trait CausalLm {
    /// The logits of the last position only.
    ///
    /// - `inputs`: `N x L` int32 token ids.
    /// - returns: `N x vocab` logits for the token after position `L - 1`.
    fn forward_last(&self, inputs: &Array) -> Result<Array>;

    /// The most positions one sequence may have (prompt and generated
    /// tokens together), or `None` when the model sets no limit (the
    /// default). Generation refuses a longer prompt and stops there.
    fn context_len(&self) -> Option<usize> {
        None
    }
}
