//! What text generation needs from a model (given code: not an exercise).
//!
//! Day 7's `simple_generate` is generic over [`CausalLm`] rather than tied to
//! one crate's `Qwen2ModelWeek1`, so that a day taken from the reference
//! (`ref-day7`) still drives the learner's own model, and the reference's
//! generation loop can be tested with a scripted model. [`CachedLm`] is the
//! week-2 seam: a model that runs only the new tokens, keeping the keys and
//! values of the earlier ones in a [`KvCache`] per layer.

use crate::kv_cache::KvCache;
use crate::{Error, Result};
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

    /// The number of token ids the model knows (`0..vocab`), or `None` when
    /// it does not say (the default). Generation checks the prompt's ids
    /// against it on the host, before anything reaches the device.
    fn vocab_size(&self) -> Option<usize> {
        None
    }
}

/// A causal language model with a key/value cache (week 2).
///
/// A forward pass takes only the tokens not yet in the cache; their
/// positions start at the caches' offset (all layers' caches have the same
/// offset), and attention uses day 3's `causal_mask(L, offset + L)`.
pub trait CachedLm {
    /// Empty caches, one per decoder layer, in layer order.
    fn new_cache(&self) -> Vec<Box<dyn KvCache>>;

    /// The logits of the last new position.
    ///
    /// - `inputs`: `N x L` int32 ids of the new tokens (`L >= 1`), at
    ///   positions `offset..offset + L`.
    /// - `cache`: the caches from [`CachedLm::new_cache`]; each grows by `L`.
    /// - returns: `N x vocab`.
    ///
    /// Errors: the model's (shapes, a cache of the wrong length, positions
    /// past the context).
    fn forward_last_cached(&self, inputs: &Array, cache: &mut [Box<dyn KvCache>]) -> Result<Array>;

    /// As [`CausalLm::context_len`].
    fn context_len(&self) -> Option<usize> {
        None
    }

    /// As [`CausalLm::vocab_size`].
    fn vocab_size(&self) -> Option<usize> {
        None
    }
}

/// Checks token ids on the host, before they become an MLX array: every id
/// must be in `0..vocab`.
///
/// The embedding's gather (`take_axis`) does not check its indices, and
/// checking them inside the forward pass would force a device-to-host sync
/// on every step; so the ids are checked here, where they are still host
/// `u32`s (the generation loops call it on the prompt; sampled ids are in
/// range by construction).
///
/// Errors: [`Error::Invalid`] naming the first id outside `0..vocab` and its
/// position (`what` says which ids, e.g. `"prompt"`).
pub fn check_token_ids(what: &str, ids: &[u32], vocab: usize) -> Result<()> {
    match ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        Some((i, id)) => Err(Error::Invalid(format!(
            "{what} token {i} is id {id}, outside the vocabulary 0..{vocab}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod id_tests {
    use super::check_token_ids;

    #[test]
    fn ids_inside_the_vocabulary_pass() {
        assert!(check_token_ids("prompt", &[0, 3, 1], 4).is_ok());
        assert!(check_token_ids("prompt", &[], 4).is_ok());
    }

    #[test]
    fn the_first_id_outside_is_named() {
        let e = check_token_ids("prompt", &[0, 4, 9], 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("prompt token 1 is id 4"), "{e}");
        assert!(e.contains("0..4"), "{e}");
    }
}
