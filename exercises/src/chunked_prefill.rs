//! Day 13: prefill in chunks under a token budget.
//!
//! A long prompt read in one forward pass needs activations (and an
//! attention score matrix) as large as the prompt, and holds up every other
//! request meanwhile. Read in chunks of at most `budget` tokens, one forward
//! pass a chunk, the KV caches growing chunk by chunk, it costs a bounded
//! amount per step and gives the same logits: chunk `c` attends over the
//! cached earlier chunks with day 3's `causal_mask(L, S)`.
//!
//! [`PrefillPlanner`] decides, for several sequences waiting to be
//! prefilled, which tokens of which sequence go into each step, under one
//! token budget per step (a plain data structure, no MLX).
//!
//! Reference: mlx-lm `generate.py` (`generate_step`'s `prefill_step_size`:
//! the prompt in pieces, the caches evaluated after each); Agrawal et al.
//! 2023, "SARATHI: Efficient LLM Inference by Piggybacking Decodes with
//! Chunked Prefills"; vLLM's chunked prefill (`max_num_batched_tokens`).
//!
//! Hints: Check your work with `cargo xtask check day13`. The model does the
//! hard part already (day 8's `forward` at an offset, with `causal_mask(L,
//! S)`): this day is about the bookkeeping around it.

use mlx_rs::Array;
#[allow(unused_imports)]
use std::collections::VecDeque;
// `Error` is named by the doc comments.
#[allow(unused_imports)]
use tiny_llm_common::{check_token_ids, CachedLm, Error, KvCache, Result};

/// Reads `prompt` into `cache` in chunks of at most `budget` tokens (one
/// forward pass each, in order) and returns the logits of its last token.
///
/// The prompt continues what `cache` holds: its first token is at position
/// `cache[0].offset()` (0 for fresh caches from `model.new_cache()`). Every
/// budget gives the logits of one forward pass over the whole prompt (within
/// f32 rounding), and leaves the caches holding the same keys and values.
///
/// - `model`: a cached model (day 8's `Qwen2ModelWeek2`).
/// - `prompt`: `P >= 1` token ids, each in `0..vocab` when the model says.
/// - `budget`: the most tokens one forward pass reads, `>= 1`.
/// - `cache`: the model's caches; each grows by `P`.
/// - returns: `1 x vocab` logits of the token after the prompt.
///
/// Errors: [`Error::Invalid`] when `budget` is 0, `prompt` is empty, an id
/// is outside the vocabulary, or the cached and new tokens pass the model's
/// context (naming the numbers); the model's own errors (e.g. a wrong number
/// of caches). A rejected call leaves the caches as they were; a chunk the
/// model rejects leaves the earlier chunks cached.
///
/// Reference: mlx-lm `generate_step` (`prefill_step_size`).
///
/// Hints: check everything first (`check_token_ids`, `model.context_len()`,
/// the offset is `cache[0].offset()`), then `prompt.chunks(budget)`, each
/// as a `1 x n` int32 array through `model.forward_last_cached`; `eval()`
/// each chunk's logits so the lazy graph never grows past one chunk.
pub fn chunked_prefill(
    model: &dyn CachedLm,
    prompt: &[u32],
    budget: usize,
    cache: &mut [Box<dyn KvCache>],
) -> Result<Array> {
    let _ = (model, prompt, budget, cache);
    todo!("day 13: chunked_prefill")
}

/// One piece of a prefill step: tokens `start..start + len` of sequence
/// `seq`'s pending prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// The caller's id of the sequence.
    pub seq: usize,
    /// Index of the chunk's first token in that sequence's prompt.
    pub start: usize,
    /// Tokens in the chunk, `>= 1`.
    pub len: usize,
}

/// A sequence still waiting for (part of) its prefill.
#[allow(dead_code)] // used once you write the planner
#[derive(Debug, Clone)]
struct Pending {
    seq: usize,
    next: usize,
    end: usize,
}

/// Splits the pending prompt tokens of several sequences into steps of at
/// most `budget` tokens, first come, first served.
///
/// Policy (FCFS): sequences are served in the order they were added; each
/// step takes tokens from the oldest unfinished sequence first, as many as
/// it has left or the budget allows, then from the next, until the budget
/// is used up or nothing is pending. So:
///
/// - a step never holds more than `budget` tokens, and every step but the
///   last of a drained queue holds exactly `budget`;
/// - every token of every sequence is planned exactly once, in order
///   (a sequence's chunks are consecutive ranges from 0 to its length);
/// - a sequence gets tokens only in a step that finishes every sequence
///   added before it (at most one sequence, a step's last, is left
///   partly planned), so no later arrival delays an earlier one.
///
/// Reference: the FCFS schedulers of vLLM and mistral.rs; chunked prefill
/// as in SARATHI (Agrawal et al. 2023).
///
/// Hints: a `VecDeque` of pending sequences (id, next token, length);
/// `next_step` takes from the front while budget is left, popping a
/// sequence once all its tokens are planned.
#[allow(dead_code)] // used once you write the methods
#[derive(Debug, Clone)]
pub struct PrefillPlanner {
    budget: usize,
    queue: VecDeque<Pending>,
}

impl PrefillPlanner {
    /// An empty planner for steps of at most `budget` tokens.
    ///
    /// Errors: [`Error::Invalid`] when `budget` is 0.
    pub fn new(budget: usize) -> Result<PrefillPlanner> {
        let _ = budget;
        todo!("day 13: PrefillPlanner::new")
    }

    /// The most tokens a step holds.
    pub fn budget(&self) -> usize {
        todo!("day 13: PrefillPlanner::budget")
    }

    /// Queues sequence `seq` with `tokens` prompt tokens to prefill, after
    /// every sequence already queued.
    ///
    /// Errors: [`Error::Invalid`] when `tokens` is 0 or `seq` is still
    /// pending (naming it).
    pub fn add(&mut self, seq: usize, tokens: usize) -> Result<()> {
        let _ = (seq, tokens);
        todo!("day 13: PrefillPlanner::add")
    }

    /// Tokens queued and not yet planned.
    pub fn pending(&self) -> usize {
        todo!("day 13: PrefillPlanner::pending")
    }

    /// The next step's chunks, oldest sequence first (empty when nothing is
    /// pending); a sequence whose tokens are all planned leaves the queue.
    pub fn next_step(&mut self) -> Vec<Chunk> {
        todo!("day 13: PrefillPlanner::next_step")
    }
}

/// The whole plan for sequences `0..lengths.len()` (added in that order,
/// `lengths[i]` tokens each): the steps of a [`PrefillPlanner`] until
/// nothing is pending.
///
/// Errors: as [`PrefillPlanner::new`] and [`PrefillPlanner::add`] (a
/// length of 0).
pub fn plan_prefill(budget: usize, lengths: &[usize]) -> Result<Vec<Vec<Chunk>>> {
    let _ = (budget, lengths);
    todo!("day 13: plan_prefill")
}

/// One prompt after its prefill: its caches and its last logits.
pub struct Prefilled {
    /// The prompt's caches, one per layer, holding its tokens.
    pub cache: Vec<Box<dyn KvCache>>,
    /// `1 x vocab` logits of the token after the prompt.
    pub logits: Array,
}

/// Prefills several prompts under one token budget per step, following
/// [`plan_prefill`]: each chunk is one forward pass over that sequence's
/// own caches. Returns, per prompt, its caches and the `1 x vocab` logits
/// of its last token (equal to its one-shot prefill's).
///
/// Errors: as [`chunked_prefill`] for each prompt (naming which prompt),
/// and the model's own errors.
pub fn prefill_planned(
    model: &dyn CachedLm,
    prompts: &[&[u32]],
    budget: usize,
) -> Result<Vec<Prefilled>> {
    let _ = (model, prompts, budget);
    todo!("day 13: prefill_planned")
}
