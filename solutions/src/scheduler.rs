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
pub fn blocks_for(tokens: usize, block_size: usize) -> usize {
    tokens.div_ceil(block_size)
}

/// A sequence the scheduler holds.
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

impl Seq {
    fn prefilling(&self) -> bool {
        self.kv < self.target
    }
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
        let c = config;
        if c.max_tokens_per_step == 0 || c.max_running == 0 || c.block_size == 0 {
            return Err(Error::Invalid(format!(
                "FcfsScheduler: max_tokens_per_step {}, max_running {} and block_size {} must \
                 all be >= 1",
                c.max_tokens_per_step, c.max_running, c.block_size
            )));
        }
        if c.num_blocks == 0 {
            return Err(Error::Invalid(
                "FcfsScheduler: num_blocks is 0, expected at least 1 KV block".into(),
            ));
        }
        if c.max_tokens_per_step < c.max_running {
            return Err(Error::Invalid(format!(
                "FcfsScheduler: max_tokens_per_step {} < max_running {}: every running \
                 sequence must be able to decode in one step",
                c.max_tokens_per_step, c.max_running
            )));
        }
        Ok(FcfsScheduler {
            config,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_blocks: c.num_blocks,
        })
    }

    /// The limits.
    pub fn config(&self) -> SchedulerConfig {
        self.config
    }

    /// Running sequences, oldest admission first.
    pub fn running(&self) -> Vec<SeqId> {
        self.running.clone()
    }

    /// Waiting sequences, next to be admitted first.
    pub fn waiting(&self) -> Vec<SeqId> {
        self.waiting.iter().copied().collect()
    }

    /// KV blocks not held by any running sequence.
    pub fn free_blocks(&self) -> usize {
        self.free_blocks
    }

    /// Tokens sampled so far by `seq` (as planned), `None` when unknown.
    pub fn generated(&self, seq: SeqId) -> Option<usize> {
        self.seqs.get(&seq).map(|s| s.generated)
    }

    /// Tokens in `seq`'s KV cache once the last plan ran, `None` when
    /// unknown.
    pub fn kv_tokens(&self, seq: SeqId) -> Option<usize> {
        self.seqs.get(&seq).map(|s| s.kv)
    }

    /// Grows `id`'s KV by `tokens` (planned), taking blocks; preempts the
    /// newest running sequence (never `id` itself) while blocks are short.
    /// Returns the tokens granted, which may be fewer than asked when
    /// `partial` (a prefill chunk that fits the free blocks), and 0 when
    /// `id` must wait.
    fn grow(
        &mut self,
        id: SeqId,
        planned: &HashMap<SeqId, usize>,
        tokens: usize,
        partial: bool,
        plan: &mut StepPlan,
        budget: &mut usize,
    ) -> usize {
        let bs = self.config.block_size;
        loop {
            let s = &self.seqs[&id];
            let kv = s.kv + planned.get(&id).copied().unwrap_or(0);
            let room = (s.blocks + self.free_blocks) * bs - kv;
            let granted = if room >= tokens {
                tokens
            } else if partial {
                room
            } else {
                0
            };
            if granted > 0 && (granted == tokens || partial) {
                let need = blocks_for(kv + granted, bs) - s.blocks;
                self.free_blocks -= need;
                self.seqs.get_mut(&id).expect("running").blocks += need;
                return granted;
            }
            // Out of blocks: preempt the newest running sequence, or wait
            // when that is `id` itself (an older one will finish or preempt
            // it).
            match self.running.last() {
                Some(&victim) if victim != id => {
                    self.running.pop();
                    self.preempt(victim, plan, budget);
                }
                _ => return 0,
            }
        }
    }

    /// Frees `victim`'s blocks, drops its planned tokens, queues it first.
    fn preempt(&mut self, victim: SeqId, plan: &mut StepPlan, budget: &mut usize) {
        let s = self.seqs.get_mut(&victim).expect("running");
        self.free_blocks += s.blocks;
        s.blocks = 0;
        s.kv = 0;
        s.target = s.req.prompt_len + s.generated;
        let before = plan.num_tokens();
        plan.decode.retain(|&d| d != victim);
        plan.prefill.retain(|c| c.seq != victim);
        *budget += before - plan.num_tokens();
        plan.preempted.push(victim);
        self.waiting.push_front(victim);
    }
}

impl Scheduler for FcfsScheduler {
    fn add(&mut self, request: SeqRequest) -> Result<()> {
        let r = request;
        if self.seqs.contains_key(&r.id) {
            return Err(Error::Invalid(format!(
                "FcfsScheduler::add: {} is already queued or running",
                r.id
            )));
        }
        if r.prompt_len == 0 || r.max_new_tokens == 0 {
            return Err(Error::Invalid(format!(
                "FcfsScheduler::add: {} has prompt_len {} and max_new_tokens {}, expected both \
                 >= 1",
                r.id, r.prompt_len, r.max_new_tokens
            )));
        }
        let need = blocks_for(r.prompt_len + r.max_new_tokens, self.config.block_size);
        if need > self.config.num_blocks {
            return Err(Error::Invalid(format!(
                "FcfsScheduler::add: {} may hold {} tokens, {need} KV blocks of {}, but the \
                 pool has {} blocks",
                r.id,
                r.prompt_len + r.max_new_tokens,
                self.config.block_size,
                self.config.num_blocks
            )));
        }
        self.seqs.insert(
            r.id,
            Seq {
                req: r,
                generated: 0,
                kv: 0,
                target: r.prompt_len,
                blocks: 0,
            },
        );
        self.waiting.push_back(r.id);
        Ok(())
    }

    fn schedule(&mut self) -> StepPlan {
        let mut plan = StepPlan::default();
        let mut budget = self.config.max_tokens_per_step;
        // Tokens planned per sequence this step, applied at the end.
        let mut planned: HashMap<SeqId, usize> = HashMap::new();
        // 1. decodes, oldest first
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            i += 1;
            if self.seqs[&id].prefilling() {
                continue;
            }
            if self.grow(id, &planned, 1, false, &mut plan, &mut budget) == 1 {
                planned.insert(id, 1);
                plan.decode.push(id);
                budget -= 1;
            }
        }
        // 2. running prefills, oldest first
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            i += 1;
            let s = &self.seqs[&id];
            if !s.prefilling() {
                continue;
            }
            let (start, want) = (s.kv, (s.target - s.kv).min(budget));
            let len = self.grow(id, &planned, want, true, &mut plan, &mut budget);
            if len > 0 {
                planned.insert(id, len);
                let completes = start + len == self.seqs[&id].target;
                plan.prefill.push(PrefillChunk {
                    seq: id,
                    start,
                    len,
                    completes,
                });
                budget -= len;
            }
        }
        // 3. admissions, in arrival order, never preempting, none in a step
        //    that preempted
        while budget > 0
            && plan.preempted.is_empty()
            && self.running.len() < self.config.max_running
        {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let s = &self.seqs[&id];
            let room = self.free_blocks * self.config.block_size;
            let len = (s.target).min(budget).min(room);
            if len == 0 {
                break;
            }
            self.waiting.pop_front();
            self.running.push(id);
            let blocks = blocks_for(len, self.config.block_size);
            self.free_blocks -= blocks;
            let s = self.seqs.get_mut(&id).expect("waiting");
            s.blocks = blocks;
            planned.insert(id, len);
            plan.prefill.push(PrefillChunk {
                seq: id,
                start: 0,
                len,
                completes: len == s.target,
            });
            budget -= len;
        }
        // apply the plan
        for (id, n) in planned {
            if let Some(s) = self.seqs.get_mut(&id) {
                if self.running.contains(&id) {
                    let was_prefilling = s.prefilling();
                    s.kv += n;
                    if !was_prefilling || s.kv == s.target {
                        s.generated += 1;
                    }
                }
            }
        }
        plan
    }

    fn finish(&mut self, seq: SeqId) -> Result<()> {
        let Some(s) = self.seqs.remove(&seq) else {
            return Err(Error::Invalid(format!(
                "FcfsScheduler::finish: {seq} is neither waiting nor running"
            )));
        };
        self.free_blocks += s.blocks;
        self.running.retain(|&r| r != seq);
        self.waiting.retain(|&w| w != seq);
        Ok(())
    }

    fn has_work(&self) -> bool {
        !self.seqs.is_empty()
    }
}
