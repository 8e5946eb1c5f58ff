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
//!
//! Hints: Check your work with `cargo xtask check day20`. The models come
//! as `BatchLm` (the week-2 model's given impl): day 13's `forward_batch`
//! with one row and no padding (`&[0]`) gives the logits of every new
//! position (the target's check) and `forward_last` the last one (the
//! draft's guess);
//! `KvCache::trim` rewinds a cache. Write `step` first; the generation
//! loop is a few lines around it.

#[allow(unused_imports)]
use mlx_rs::ops::indexing::{argmax_axis, TryIndexOp};
#[allow(unused_imports)]
use mlx_rs::{Array, Dtype};
#[allow(unused_imports)]
use tiny_llm_common::engine::BatchLm;
#[allow(unused_imports)]
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
        let _ = self;
        todo!("day 20: SpecStats::acceptance_rate")
    }
}

/// Tokens held by the caches (every layer holds as many).
fn cache_offset(caches: &[Box<dyn KvCache>]) -> usize {
    caches.first().map_or(0, |c| c.offset())
}

/// A speculative decoder: a target and a draft model (batch size 1), the
/// context (prompt + generated tokens) and one KV cache per layer of each.
///
/// Invariant between rounds: each model's caches hold the first tokens of
/// the context, never its newest one (none before the first round; after a
/// round the target's hold all but the newest, the draft's as many or one
/// fewer); a pass feeds a model whatever of the context it lacks.
pub struct SpecDecoder<'a> {
    #[allow(dead_code)] // until your new() and step() use them
    target: &'a dyn BatchLm,
    #[allow(dead_code)]
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
    ///
    /// Hints: compare `vocab_size()`; `check_token_ids` names a bad
    /// id; the context is the smaller `context_len()`; the
    /// caches come from `new_cache()`.
    pub fn new(target: &'a dyn BatchLm, draft: &'a dyn BatchLm, prompt: &[u32]) -> Result<Self> {
        let _ = (target, draft, prompt);
        todo!("day 20: SpecDecoder::new")
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
    ///
    /// Hints: draft: k passes of `forward_last`, the first feeding
    /// `tokens[draft_offset()..]`, the others the previous guess; argmax
    /// each (`argmax_axis`, as uint32). Target: `forward_last` of
    /// `tokens[target_offset()..len - 1]` when that is not empty (the
    /// prompt's prefill), then one `forward` of the newest token followed by
    /// the drafts; argmax of its k + 1 rows. j = the drafts equal to the target's pick before them;
    /// emit drafts[..j] and picks[j]; keep = tokens.len() + j (before the
    /// push); trim each model's caches down to keep (the draft may already
    /// hold fewer). On an error, trim back to the offsets you started from.
    pub fn step(&mut self, k: usize) -> Result<Vec<u32>> {
        let _ = k;
        todo!("day 20: SpecDecoder::step")
    }
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
///
/// Hints: check k, build the decoder, check the context; then while fewer
/// than `max_tokens` were generated, `step(k.min(left - 1))` and stop at
/// the first eos among the emitted tokens.
pub fn speculative_generate(
    target: &dyn BatchLm,
    draft: &dyn BatchLm,
    prompt: &[u32],
    k: usize,
    max_tokens: usize,
    eos: &[u32],
) -> Result<(Vec<u32>, SpecStats)> {
    let _ = (target, draft, prompt, k, max_tokens, eos);
    todo!("day 20: speculative_generate")
}
