//! The mask an attention layer applies to its scores (given code, shared by
//! days 3 and 5 and by week 2's cache-aware model).
//!
//! It lives here, not in a day's module, so that a day taken from the
//! reference (`ref-dayN`) and the learner's own days pass the same type.

use mlx_rs::Array;

/// The mask an attention layer applies to its `L x S` scores (`L` queries,
/// `S` keys).
///
/// Re-exported as `crate::attention_grouped::AttentionMask` in the learner's
/// crate and in the reference.
#[derive(Debug, Clone, Copy)]
pub enum AttentionMask<'a> {
    /// Every query sees every key.
    None,
    /// Query `i` sees keys `0..=i + (S - L)` (day 3's `causal_mask(L, S)`):
    /// the `L` queries are the last `L` of the `S` positions.
    Causal,
    /// An additive mask broadcastable to `N x H_q x L x S`.
    Array(&'a Array),
}
