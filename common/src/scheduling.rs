//! Week 3's serving vocabulary (given code, not an exercise): sequence ids,
//! the requests a scheduler queues, the plan of one engine step, and the
//! [`Scheduler`] trait the engine calls once per step.
//!
//! Units: every length here counts tokens. A step is one forward pass over a
//! batch that mixes chunked prefill (several tokens of a sequence's prompt)
//! and decode (one token of each running sequence), as in SARATHI (Agrawal et
//! al. 2023) and vLLM's scheduler (`max_num_batched_tokens`).

use crate::Result;
use std::fmt;

/// A sequence (one request's prompt and its generated tokens), named by the
/// engine: ids are unique among the sequences a scheduler has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqId(pub u64);

impl fmt::Display for SeqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}", self.0)
    }
}

/// A request as the scheduler sees it: how many prompt tokens it brings and
/// the most tokens it may generate (its KV cache never holds more than
/// `prompt_len + max_new_tokens` tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRequest {
    /// The sequence's id.
    pub id: SeqId,
    /// Prompt tokens, `>= 1`.
    pub prompt_len: usize,
    /// The most tokens to generate, `>= 1`.
    pub max_new_tokens: usize,
}

/// Tokens `start..start + len` of a sequence go through this step's forward
/// pass as prefill. The token stream is the prompt followed by the tokens
/// generated so far (a preempted sequence is recomputed from token 0, its
/// generated tokens included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefillChunk {
    /// The sequence.
    pub seq: SeqId,
    /// Index of the chunk's first token in the sequence's token stream.
    pub start: usize,
    /// Tokens in the chunk, `>= 1`.
    pub len: usize,
    /// The chunk ends the prefill: its last logits give the sequence's next
    /// token, sampled this step.
    pub completes: bool,
}

/// What one engine step runs: prefill chunks and decode tokens, at most the
/// scheduler's token budget in all, and the sequences it preempted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Prefill chunks, in the order the scheduler granted them.
    pub prefill: Vec<PrefillChunk>,
    /// Sequences that feed their last sampled token and sample the next one
    /// (one token each).
    pub decode: Vec<SeqId>,
    /// Sequences taken off the running set to free KV blocks: the engine
    /// drops their KV cache (their tokens stay); the scheduler queues them
    /// again, first in line, to be recomputed (vLLM's preemption by
    /// recomputation, Kwon et al. 2023, section 4.5).
    pub preempted: Vec<SeqId>,
}

impl StepPlan {
    /// Tokens this step's forward pass reads: every chunk's `len` plus one
    /// per decode.
    pub fn num_tokens(&self) -> usize {
        self.prefill.iter().map(|c| c.len).sum::<usize>() + self.decode.len()
    }

    /// The sequences that sample a token this step: each decode, then each
    /// chunk that completes its prefill.
    pub fn sampled(&self) -> Vec<SeqId> {
        let mut out = self.decode.clone();
        out.extend(self.prefill.iter().filter(|c| c.completes).map(|c| c.seq));
        out
    }

    /// Nothing to run.
    pub fn is_empty(&self) -> bool {
        self.prefill.is_empty() && self.decode.is_empty()
    }
}

/// Decides what each engine step runs. The engine calls [`schedule`] once
/// per step, runs the plan, then calls [`finish`] for every sequence that
/// stopped (end of sequence, its token limit, a cancelled request).
///
/// Contract: every plan returned is run before the next call; a sequence
/// that samples a token in a plan (see [`StepPlan::sampled`]) has that token
/// counted from the moment the plan is returned.
///
/// [`schedule`]: Scheduler::schedule
/// [`finish`]: Scheduler::finish
pub trait Scheduler {
    /// Queues a request behind every request queued before it.
    ///
    /// Errors: `Error::Invalid` for an id already in use, a prompt or limit
    /// of 0 tokens, or a request that could never fit (naming the numbers).
    fn add(&mut self, request: SeqRequest) -> Result<()>;

    /// Plans the next step (empty when there is nothing to do).
    fn schedule(&mut self) -> StepPlan;

    /// Sequence `seq` stopped (finished, or cancelled while waiting or
    /// running): its slot and KV blocks are free for the very next step.
    ///
    /// Errors: `Error::Invalid` when the scheduler does not hold `seq`.
    fn finish(&mut self, seq: SeqId) -> Result<()>;

    /// Requests waiting or running.
    fn has_work(&self) -> bool;
}
