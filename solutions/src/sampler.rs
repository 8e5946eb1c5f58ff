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

use mlx_rs::ops::indexing::{argmax_axis, TryIndexOp};
use mlx_rs::ops::{argpartition_axis, select, sort_axis};
use mlx_rs::random::{categorical, RandomState};
use mlx_rs::{Array, Dtype};
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
#[derive(Debug)]
pub struct Sampler {
    config: SamplerConfig,
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
        let t = config.temperature;
        if !t.is_finite() || t < 0.0 {
            return Err(Error::Invalid(format!(
                "temperature must be a finite number >= 0 (0 = greedy), got {t}"
            )));
        }
        if config.top_k == Some(0) {
            return Err(Error::Invalid(
                "top_k must be at least 1 (leave it unset to keep every token)".into(),
            ));
        }
        if let Some(p) = config.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::Invalid(format!(
                    "top_p must be in (0, 1] (leave it unset to keep every token), got {p}"
                )));
            }
        }
        Ok(Sampler {
            config,
            rng: RandomState::with_seed(config.seed)?,
        })
    }

    /// The configuration this sampler was built with.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
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
        let vocab = match logits.shape() {
            [v] | [1, v] if *v > 0 => *v,
            _ => return Err(shape_error("logits", logits, "[V] or [1, V] with V >= 1")),
        };
        // One 1 x V row, as mlx-lm samples: MLX's `categorical` draws a single
        // row by inverse CDF, a bare V vector with the Gumbel trick.
        let row = logits.reshape(&[1, vocab])?.as_dtype(Dtype::Float32)?;
        let cfg = self.config;
        if cfg.temperature == 0.0 {
            return token_id(&argmax_axis(&row, -1, false)?);
        }
        let mut logprobs = row.subtract(row.logsumexp_axis(-1, true)?)?;
        if let Some(p) = cfg.top_p.filter(|&p| p < 1.0) {
            logprobs = apply_top_p(&logprobs, p)?;
        }
        if let Some(k) = cfg.top_k.filter(|&k| k < vocab as usize) {
            logprobs = apply_top_k(&logprobs, k as i32)?;
        }
        let scaled = logprobs.multiply(Array::from_f32(1.0 / cfg.temperature))?;
        let key = self.rng.next_key()?;
        token_id(&categorical(&scaled, -1, None, &key)?)
    }
}

/// Keeps the most likely tokens whose probability reaches `p`
/// (`logprobs`: `1 x V`; mlx-lm's `apply_top_p`).
fn apply_top_p(logprobs: &Array, p: f32) -> Result<Array> {
    let sorted = sort_axis(logprobs, -1)?;
    let probs = sorted.exp()?;
    // Probability of the tokens sorted above each token (not counting itself).
    let mass_above = probs.cumsum(-1, true, false)?;
    let total = mass_above
        .try_index((.., ..1))?
        .add(probs.try_index((.., ..1))?)?;
    let dropped = mass_above
        .ge(total.multiply(Array::from_f32(p))?)?
        .sum_axis(-1, true)?
        .as_dtype(Dtype::Int32)?;
    let threshold = sorted.take_along_axis(&dropped, -1)?;
    let neg_inf = Array::from_f32(f32::NEG_INFINITY);
    Ok(select(&logprobs.lt(&threshold)?, &neg_inf, logprobs)?)
}

/// Sets all but the `k` largest of `logprobs` (`1 x V`, `k < V`) to `-inf`
/// (mlx-lm's `apply_top_k`).
fn apply_top_k(logprobs: &Array, k: i32) -> Result<Array> {
    let order = argpartition_axis(logprobs.negative()?, k - 1, -1)?;
    let rest = order.try_index((.., k..))?;
    let neg_inf = Array::from_f32(f32::NEG_INFINITY);
    Ok(logprobs.put_along_axis(&rest, &neg_inf, -1)?)
}

/// Reads the `uint32` scalar that `argmax`/`categorical` return.
fn token_id(id: &Array) -> Result<u32> {
    id.try_item_exact::<u32>()
        .map_err(|e| Error::Invalid(format!("reading the sampled token id: {e}")))
}

/// Day 7's sampler drives the per-step generation API (given).
impl tiny_llm_common::TokenSampler for Sampler {
    fn sample(&mut self, logits: &Array) -> Result<u32> {
        Sampler::sample(self, logits)
    }
}
