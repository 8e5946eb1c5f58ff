//! Per-step generation an engine can drive (given code): prefill a prompt,
//! then one token per [`Generation::step`], with the stop conditions and the
//! statistics of day 7's `simple_generate` (which stays the course's own
//! week-1 loop).
//!
//! The model side is a [`StepModel`]: [`Recompute`] runs the whole sequence
//! at every step (week 1, any [`CausalLm`]); [`Cached`] feeds only the new
//! token to a [`CachedLm`] (week 2). The sampler side is any
//! [`TokenSampler`] (day 7's `Sampler` is one). Text is not decoded here:
//! the caller streams the token ids through day 7's `StreamingDetokenizer`.
//!
//! Reference: mlx-lm `generate_step` (a per-step iterator over a model with
//! a prompt cache).

use crate::generation::{FinishReason, GenerationStats};
use crate::kv_cache::KvCache;
use crate::lm::{CachedLm, CausalLm};
use crate::{Error, Result};
use mlx_rs::Array;
use std::time::Instant;

/// Picks the next token from `1 x V` (or `V`) logits.
pub trait TokenSampler {
    /// The sampled token id.
    fn sample(&mut self, logits: &Array) -> Result<u32>;
}

/// A model that remembers the sequence fed so far.
pub trait StepModel {
    /// Appends `ids` to the sequence and returns the next-token logits,
    /// `1 x vocab`.
    fn feed(&mut self, ids: &[u32]) -> Result<Array>;
    /// As [`CausalLm::context_len`].
    fn context_len(&self) -> Option<usize>;
    /// As [`CausalLm::vocab_size`].
    fn vocab_size(&self) -> Option<usize>;
}

/// Week 1: no cache; every step runs the whole sequence again.
pub struct Recompute<'m, M: CausalLm> {
    model: &'m M,
    ids: Vec<i32>,
}

impl<'m, M: CausalLm> Recompute<'m, M> {
    /// An empty sequence for `model`.
    pub fn new(model: &'m M) -> Self {
        Recompute {
            model,
            ids: Vec::new(),
        }
    }
}

impl<M: CausalLm> StepModel for Recompute<'_, M> {
    fn feed(&mut self, ids: &[u32]) -> Result<Array> {
        self.ids.extend(ids.iter().map(|&t| t as i32));
        let input = Array::from_slice(&self.ids, &[1, self.ids.len() as i32]);
        self.model.forward_last(&input)
    }
    fn context_len(&self) -> Option<usize> {
        self.model.context_len()
    }
    fn vocab_size(&self) -> Option<usize> {
        self.model.vocab_size()
    }
}

/// Week 2: a [`CachedLm`] with its caches; each step feeds one token.
pub struct Cached<'m, M: CachedLm> {
    model: &'m M,
    cache: Vec<Box<dyn KvCache>>,
}

impl<'m, M: CachedLm> Cached<'m, M> {
    /// Fresh caches for `model`.
    pub fn new(model: &'m M) -> Self {
        Cached {
            cache: model.new_cache(),
            model,
        }
    }
}

impl<M: CachedLm> StepModel for Cached<'_, M> {
    fn feed(&mut self, ids: &[u32]) -> Result<Array> {
        let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
        let input = Array::from_slice(&ids, &[1, ids.len() as i32]);
        self.model.forward_last_cached(&input, &mut self.cache)
    }
    fn context_len(&self) -> Option<usize> {
        self.model.context_len()
    }
    fn vocab_size(&self) -> Option<usize> {
        self.model.vocab_size()
    }
}

/// One generated token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvent {
    /// The sampled id (an end-of-sequence id included).
    pub token: u32,
    /// `Some` when this token ends the generation: [`FinishReason::Stop`]
    /// for an end-of-sequence id (do not detokenize it),
    /// [`FinishReason::Length`] at `max_tokens` or a full context.
    pub finish: Option<FinishReason>,
}

/// A generation driven one token at a time: [`Generation::prefill`] once,
/// then [`Generation::step`] until it returns `None`.
pub struct Generation<M: StepModel, S: TokenSampler> {
    model: M,
    sampler: S,
    max_tokens: usize,
    eos: Vec<u32>,
    fed: usize,
    stats: GenerationStats,
    started: Option<Instant>,
    first_token_at: Option<Instant>,
    finished: bool,
}

impl<M: StepModel, S: TokenSampler> Generation<M, S> {
    /// A generation of at most `max_tokens` tokens (any size), stopping
    /// after any id in `eos_ids`.
    pub fn new(model: M, sampler: S, max_tokens: usize, eos_ids: &[u32]) -> Self {
        Generation {
            model,
            sampler,
            max_tokens,
            eos: eos_ids.to_vec(),
            fed: 0,
            stats: GenerationStats {
                prompt_tokens: 0,
                tokens: Vec::new(),
                finish_reason: FinishReason::Length,
                prefill_seconds: 0.0,
                decode_seconds: 0.0,
            },
            started: None,
            first_token_at: None,
            finished: false,
        }
    }

    /// Feeds the prompt and samples the first token; `None` when
    /// `max_tokens` is 0 (nothing is run).
    ///
    /// Errors: [`Error::Invalid`] when called twice, for an empty prompt, a
    /// prompt longer than the model's context, or an id outside the model's
    /// vocabulary (checked here, on the host, so the model's forward pass
    /// need not read ids back from the device); the model's or sampler's
    /// errors.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<Option<TokenEvent>> {
        if self.started.is_some() {
            return Err(Error::Invalid(
                "Generation::prefill was already called".into(),
            ));
        }
        if prompt.is_empty() {
            return Err(Error::Invalid("the prompt has no tokens".into()));
        }
        if let Some(ctx) = self.model.context_len() {
            if prompt.len() > ctx {
                return Err(Error::Invalid(format!(
                    "the prompt has {} tokens, more than the model's context of {ctx}",
                    prompt.len()
                )));
            }
        }
        if let Some(vocab) = self.model.vocab_size() {
            crate::lm::check_token_ids("prompt", prompt, vocab)?;
        }
        self.started = Some(Instant::now());
        self.stats.prompt_tokens = prompt.len();
        if self.max_tokens == 0 {
            self.finished = true;
            return Ok(None);
        }
        self.advance(prompt).map(Some)
    }

    /// Feeds the last token and samples the next; `None` once finished
    /// (also before [`Generation::prefill`]).
    ///
    /// Errors: the model's or sampler's.
    pub fn step(&mut self) -> Result<Option<TokenEvent>> {
        if self.finished {
            return Ok(None);
        }
        // No token yet: prefill was not called, or it failed.
        let Some(&last) = self.stats.tokens.last() else {
            return Ok(None);
        };
        self.advance(&[last]).map(Some)
    }

    fn advance(&mut self, ids: &[u32]) -> Result<TokenEvent> {
        let logits = self.model.feed(ids)?;
        self.fed += ids.len();
        let token = self.sampler.sample(&logits)?;
        let now = Instant::now();
        match (self.started, self.first_token_at) {
            (Some(start), None) => {
                self.first_token_at = Some(now);
                self.stats.prefill_seconds = (now - start).as_secs_f64();
            }
            (_, Some(first)) => self.stats.decode_seconds = (now - first).as_secs_f64(),
            _ => {}
        }
        self.stats.tokens.push(token);
        let context_full = self.model.context_len().is_some_and(|ctx| self.fed >= ctx);
        let finish = if self.eos.contains(&token) {
            Some(FinishReason::Stop)
        } else if self.stats.tokens.len() >= self.max_tokens || context_full {
            Some(FinishReason::Length)
        } else {
            None
        };
        if let Some(reason) = finish {
            self.finished = true;
            self.stats.finish_reason = reason;
        }
        Ok(TokenEvent { token, finish })
    }

    /// Whether the generation has ended.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// What was generated so far, and how fast.
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::ConcatKvCache;

    /// Logits that pick `script[n]` after `n` fed tokens beyond the prompt.
    struct Script {
        script: Vec<u32>,
        vocab: usize,
        prompt: usize,
        ctx: Option<usize>,
    }

    fn one_hot(id: u32, vocab: usize) -> Array {
        let mut v = vec![0.0f32; vocab];
        v[id as usize] = 10.0;
        Array::from_slice(&v, &[1, vocab as i32])
    }

    impl CausalLm for Script {
        fn forward_last(&self, inputs: &Array) -> Result<Array> {
            let n = inputs.dim(1) as usize - self.prompt;
            Ok(one_hot(self.script[n], self.vocab))
        }
        fn context_len(&self) -> Option<usize> {
            self.ctx
        }
        fn vocab_size(&self) -> Option<usize> {
            Some(self.vocab)
        }
    }

    /// A cached model over the same script: counts what is in its caches.
    impl CachedLm for Script {
        fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
            vec![Box::new(ConcatKvCache::new())]
        }
        fn forward_last_cached(
            &self,
            inputs: &Array,
            cache: &mut [Box<dyn KvCache>],
        ) -> Result<Array> {
            let l = inputs.dim(1);
            let kv = Array::from_slice(&vec![0.0f32; l as usize], &[1, 1, l, 1]);
            let (k, _) = cache[0].update_and_fetch(&kv, &kv)?;
            let n = k.dim(2) as usize - self.prompt;
            Ok(one_hot(self.script[n], self.vocab))
        }
        fn context_len(&self) -> Option<usize> {
            self.ctx
        }
        fn vocab_size(&self) -> Option<usize> {
            Some(self.vocab)
        }
    }

    struct Greedy;
    impl TokenSampler for Greedy {
        fn sample(&mut self, logits: &Array) -> Result<u32> {
            let v = logits.as_slice::<f32>();
            let (i, _) = v
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b });
            Ok(i as u32)
        }
    }

    fn run<M: StepModel>(g: &mut Generation<M, Greedy>, prompt: &[u32]) -> Vec<TokenEvent> {
        let mut out: Vec<TokenEvent> = g.prefill(prompt).unwrap().into_iter().collect();
        while let Some(e) = g.step().unwrap() {
            out.push(e);
        }
        out
    }

    fn script(ctx: Option<usize>) -> Script {
        Script {
            script: vec![5, 6, 7, 2, 9],
            vocab: 16,
            prompt: 3,
            ctx,
        }
    }

    #[test]
    fn stops_at_eos_and_at_max_tokens() {
        let m = script(None);
        let mut g = Generation::new(Recompute::new(&m), Greedy, 100, &[2]);
        let ev = run(&mut g, &[1, 1, 1]);
        assert_eq!(ev.iter().map(|e| e.token).collect::<Vec<_>>(), [5, 6, 7, 2]);
        assert_eq!(ev[3].finish, Some(FinishReason::Stop));
        assert!(ev[..3].iter().all(|e| e.finish.is_none()));
        assert_eq!(g.stats().finish_reason, FinishReason::Stop);
        assert_eq!(g.stats().prompt_tokens, 3);

        let mut g = Generation::new(Cached::new(&m), Greedy, 2, &[2]);
        let ev = run(&mut g, &[1, 1, 1]);
        assert_eq!(ev.iter().map(|e| e.token).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(ev[1].finish, Some(FinishReason::Length));
        assert!(g.step().unwrap().is_none());
    }

    #[test]
    fn zero_max_tokens_runs_nothing_and_reports_finite_rates() {
        let m = script(None);
        let mut g = Generation::new(Recompute::new(&m), Greedy, 0, &[]);
        assert!(g.prefill(&[1, 1, 1]).unwrap().is_none());
        assert!(g.is_finished());
        assert_eq!(g.stats().tokens.len(), 0);
        assert_eq!(g.stats().prefill_tokens_per_second(), 0.0);
        assert_eq!(g.stats().decode_tokens_per_second(), 0.0);
        // any size of max_tokens is fine
        let mut g = Generation::new(Recompute::new(&m), Greedy, usize::MAX, &[2]);
        assert_eq!(run(&mut g, &[1, 1, 1]).len(), 4);
    }

    #[test]
    fn the_context_bounds_prompt_and_answer() {
        // context 5, prompt 3: feeds 3, then 4, then 5 tokens; 3 sampled.
        let m = script(Some(5));
        let mut g = Generation::new(Cached::new(&m), Greedy, 100, &[]);
        let ev = run(&mut g, &[1, 1, 1]);
        assert_eq!(ev.iter().map(|e| e.token).collect::<Vec<_>>(), [5, 6, 7]);
        assert_eq!(ev[2].finish, Some(FinishReason::Length));
        let m = script(Some(2));
        let mut g = Generation::new(Recompute::new(&m), Greedy, 100, &[]);
        let e = g.prefill(&[1, 1, 1]).unwrap_err().to_string();
        assert!(e.contains("3 tokens") && e.contains("context of 2"), "{e}");
    }

    #[test]
    fn prompt_ids_are_checked_on_the_host() {
        let m = script(None);
        let mut g = Generation::new(Recompute::new(&m), Greedy, 4, &[]);
        let e = g.prefill(&[1, 16, 1]).unwrap_err().to_string();
        assert!(e.contains("token 1 is id 16") && e.contains("0..16"), "{e}");
        let mut g = Generation::new(Recompute::new(&m), Greedy, 4, &[]);
        assert!(g.prefill(&[]).is_err());
    }
}
