//! Day 15: continuous batching, first come, first served.
//!
//! A serving engine runs one forward pass per step over every sequence that
//! has work: sequences join between steps as soon as a slot and KV memory
//! allow, and leave the moment they finish (continuous batching, Yu et al.
//! 2022, "Orca"). Each step mixes one decode token per running sequence with
//! chunks of waiting prompts, under a budget of `B` tokens per step
//! (SARATHI, Agrawal et al. 2023; day 13's `PrefillPlanner`).
//!
//! The KV cache is counted in blocks of `block_size` tokens (day 16 stores
//! them): a sequence with `k` tokens in its cache holds `ceil(k /
//! block_size)` blocks. When a running sequence needs a block and none is
//! free, the newest running sequence is preempted: its blocks are freed and
//! it waits, first in line, to be recomputed (Kwon et al. 2023, section 4.5;
//! vLLM's scheduler). This module plans only; it touches no MLX.
//!
//! Units: tokens (prompt, budget, KV) and blocks (KV memory).
//!
//! Hints: Check your work with `cargo xtask check day15`. Keep every count
//! in the `Seq` records (tokens in the KV cache, the prefill target, blocks
//! held) and plan a step in the three passes of [`FcfsScheduler`]'s
//! contract; write the per-sequence changes only once the plan is final, so
//! that preempting a sequence can simply drop its planned tokens.

use std::collections::{HashMap, VecDeque};
// `Error` is named by the doc comments.
#[allow(unused_imports)]
use tiny_llm_common::{Error, Result};
pub use tiny_llm_common::{PrefillChunk, Scheduler, SeqId, SeqRequest, StepPlan};

/// The limits a [`FcfsScheduler`] plans under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// `B`: the most tokens one step reads (prefill chunks plus decodes),
    /// `>= max_running` (vLLM asks `max_num_batched_tokens >=
    /// max_num_seqs`, so every running sequence can decode each step).
    pub max_tokens_per_step: usize,
    /// The most sequences running at once (batch slots), `>= 1`.
    pub max_running: usize,
    /// Tokens per KV block, `>= 1`.
    pub block_size: usize,
    /// KV blocks in the pool, `>= 1`.
    pub num_blocks: usize,
}

/// Blocks that hold `tokens` tokens: `ceil(tokens / block_size)`.
///
/// Hints: `usize::div_ceil`.
pub fn blocks_for(tokens: usize, block_size: usize) -> usize {
    let _ = (tokens, block_size);
    todo!("day 15: blocks_for")
}

/// A sequence the scheduler holds.
#[allow(dead_code)] // used once you write the methods
#[derive(Debug, Clone)]
struct Seq {
    req: SeqRequest,
    /// Tokens sampled so far (counted when planned).
    generated: usize,
    /// Tokens in the KV cache.
    kv: usize,
    /// Tokens to prefill this admission: the prompt, plus the generated
    /// tokens after a preemption.
    target: usize,
    /// KV blocks held.
    blocks: usize,
}

/// First come, first served continuous batching.
///
/// Each [`Scheduler::schedule`] plans, in this order, under the token budget
/// `B` and the free KV blocks:
///
/// 1. one decode token for every running sequence whose prefill is done,
///    oldest admission first;
/// 2. the next chunk of every running sequence still prefilling, oldest
///    first, as many tokens as its prefill has left, the budget and the free
///    blocks allow;
/// 3. new admissions, strictly in arrival order (a request that cannot
///    start stops the admissions: none is skipped), while a slot, budget
///    and a block for its first chunk are left; never preempting for them.
///
/// When a running sequence needs a block and none is free, the newest
/// running sequence (the last admitted) is preempted: its blocks and planned
/// tokens are returned and it queues first in line; it later prefills its
/// prompt and generated tokens again. A sequence that is itself the newest
/// waits instead (it skips this step, keeping its blocks). A step that
/// preempted admits no one. A step never reads
/// more than `B` tokens nor holds more than `num_blocks` blocks; every
/// request whose `prompt_len + max_new_tokens` tokens fit in the pool
/// finishes, since the oldest running sequence is never preempted while
/// others run.
#[allow(dead_code)] // used once you write the methods
#[derive(Debug, Clone)]
pub struct FcfsScheduler {
    config: SchedulerConfig,
    seqs: HashMap<SeqId, Seq>,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
    free_blocks: usize,
}

impl FcfsScheduler {
    /// An empty scheduler.
    ///
    /// Errors: [`Error::Invalid`] when a limit is 0 or `max_tokens_per_step
    /// < max_running` (naming the numbers).
    pub fn new(config: SchedulerConfig) -> Result<FcfsScheduler> {
        let _ = config;
        todo!("day 15: FcfsScheduler::new")
    }

    /// The limits.
    pub fn config(&self) -> SchedulerConfig {
        todo!("day 15: FcfsScheduler::config")
    }

    /// Running sequences, oldest admission first.
    pub fn running(&self) -> Vec<SeqId> {
        todo!("day 15: FcfsScheduler::running")
    }

    /// Waiting sequences, next to be admitted first.
    pub fn waiting(&self) -> Vec<SeqId> {
        todo!("day 15: FcfsScheduler::waiting")
    }

    /// KV blocks not held by any running sequence.
    pub fn free_blocks(&self) -> usize {
        todo!("day 15: FcfsScheduler::free_blocks")
    }

    /// Tokens sampled so far by `seq` (as planned), `None` when unknown.
    pub fn generated(&self, seq: SeqId) -> Option<usize> {
        let _ = seq;
        todo!("day 15: FcfsScheduler::generated")
    }

    /// Tokens in `seq`'s KV cache once the last plan ran, `None` when
    /// unknown.
    pub fn kv_tokens(&self, seq: SeqId) -> Option<usize> {
        let _ = seq;
        todo!("day 15: FcfsScheduler::kv_tokens")
    }
}

impl Scheduler for FcfsScheduler {
    fn add(&mut self, request: SeqRequest) -> Result<()> {
        let _ = request;
        todo!("day 15: FcfsScheduler::add")
    }

    /// Hints: a `HashMap<SeqId, usize>` of tokens planned this step; a
    /// helper `grow(id, tokens)` that takes the blocks `blocks_for(kv +
    /// planned + tokens) - held` from the free count, preempting
    /// `running.last()` (not `id`) while they are short; a preempted
    /// sequence leaves `plan.decode`/`plan.prefill` (refund its tokens to
    /// the budget), gets `kv = 0`, `target = prompt_len + generated`, and
    /// goes to the front of `waiting`. At the end: `kv += planned`, and
    /// `generated += 1` for a decode or a chunk that completes.
    fn schedule(&mut self) -> StepPlan {
        todo!("day 15: FcfsScheduler::schedule")
    }

    fn finish(&mut self, seq: SeqId) -> Result<()> {
        let _ = seq;
        todo!("day 15: FcfsScheduler::finish")
    }

    fn has_work(&self) -> bool {
        todo!("day 15: FcfsScheduler::has_work")
    }
}
