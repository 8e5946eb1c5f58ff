//! Day 7: picking the next token from the model's logits.
//!
//! Greedy (temperature 0), temperature, top-k and top-p (nucleus) sampling,
//! seeded so that a run can be reproduced. Follow mlx-lm's `make_sampler`
//! (mlx_lm/sample_utils.py) step for step and draw with MLX's random keys the
//! way MLX's own generator does: then a seeded run draws exactly the tokens
//! mlx-lm draws after `mx.random.seed(seed)`, which is what the tests check.
//!
//! Week-1 rule: array ops only (`argmax_axis`, `logsumexp_axis`, `sort_axis`,
//! `cumsum`, `argpartition_axis`, `take_along_axis`, `put_along_axis`,
//! `select`, ...); MLX random ops (`mlx_rs::random`) are allowed for the draw.
//!
//! Hints: Check your work with `cargo xtask check day7`.

use mlx_rs::random::RandomState;
use mlx_rs::Array;
#[allow(unused_imports)]
use tiny_llm_common::{shape_error, Error, Result};

/// How to pick the next token (given; defined in `tiny_llm_common` so that
/// the cli, the bench and every day pass the same type).
pub use tiny_llm_common::SamplerConfig;

/// A seeded token sampler (see [`SamplerConfig`] for the rules).
///
/// Keys: the state starts as `mlx_rs::random::key(seed)`; every random draw
/// splits it in two, keeps the first half as the new state and draws with the
/// second. `RandomState::with_seed(seed)` and `next_key()` do exactly that
/// (it is MLX's own `KeySequence::next`). Greedy steps draw nothing. Two
/// samplers built from the same config return the same tokens for the same
/// logits.
///
/// Hints: You may change the private fields.
#[derive(Debug)]
pub struct Sampler {
    #[allow(dead_code)]
    config: SamplerConfig,
    #[allow(dead_code)]
    rng: RandomState,
}

impl Sampler {
    /// Checks `config` and seeds the key sequence.
    ///
    /// Errors: [`Error::Invalid`] naming the argument (`temperature`,
    /// `top_k`, `top_p`) and the value when `temperature` is negative or not
    /// finite, `top_k` is `Some(0)`, or `top_p` is not in `(0, 1]` (NaN
    /// included).
    pub fn new(config: SamplerConfig) -> Result<Sampler> {
        let _ = config;
        todo!("day 7: Sampler::new")
    }

    /// The configuration this sampler was built with.
    pub fn config(&self) -> &SamplerConfig {
        todo!("day 7: Sampler::config")
    }

    /// Picks the next token.
    ///
    /// - `logits`: `V` or `1 x V`, any float dtype (compute in f32).
    /// - returns: a token id in `0..V`.
    ///
    /// Greedy (`temperature == 0`): the index of the largest logit (the first
    /// one on ties, as `argmax_axis` gives); no key is used. Otherwise, as
    /// mlx-lm's `make_sampler`, on the `1 x V` row:
    /// 1. `logprobs = logits - logsumexp(logits)`;
    /// 2. top-p (when `p < 1`): sort ascending, `mass_above[i]` = the summed
    ///    probability of the tokens sorted above `i` (`cumsum` with
    ///    `reverse = true`, `inclusive = false`); `total = mass_above[0] +
    ///    prob[0]`; count the tokens with `mass_above >= p * total` (the tokens
    ///    above them already reach `p`): that count, as an index into the
    ///    sorted values, is the threshold, and tokens below it become `-inf`;
    /// 3. top-k (when `k < V`): all but the `k` largest become `-inf`
    ///    (`argpartition_axis` of the negated row at `k - 1`, then
    ///    `put_along_axis` of `-inf` at the indices from `k` on);
    /// 4. `random::categorical(logprobs * (1 / temperature), -1, None, key)`
    ///    with the next key, on the `1 x V` row: MLX draws one row by inverse
    ///    CDF, while a bare `V` vector would take another path and give
    ///    other tokens.
    ///
    /// The filters see the temperature-1 distribution; tokens set to `-inf`
    /// are never drawn. `argmax_axis` and `categorical` return `uint32`:
    /// read the id with `try_item_exact::<u32>()`.
    ///
    /// Errors: [`Error::Shape`] when `logits` is not `V` or `1 x V` with
    /// `V >= 1` (build it with [`shape_error`]).
    ///
    /// Reference: mlx-lm `sample_utils.py`; Holtzman et al. 2019, *The
    /// Curious Case of Neural Text Degeneration* (top-p); Fan et al. 2018
    /// (top-k).
    pub fn sample(&mut self, logits: &Array) -> Result<u32> {
        let _ = logits;
        todo!("day 7: Sampler::sample")
    }
}

/// Day 7's sampler drives the per-step generation API (given).
impl tiny_llm_common::TokenSampler for Sampler {
    fn sample(&mut self, logits: &Array) -> Result<u32> {
        Sampler::sample(self, logits)
    }
}
