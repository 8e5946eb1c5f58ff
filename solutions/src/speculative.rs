//! Day 20: speculative decoding: a small draft model proposes `k` tokens,
//! the target model checks them all in one forward pass.
//!
//! Decoding is memory-bound: a one-token step reads every weight of the
//! target to produce one token. A forward pass over `k + 1` tokens reads the
//! weights once too, so when a cheap draft model guesses the next tokens
//! well, the target can confirm several of them for about the price of one
//! step. With greedy decoding the check is exact: a draft token is accepted
//! when it is the token the target itself would have picked there.
//!
//! ```text
//! context = prompt + generated, `last` = its newest token (not yet in the caches)
//! one round, k' = min(k, tokens still wanted - 1):
//!   draft:  d1 = argmax draft(.. last), d2 = argmax draft(.. d1), ..., d_k'
//!                                            k' draft passes, one new token each
//!   target: logits of [last, d1 .. d_k'] in ONE pass  ->  g0, g1 .. g_k' (argmax per position)
//!           g_i is the target's pick after `last, d1 .. d_i`
//!   j = the longest prefix with d_(i+1) == g_i for i < j  (accepted drafts)
//!   emit d1 .. d_j, then g_j: the target's correction (j < k') or a bonus token (j = k')
//!   rewind both caches to the context minus its new `last` (= g_j): the target
//!   computed k' + 1 positions and keeps 1 + j of them; the draft keeps what it
//!   fed of `last, d1 .. d_j`
//! ```
//!
//! Every emitted token is an argmax of the target over exactly the tokens
//! before it, so the output equals the target decoding greedily alone; the
//! draft only changes how many target passes it takes (`n` tokens with
//! every proposal accepted: `ceil(n / (k + 1))`). A cache is fed whatever
//! of the context it lacks: before the first round the target reads the
//! prompt but its last token in a pass of its own (the prefill, through
//! `forward_last`: no logits for every prompt position), the draft's first
//! pass reads the whole prompt, and after a round that accepted everything
//! the draft is one token behind (it never ran `d_k'`) and feeds two tokens
//! next time.
//!
//! Reference: Leviathan, Kalman and Matias 2023, "Fast Inference from
//! Transformers via Speculative Decoding"; Chen et al. 2023, "Accelerating
//! Large Language Model Decoding with Speculative Sampling" (with greedy
//! decoding their acceptance test is an exact match); mlx-lm
//! `generate.py` (`speculative_generate_step`).

use mlx_rs::ops::indexing::{argmax_axis, TryIndexOp};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::engine::BatchLm;
use tiny_llm_common::{check_token_ids, Error, KvCache, Result};

/// Counts of one speculative decoding run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecStats {
    /// Draft tokens proposed to the target (the `k'` of every round).
    pub proposed: usize,
    /// Draft tokens the target accepted (at most `proposed`).
    pub accepted: usize,
    /// Verification passes of the target, one per round (the prompt's
    /// prefill, a pass of its own before the first round, is not counted).
    pub target_passes: usize,
    /// Forward passes of the draft, one per proposed token (the first one
    /// also reads the prompt).
    pub draft_passes: usize,
}

impl SpecStats {
    /// `accepted / proposed`, `None` before anything was proposed.
    pub fn acceptance_rate(&self) -> Option<f64> {
        (self.proposed > 0).then(|| self.accepted as f64 / self.proposed as f64)
    }
}

/// The greedy pick of each row of `logits` (`R x vocab`), on the host.
fn argmax_rows(logits: &Array) -> Result<Vec<u32>> {
    let picks = argmax_axis(logits, -1, false)?.as_dtype(Dtype::Uint32)?;
    picks.eval()?;
    Ok(picks.as_slice::<u32>().to_vec())
}

/// `ids` as a `1 x L` int32 array.
fn row(ids: &[u32]) -> Array {
    let v: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    Array::from_slice(&v, &[1, v.len() as i32])
}

/// Tokens held by the caches (every layer holds as many).
fn cache_offset(caches: &[Box<dyn KvCache>]) -> usize {
    caches.first().map_or(0, |c| c.offset())
}

/// Forgets the last `n` tokens of every cache.
fn trim_all(caches: &mut [Box<dyn KvCache>], n: usize) {
    for c in caches.iter_mut() {
        c.trim(n);
    }
}

/// A speculative decoder: a target and a draft model (batch size 1), the
/// context (prompt + generated tokens) and one KV cache per layer of each.
///
/// Invariant between rounds: each model's caches hold the first tokens of
/// the context, never its newest one (none before the first round; after a
/// round the target's hold all but the newest, the draft's as many or one
/// fewer); a pass feeds a model whatever of the context it lacks.
pub struct SpecDecoder<'a> {
    target: &'a dyn BatchLm,
    draft: &'a dyn BatchLm,
    target_cache: Vec<Box<dyn KvCache>>,
    draft_cache: Vec<Box<dyn KvCache>>,
    tokens: Vec<u32>,
    prompt_len: usize,
    stats: SpecStats,
}

impl std::fmt::Debug for SpecDecoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecDecoder")
            .field("tokens", &self.tokens.len())
            .field("prompt_len", &self.prompt_len)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<'a> SpecDecoder<'a> {
    /// A decoder of `prompt` with empty caches (nothing runs yet).
    ///
    /// Errors: [`Error::Invalid`] when the prompt is empty, when the two
    /// models' vocabularies differ (naming both sizes), when a prompt id is
    /// outside the vocabulary (naming it), or when the prompt fills the
    /// context of either model (no room for a token).
    pub fn new(target: &'a dyn BatchLm, draft: &'a dyn BatchLm, prompt: &[u32]) -> Result<Self> {
        if prompt.is_empty() {
            return Err(Error::Invalid(
                "speculative decoding: the prompt is empty (give at least one token)".into(),
            ));
        }
        let (vt, vd) = (target.vocab_size(), draft.vocab_size());
        if vt != vd {
            return Err(Error::Invalid(format!(
                "speculative decoding: the target's vocabulary has {vt} tokens and the draft's \
                 {vd}: the draft must share the target's tokenizer"
            )));
        }
        check_token_ids("prompt", prompt, vt)?;
        let context = context_len(target, draft);
        if prompt.len() >= context {
            return Err(Error::Invalid(format!(
                "speculative decoding: a prompt of {} tokens leaves no room in a context of \
                 {context} tokens",
                prompt.len()
            )));
        }
        Ok(SpecDecoder {
            target,
            draft,
            target_cache: target.new_cache(),
            draft_cache: draft.new_cache(),
            tokens: prompt.to_vec(),
            prompt_len: prompt.len(),
            stats: SpecStats::default(),
        })
    }

    /// The context: the prompt, then every emitted token.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The emitted tokens (the context after the prompt).
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Tokens held by the target's caches (every layer holds as many).
    pub fn target_offset(&self) -> usize {
        cache_offset(&self.target_cache)
    }

    /// Tokens held by the draft's caches.
    pub fn draft_offset(&self) -> usize {
        cache_offset(&self.draft_cache)
    }

    /// The counts so far.
    pub fn stats(&self) -> SpecStats {
        self.stats
    }

    /// The target's caches, one per layer.
    pub fn target_cache(&self) -> &[Box<dyn KvCache>] {
        &self.target_cache
    }

    /// The draft's caches, one per layer.
    pub fn draft_cache(&self) -> &[Box<dyn KvCache>] {
        &self.draft_cache
    }

    /// One round: the draft proposes `k` tokens (`k = 0`: none, a plain
    /// target step), the target verifies them in one forward pass; returns
    /// the emitted tokens (`1..=k + 1`: the accepted drafts, then the
    /// target's own token), which are appended to [`Self::tokens`].
    ///
    /// Afterwards the target's caches hold `tokens().len() - 1` tokens
    /// (everything but the newest); the draft's as many after a rejection,
    /// one fewer when all `k` were accepted.
    ///
    /// Errors: [`Error::Invalid`] when the round would pass the context
    /// (`tokens().len() + k` tokens must fit in both models' contexts);
    /// a model's errors. A failed round leaves the decoder as it was.
    pub fn step(&mut self, k: usize) -> Result<Vec<u32>> {
        let context = context_len(self.target, self.draft);
        if self.tokens.len() + k > context {
            return Err(Error::Invalid(format!(
                "speculative decoding: {} context tokens and {k} drafts pass the context of \
                 {context} tokens",
                self.tokens.len()
            )));
        }
        let (t0, d0) = (self.target_offset(), self.draft_offset());
        let r = self.round(k);
        if r.is_err() {
            // Undo whatever the failed round appended.
            let (t, d) = (self.target_offset(), self.draft_offset());
            trim_all(&mut self.target_cache, t.saturating_sub(t0));
            trim_all(&mut self.draft_cache, d.saturating_sub(d0));
        }
        r
    }

    fn round(&mut self, k: usize) -> Result<Vec<u32>> {
        // The draft proposes k tokens, one pass each; its first pass feeds
        // every context token it lacks.
        let mut drafts = Vec::with_capacity(k);
        for _ in 0..k {
            let off = self.draft_offset();
            let feed: Vec<u32> = match drafts.last() {
                None => self.tokens[off..].to_vec(),
                Some(&d) => vec![d],
            };
            let logits = self
                .draft
                .forward_last(&row(&feed), off, &mut self.draft_cache)?;
            drafts.push(argmax_rows(&logits)?[0]);
        }
        // The target: first what it lacks of the context but the newest
        // token (the prompt, in the first round), with no logits kept; then
        // the newest token and the drafts in one pass: its picks at those
        // k + 1 positions.
        let last = self.tokens.len() - 1;
        let t_off = self.target_offset();
        if t_off < last {
            let h = self.target.forward_last(
                &row(&self.tokens[t_off..last]),
                t_off,
                &mut self.target_cache,
            )?;
            h.eval()?;
        }
        let mut feed = vec![self.tokens[last]];
        feed.extend_from_slice(&drafts);
        let logits = self
            .target
            .forward_batch(&row(&feed), last, &[0], &mut self.target_cache)?;
        let picks = argmax_rows(&logits.try_index((0, .., ..))?)?; // (k + 1) x vocab
        let j = drafts
            .iter()
            .zip(&picks)
            .take_while(|(d, g)| d == g)
            .count();
        let mut out = drafts[..j].to_vec();
        out.push(picks[j]);
        // Context after the round; both caches keep at most its tokens but
        // the newest.
        let keep = self.tokens.len() + j;
        let t = self.target_offset();
        trim_all(&mut self.target_cache, t - keep);
        let d = self.draft_offset();
        trim_all(&mut self.draft_cache, d.saturating_sub(keep));
        self.tokens.extend_from_slice(&out);
        self.stats.proposed += k;
        self.stats.accepted += j;
        self.stats.target_passes += 1;
        self.stats.draft_passes += k;
        Ok(out)
    }
}

/// The smaller of the two models' contexts.
fn context_len(target: &dyn BatchLm, draft: &dyn BatchLm) -> usize {
    target.context_len().min(draft.context_len())
}

/// Greedy speculative decoding: up to `max_tokens` tokens after `prompt`,
/// identical to the target decoding greedily alone; `draft` proposes `k`
/// tokens a round ([`SpecDecoder::step`]), fewer in the last round so that
/// no more than `max_tokens` are computed.
///
/// - `eos`: stop after the first emitted token in this list (it is
///   included in the output).
/// - returns: the generated tokens and the counts.
///
/// Errors: [`Error::Invalid`] when `k` is 0, when the prompt is empty, when
/// the vocabularies differ, when a prompt id is outside the vocabulary
/// (naming it), or when `prompt.len() + max_tokens` passes either model's
/// context; a model's errors.
pub fn speculative_generate(
    target: &dyn BatchLm,
    draft: &dyn BatchLm,
    prompt: &[u32],
    k: usize,
    max_tokens: usize,
    eos: &[u32],
) -> Result<(Vec<u32>, SpecStats)> {
    if k == 0 {
        return Err(Error::Invalid(
            "speculative decoding: k (draft tokens per round) must be at least 1".into(),
        ));
    }
    let mut dec = SpecDecoder::new(target, draft, prompt)?;
    let context = context_len(target, draft);
    if prompt.len() + max_tokens > context {
        return Err(Error::Invalid(format!(
            "speculative decoding: a prompt of {} tokens and max_tokens {max_tokens} pass the \
             context of {context} tokens",
            prompt.len()
        )));
    }
    while dec.generated().len() < max_tokens {
        let left = max_tokens - dec.generated().len();
        let out = dec.step(k.min(left - 1))?;
        if let Some(i) = out.iter().position(|t| eos.contains(t)) {
            let n = dec.generated().len() - out.len() + i + 1;
            let mut tokens = dec.generated().to_vec();
            tokens.truncate(n);
            return Ok((tokens, dec.stats()));
        }
    }
    Ok((dec.generated().to_vec(), dec.stats()))
}
