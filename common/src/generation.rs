//! Generation types handed between day 7, the cli, the bench and week 2's
//! engine (given code): the sampler's settings, why generation stopped and
//! what it measured.
//!
//! They live here, not in a day's module, so that a day taken from the
//! reference (`ref-day7`) and the code that drives it (cli, bench, grader)
//! pass the same types.

/// How to pick the next token. The default is greedy (temperature 0).
///
/// Re-exported as `crate::sampler::SamplerConfig`.
///
/// Argument rules (checked by `Sampler::new`):
/// - `temperature`: finite and `>= 0`; `0` means greedy (argmax), and then
///   `top_k`/`top_p` are ignored, as in mlx-lm.
/// - `top_k`: `None` keeps every token; `Some(k)` keeps the `k` most likely,
///   `k >= 1` (a `k` at or above the vocabulary size keeps all).
/// - `top_p`: `None` keeps every token; `Some(p)` keeps the smallest set of
///   most likely tokens whose probability reaches `p`, with `0 < p <= 1`
///   (`1` keeps all).
/// - `seed`: the seed of the random key sequence.
///
/// Reference: mlx-lm `make_sampler` (mlx_lm/sample_utils.py).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0` is greedy.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep only the most likely tokens covering probability `p`.
    pub top_p: Option<f32>,
    /// Seed of the random keys (`mlx_rs::random::key(seed)`).
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// Greedy: temperature 0, no top-k, no top-p, seed 0.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

/// Why generation stopped. Its text is the OpenAI `finish_reason`
/// ([`FinishReason::as_str`]).
///
/// Re-exported as `crate::generate::FinishReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Stop,
    /// `max_tokens` tokens were generated (or the context was full).
    Length,
}

impl FinishReason {
    /// `"stop"` or `"length"`, as the OpenAI API writes `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a generation did, and how fast.
///
/// Re-exported as `crate::generate::GenerationStats`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// The sampled token ids in order; the end-of-sequence id that stopped
    /// generation is included (its text is not emitted).
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Seconds from the start to the first sampled token (the prompt's
    /// forward pass, the first sample); 0 when no token was sampled.
    pub prefill_seconds: f64,
    /// Seconds from the first sampled token to the last one.
    pub decode_seconds: f64,
}

impl GenerationStats {
    /// Tokens sampled (the end-of-sequence token included).
    pub fn generated_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Prompt tokens per second of prefill; `0.0` when nothing was measured
    /// (no token sampled, e.g. `max_tokens = 0`, or a zero duration), never
    /// `inf` or NaN.
    pub fn prefill_tokens_per_second(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_seconds)
    }

    /// Tokens per second of decoding: the tokens after the first (the first
    /// one comes out of the prefill), over the decode time; `0.0` when fewer
    /// than two tokens were sampled or the duration is zero, never `inf` or
    /// NaN.
    pub fn decode_tokens_per_second(&self) -> f64 {
        rate(self.tokens.len().saturating_sub(1), self.decode_seconds)
    }
}

/// `count / seconds`, or 0 when either is not positive (or not finite).
fn rate(count: usize, seconds: f64) -> f64 {
    if count == 0 || !(seconds.is_finite() && seconds > 0.0) {
        0.0
    } else {
        count as f64 / seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(tokens: usize, prefill: f64, decode: f64) -> GenerationStats {
        GenerationStats {
            prompt_tokens: 10,
            tokens: vec![1; tokens],
            finish_reason: FinishReason::Length,
            prefill_seconds: prefill,
            decode_seconds: decode,
        }
    }

    #[test]
    fn rates_are_finite_when_nothing_was_decoded() {
        // --max-tokens 0: nothing sampled, nothing timed.
        let s = stats(0, 0.0, 0.0);
        assert_eq!(s.prefill_tokens_per_second(), 0.0);
        assert_eq!(s.decode_tokens_per_second(), 0.0);
        // one token: a prefill rate, no decode rate
        let s = stats(1, 0.5, 0.0);
        assert_eq!(s.prefill_tokens_per_second(), 20.0);
        assert_eq!(s.decode_tokens_per_second(), 0.0);
    }

    #[test]
    fn rates_count_tokens_after_the_first() {
        // 5 tokens: the first from the prefill, 4 decoded in 2 s.
        let s = stats(5, 0.25, 2.0);
        assert_eq!(s.prefill_tokens_per_second(), 40.0);
        assert_eq!(s.decode_tokens_per_second(), 2.0);
    }

    #[test]
    fn finish_reason_text_is_openai_s() {
        assert_eq!(FinishReason::Stop.as_str(), "stop");
        assert_eq!(FinishReason::Length.as_str(), "length");
    }
}
