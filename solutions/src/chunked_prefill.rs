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

use mlx_rs::Array;
use std::collections::VecDeque;
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
pub fn chunked_prefill(
    model: &dyn CachedLm,
    prompt: &[u32],
    budget: usize,
    cache: &mut [Box<dyn KvCache>],
) -> Result<Array> {
    if budget == 0 {
        return Err(Error::Invalid(
            "chunked_prefill: budget is 0, expected at least 1 token per forward pass".into(),
        ));
    }
    if prompt.is_empty() {
        return Err(Error::Invalid(
            "chunked_prefill: the prompt is empty, expected at least one token".into(),
        ));
    }
    if let Some(v) = model.vocab_size() {
        check_token_ids("prompt", prompt, v)?;
    }
    let offset = cache.first().map_or(0, |c| c.offset());
    if let Some(context) = model.context_len() {
        if offset + prompt.len() > context {
            return Err(Error::Invalid(format!(
                "chunked_prefill: {offset} cached and {} new tokens pass the model's context of \
                 {context} tokens",
                prompt.len()
            )));
        }
    }
    let mut last = None;
    for chunk in prompt.chunks(budget) {
        let ids: Vec<i32> = chunk.iter().map(|&t| t as i32).collect();
        let input = Array::from_slice(&ids, &[1, ids.len() as i32]);
        let logits = model.forward_last_cached(&input, cache)?;
        // Evaluating each chunk's logits computes its keys and values too:
        // the lazy graph stays one chunk deep.
        logits.eval()?;
        last = Some(logits);
    }
    last.ok_or_else(|| Error::Invalid("chunked_prefill: no chunk was read".into()))
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
        if budget == 0 {
            return Err(Error::Invalid(
                "PrefillPlanner: budget is 0, expected at least 1 token per step".into(),
            ));
        }
        Ok(PrefillPlanner {
            budget,
            queue: VecDeque::new(),
        })
    }

    /// The most tokens a step holds.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Queues sequence `seq` with `tokens` prompt tokens to prefill, after
    /// every sequence already queued.
    ///
    /// Errors: [`Error::Invalid`] when `tokens` is 0 or `seq` is still
    /// pending (naming it).
    pub fn add(&mut self, seq: usize, tokens: usize) -> Result<()> {
        if tokens == 0 {
            return Err(Error::Invalid(format!(
                "PrefillPlanner::add: sequence {seq} has 0 tokens, expected at least 1"
            )));
        }
        if self.queue.iter().any(|p| p.seq == seq) {
            return Err(Error::Invalid(format!(
                "PrefillPlanner::add: sequence {seq} is already pending"
            )));
        }
        self.queue.push_back(Pending {
            seq,
            next: 0,
            end: tokens,
        });
        Ok(())
    }

    /// Tokens queued and not yet planned.
    pub fn pending(&self) -> usize {
        self.queue.iter().map(|p| p.end - p.next).sum()
    }

    /// The next step's chunks, oldest sequence first (empty when nothing is
    /// pending); a sequence whose tokens are all planned leaves the queue.
    pub fn next_step(&mut self) -> Vec<Chunk> {
        let mut left = self.budget;
        let mut step = Vec::new();
        while left > 0 {
            let Some(p) = self.queue.front_mut() else {
                break;
            };
            let len = (p.end - p.next).min(left);
            step.push(Chunk {
                seq: p.seq,
                start: p.next,
                len,
            });
            p.next += len;
            left -= len;
            if p.next == p.end {
                self.queue.pop_front();
            }
        }
        step
    }
}

/// The whole plan for sequences `0..lengths.len()` (added in that order,
/// `lengths[i]` tokens each): the steps of a [`PrefillPlanner`] until
/// nothing is pending.
///
/// Errors: as [`PrefillPlanner::new`] and [`PrefillPlanner::add`] (a
/// length of 0).
pub fn plan_prefill(budget: usize, lengths: &[usize]) -> Result<Vec<Vec<Chunk>>> {
    let mut planner = PrefillPlanner::new(budget)?;
    for (seq, &n) in lengths.iter().enumerate() {
        planner.add(seq, n)?;
    }
    let mut steps = Vec::new();
    while planner.pending() > 0 {
        steps.push(planner.next_step());
    }
    Ok(steps)
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
    let lengths: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
    if let Some(i) = lengths.iter().position(|&n| n == 0) {
        return Err(Error::Invalid(format!(
            "prefill_planned: prompt {i} is empty, expected at least one token"
        )));
    }
    let context = model.context_len();
    for (i, p) in prompts.iter().enumerate() {
        if let Some(v) = model.vocab_size() {
            check_token_ids(&format!("prompt {i}"), p, v)?;
        }
        if context.is_some_and(|c| p.len() > c) {
            return Err(Error::Invalid(format!(
                "prefill_planned: prompt {i} has {} tokens, past the model's context of {} tokens",
                p.len(),
                context.unwrap_or(0)
            )));
        }
    }
    let steps = plan_prefill(budget, &lengths)?;
    let mut caches: Vec<Vec<Box<dyn KvCache>>> =
        prompts.iter().map(|_| model.new_cache()).collect();
    let mut logits: Vec<Option<Array>> = vec![None; prompts.len()];
    for step in steps {
        for c in step {
            let ids: Vec<i32> = prompts[c.seq][c.start..c.start + c.len]
                .iter()
                .map(|&t| t as i32)
                .collect();
            let input = Array::from_slice(&ids, &[1, c.len as i32]);
            let out = model.forward_last_cached(&input, &mut caches[c.seq])?;
            out.eval()?;
            logits[c.seq] = Some(out);
        }
    }
    caches
        .into_iter()
        .zip(logits)
        .enumerate()
        .map(|(i, (cache, l))| {
            l.map(|logits| Prefilled { cache, logits }).ok_or_else(|| {
                Error::Invalid(format!("prefill_planned: prompt {i} was never read"))
            })
        })
        .collect()
}
